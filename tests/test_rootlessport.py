"""rootlessport, podman's port forwarder: real binary, real slirp4netns, real netns."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

import pyslirp
from pyslirp.rootlessport import rootlessport_config, setup_rootless_port_mapping_via_rlk

from support.netns import echo_server, tcp_echo, udp_echo
from support.options import options
from support.ports import free_port
from support.processes import children, descendants, helper_pids, pids_of, wait_gone

pytestmark = pytest.mark.root


def test_forwards_tcp_and_udp_from_the_container_address(hygiene, config, netns):
    tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
    ports = [
        pyslirp.PortMapping(host_port=tcp, container_port=80),
        pyslirp.PortMapping(host_port=udp, container_port=53, protocol="udp"),
    ]
    with pyslirp.setup(options(config, netns, ports=ports)) as result:
        assert result.rootlessport is not None
        with echo_server(netns, "tcp", 80), echo_server(netns, "udp", 53):
            assert tcp_echo(tcp) == "hi 10.0.2.100 80"  # the peer is not 127.0.0.1
            assert udp_echo(udp) == "hi 10.0.2.100 53"
        started = {result.pid, result.rootlessport.pid, *descendants(result.rootlessport.pid)}
        assert len(started) == 3  # slirp4netns, rootlessport and rootlessport-child
    for pid in started:
        assert wait_gone(pid, timeout=0)
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        again.bind(("0.0.0.0", tcp))  # nobody listens on the host port any more
        again.listen(1)


def test_busy_host_port_names_rootlessport_and_leaves_nothing(hygiene, config, netns):
    before = helper_pids()
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        ports = [pyslirp.PortMapping(host_port=port, container_port=80)]
        with pytest.raises(pyslirp.SlirpError) as info:
            pyslirp.setup(options(config, netns, ports=ports))
    message = str(info.value)
    assert message.startswith("rootlessport ")
    assert "address already in use" in message
    assert pids_of("slirp4netns") == set()
    assert helper_pids() <= before
    assert children() == {}


def test_exported_function_with_caller_owned_exit_pipe(hygiene, config, netns):
    port = free_port()
    with pyslirp.setup(options(config, netns)) as result:
        exit_r, exit_w = os.pipe()
        opts = options(
            config,
            netns,
            ports=[pyslirp.PortMapping(host_port=port, container_port=8080)],
            rootless_port_exit_pipe_r=exit_r,
        )
        handle = setup_rootless_port_mapping_via_rlk(opts, result.subnet)
        os.close(exit_r)
        try:
            with echo_server(netns, "tcp", 8080):
                assert tcp_echo(port) == "hi 10.0.2.100 8080"
            os.close(exit_w)
            assert wait_gone(handle.pid, timeout=5), "rootlessport outlived its exit pipe"
        finally:
            handle.close()


def test_config_json_has_podmans_field_names():
    mapping = pyslirp.PortMapping(host_port=8080, container_port=80, host_ip="127.0.0.1")
    config = rootlessport_config(
        ports=[mapping],
        netns="/run/netns/x",
        tmp_dir="/run/libpod",
        container_id="abc",
        slirp_subnet="10.0.2.0/24",
        net_status=None,
    )
    assert config == {
        "Mappings": [
            {
                "host_ip": "127.0.0.1",
                "container_port": 80,
                "host_port": 8080,
                "range": 1,
                "protocol": "tcp",
            }
        ],
        "NetNSPath": "/run/netns/x",
        "ExitFD": 3,
        "ReadyFD": 4,
        "TmpDir": "/run/libpod",
        "ChildIP": "10.0.2.100",
        "ContainerID": "abc",
        "RootlessCNI": False,
    }


def test_fake_rootlessport_receives_the_config_on_stdin(
    hygiene, short_tmp, fake_rootlessport, netns
):
    received = short_tmp / "stdin.json"
    config = fake_rootlessport(f"cat > {received}; printf 1 >&4; exec 4>&-; cat <&3")
    mapping = pyslirp.PortMapping(host_port=8080, container_port=80)
    opts = options(config, netns, ports=[mapping])
    with setup_rootless_port_mapping_via_rlk(opts, "10.0.2.0/24") as helper:
        sent = json.loads(received.read_text())
        state_dir = sent["TmpDir"]
        assert helper.private_dir == state_dir
        assert os.path.dirname(state_dir) == config.tmp_dir
        assert os.stat(state_dir).st_mode & 0o777 == 0o700
    assert sent == rootlessport_config(
        ports=[mapping],
        netns=netns,
        tmp_dir=state_dir,
        container_id="ctr",
        slirp_subnet="10.0.2.0/24",
        net_status=None,
    )
    assert not os.path.exists(state_dir)  # a private state dir, removed after it stopped


def test_fake_rootlessport_error_on_stdout_is_the_message(hygiene, fake_rootlessport, netns):
    said = "listen tcp 0.0.0.0:80: bind: permission denied"
    config = fake_rootlessport(f"echo '{said}'; exit 1")
    opts = options(config, netns, ports=[pyslirp.PortMapping(host_port=80, container_port=80)])
    with pytest.raises(pyslirp.StartError) as info:
        setup_rootless_port_mapping_via_rlk(opts, None)
    assert str(info.value).startswith("rootlessport listen tcp 0.0.0.0:80: bind: permission denied")
    assert "net.ipv4.ip_unprivileged_port_start=" in str(info.value)
    assert children() == {}


def test_fake_rootlessport_that_never_gets_ready_times_out(hygiene, fake_rootlessport, netns):
    config = fake_rootlessport("exec sleep 100")
    opts = options(
        config,
        netns,
        ports=[pyslirp.PortMapping(host_port=8080, container_port=80)],
        ready_timeout=0.5,
    )
    started = time.monotonic()
    with pytest.raises(pyslirp.ReadyTimeout):
        setup_rootless_port_mapping_via_rlk(opts, None)
    assert time.monotonic() - started < 3
    assert children() == {}


def test_missing_rootlessport_fails_before_slirp4netns_starts(hygiene, short_tmp, netns):
    started = short_tmp / "slirp4netns-started"
    slirp4netns = short_tmp / "slirp4netns"  # records each start, then is the real one
    slirp4netns.write_text(
        f'#!/bin/sh\n[ "$1" = --help ] || touch {started}\nexec /usr/bin/slirp4netns "$@"\n'
    )
    slirp4netns.chmod(0o755)
    config = pyslirp.Config(
        tmp_dir=str(short_tmp / "run"),
        helper_binaries_dir=(str(short_tmp / "nothing-here"),),
        network_cmd_path=str(slirp4netns),
    )
    opts = options(config, netns, ports=[pyslirp.PortMapping(host_port=8080, container_port=80)])
    with pytest.raises(pyslirp.BinaryNotFound, match="rootlessport"):
        pyslirp.setup(opts)
    assert not started.exists()  # refused before slirp4netns was started, not after
    assert children() == {}
