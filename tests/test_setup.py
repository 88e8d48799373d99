"""setup() end to end: real slirp4netns 1.2.0 in real namespaces made with ``ip netns``."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

import pyslirp

from support.netns import (
    PROGRAMS,
    addresses,
    default_route,
    echo_server,
    link,
    run_in,
    succeeds,
    tcp_echo,
    udp_echo,
)
from support.options import options
from support.ports import free_port
from support.processes import children, host_ipv4, mounted, pids_of, wait_reaped

pytestmark = pytest.mark.root

ACCEPT_DAD = "/proc/sys/net/ipv6/conf/default/accept_dad"


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def assert_empty_or_absent(directory: str) -> None:
    assert not Path(directory).exists() or list(Path(directory).iterdir()) == []


def assert_nothing_left(pid: int, config) -> None:
    assert wait_reaped(pid), f"slirp4netns {pid} still there"
    assert pid not in children()
    assert_empty_or_absent(config.tmp_dir)


def test_default_setup(hygiene, config, netns):
    with pyslirp.setup(options(config, netns)) as result:
        (addr,) = addresses(netns)
        assert (addr["local"], addr["prefixlen"]) == ("10.0.2.100", 24)
        assert link(netns)["mtu"] == 65520
        assert default_route(netns) == "10.0.2.2"
        assert result.subnet == pyslirp.IPv4Network("10.0.2.0/24")
        assert result.ipv6 is True
        assert "--enable-sandbox" in cmdline(result.pid)
        assert mounted(netns)
        pid = result.pid
    assert_nothing_left(pid, config)
    assert mounted(netns)


def test_cidr_and_mtu_extra_options_win_over_config(hygiene, tmp_path, netns):
    config = pyslirp.Config(
        tmp_dir=str(tmp_path), network_cmd_options=["cidr=10.41.0.0/16", "mtu=9000"]
    )
    with pyslirp.setup(options(config, netns, extra_options=["mtu=1500"])) as result:
        (addr,) = addresses(netns)
        assert (addr["local"], addr["prefixlen"]) == ("10.41.0.100", 16)
        assert link(netns)["mtu"] == 1500
        assert default_route(netns) == "10.41.0.2"
        assert result.subnet == pyslirp.IPv4Network("10.41.0.0/16")


def test_ipv6_address_is_usable_at_once_and_accept_dad_restored(hygiene, config, netns):
    before = run_in(netns, "cat", ACCEPT_DAD)
    with pyslirp.setup(options(config, netns)):
        returned = time.monotonic()
        # The kernel flags a new address tentative until its DAD work has run, even with
        # DAD off; with DAD on that takes seconds, past this 0.5 s.
        while True:
            usable = [
                a
                for a in addresses(netns, "-6")
                if a["scope"] == "global" and not a.get("tentative")
            ]
            if usable or time.monotonic() - returned > 0.5:
                break
        assert usable, "no usable global IPv6 address 0.5 s after setup returned"
        assert usable[0]["local"].startswith("fd00::")
        assert run_in(netns, "cat", "/proc/sys/net/ipv6/conf/tap0/accept_dad") == "0\n"
    assert run_in(netns, "cat", ACCEPT_DAD) == before


@pytest.fixture
def host_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    yield server
    server.close()


def connects(netns: str, host: str, port: int) -> bool:
    """Whether a TCP connection from inside ``netns`` to host:port succeeds."""
    return succeeds(netns, sys.executable, str(PROGRAMS / "tcp_connects.py"), host, str(port))


def test_host_loopback_reachable_only_when_allowed(hygiene, config, netns, host_server):
    port = host_server.getsockname()[1]
    with pyslirp.setup(options(config, netns, extra_options=["allow_host_loopback=true"])):
        assert connects(netns, "10.0.2.2", port)
    with pyslirp.setup(options(config, netns)):
        assert not connects(netns, "10.0.2.2", port)


def test_slirp4netns_handler_forwards_tcp_range_and_udp(hygiene, config, netns):
    tcp, udp, single = free_port(count=2), free_port(socket.SOCK_DGRAM), free_port()
    while single in (tcp, tcp + 1):
        single = free_port()
    ports = [
        pyslirp.PortMapping(host_port=tcp, container_port=8080, range=2),
        pyslirp.PortMapping(host_port=udp, container_port=5353, protocol="udp"),
        pyslirp.PortMapping(host_port=single, container_port=9090, range=0),
    ]
    opts = options(config, netns, ports=ports, extra_options=["port_handler=slirp4netns"])
    with pyslirp.setup(opts) as result:
        socket_path = result.api_socket
        assert socket_path == os.path.join(config.tmp_dir, "ctr.net")
        with echo_server(netns, "tcp", 8080, 8081, 9090), echo_server(netns, "udp", 5353):
            assert tcp_echo(tcp).endswith(" 8080")
            assert tcp_echo(tcp + 1).endswith(" 8081")
            assert tcp_echo(single).endswith(" 9090")
            assert udp_echo(udp, host_ipv4()).endswith(" 5353")
    assert not os.path.exists(socket_path)


def test_exit_pipe_is_fd_4_and_closing_it_stops_slirp4netns(hygiene, config, netns):
    exit_r, exit_w = os.pipe()
    try:
        result = pyslirp.setup(options(config, netns, slirp4netns_exit_pipe_r=exit_r))
    finally:
        os.close(exit_r)
    argv = cmdline(result.pid)
    assert argv[argv.index("-r") : argv.index("-r") + 4] == ["-r", "3", "-e", "4"]
    os.close(exit_w)
    assert wait_reaped(result.pid, timeout=5), "slirp4netns survived its exit pipe"
    assert result.returncode is not None
    result.close()


def test_early_death_is_start_error_with_its_log(hygiene, config, tmp_path):
    plain = tmp_path / "not-a-netns"
    plain.write_text("")
    started = time.monotonic()
    with pytest.raises(pyslirp.StartError) as info:
        pyslirp.setup(options(config, str(plain)))
    assert time.monotonic() - started < 5  # far below the 10 s deadline: not a timeout
    assert not isinstance(info.value, pyslirp.ReadyTimeout)
    assert f"slirp4netns for netns {plain} exited with status 1" in str(info.value)
    assert "setns(CLONE_NEWNET): Invalid argument" in str(info.value)  # its own log line
    assert pids_of("slirp4netns") == set()
    assert_empty_or_absent(config.tmp_dir)


@pytest.mark.parametrize(
    "bad",
    ["foo=bar", "cidr=x", "mtu=67", "enable_ipv6=yes", "port_handler=nope", "outbound_addr6=::1"],
)
def test_bad_option_spawns_nothing(hygiene, config, netns, bad):
    extra = [bad] if bad != "outbound_addr6=::1" else ["enable_ipv6=false", bad]
    with pytest.raises(pyslirp.OptionError):
        pyslirp.setup(options(config, netns, extra_options=extra))
    assert children() == {}
    assert not Path(config.tmp_dir).exists()


def test_busy_host_port_with_slirp4netns_handler(hygiene, config, netns):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        opts = options(
            config,
            netns,
            ports=[pyslirp.PortMapping(host_port=port, container_port=80)],
            extra_options=["port_handler=slirp4netns"],
        )
        with pytest.raises(pyslirp.PortForwardError, match="slirp_add_hostfwd failed"):
            pyslirp.setup(opts)
    assert pids_of("slirp4netns") == set()
    assert_empty_or_absent(config.tmp_dir)


FAKES = {
    "exits": ("echo 'fake: cannot configure'; exit 1", "exited with status 1"),
    "kills_itself": ("kill -KILL $$", "was killed by SIGKILL"),
    "closes_ready_fd": ("exec 3>&-; exec sleep 100", "closed its ready fd without writing"),
    "never_ready": ("exec sleep 100", "did not become ready"),
}


@pytest.mark.parametrize("fault", sorted(FAKES))
@pytest.mark.parametrize("ports", [False, True], ids=["no-ports", "rootlessport"])
def test_fake_slirp4netns_faults_are_typed_and_leave_nothing(
    hygiene, fake_slirp4netns, netns, fault, ports
):
    """With a port to publish, rootlessport's directory is made while slirp4netns starts:
    it goes too."""
    body, message = FAKES[fault]
    config = fake_slirp4netns(body)
    mappings = [pyslirp.PortMapping(host_port=free_port(), container_port=80)] if ports else []
    before = set(children())
    started = time.monotonic()
    with pytest.raises(pyslirp.StartError, match=message) as info:
        pyslirp.setup(options(config, netns, ports=mappings, ready_timeout=1.0))
    assert time.monotonic() - started < 3
    assert isinstance(info.value, pyslirp.ReadyTimeout) == (fault == "never_ready")
    if fault == "exits":
        assert "fake: cannot configure" in str(info.value)
    assert set(children()) == before
    assert_empty_or_absent(config.tmp_dir)


def test_exit_after_a_closed_ready_fd_is_reported_through_signals(hygiene, fake_slirp4netns, netns):
    """The ready call waits a moment for the exit that follows a closed ready pipe, to say
    how it ended; signals arriving meanwhile (a profiler's timer) do not cut that short."""
    config = fake_slirp4netns("exec 3>&-; sleep 0.05; exit 3")
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    try:
        with pytest.raises(pyslirp.StartError, match="exited with status 3"):
            pyslirp.setup(options(config, netns, ready_timeout=5.0))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_second_setup_with_the_same_container_id_leaves_the_first_alone(
    hygiene, config, make_netns
):
    extra = ["port_handler=slirp4netns"]
    ports = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
    with pyslirp.setup(options(config, make_netns(), ports=ports, extra_options=extra)) as one:
        again = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
        with pytest.raises(pyslirp.StartError, match="in use"):
            pyslirp.setup(options(config, make_netns(), ports=again, extra_options=extra))
        assert one.api_socket is not None
        assert os.path.exists(one.api_socket)
        assert one.returncode is None


def test_stale_api_socket_is_replaced(hygiene, config, netns):
    os.makedirs(config.tmp_dir)
    stale = os.path.join(config.tmp_dir, "ctr.net")
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(stale)  # bound, never listening, closed: what a killed slirp4netns leaves
    ports = [pyslirp.PortMapping(host_port=free_port(), container_port=80)]
    opts = options(config, netns, ports=ports, extra_options=["port_handler=slirp4netns"])
    with pyslirp.setup(opts) as result:
        assert result.api_socket == stale
    assert not os.path.exists(stale)
