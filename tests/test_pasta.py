"""pyslirp.pasta end to end: Debian 12's real pasta in namespaces made with ``ip netns``."""

from __future__ import annotations

import gc
import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from ipaddress import ip_address
from pathlib import Path

import pytest

import pyslirp
from pyslirp import pasta
from pyslirp.features import probe_pasta_features

from support.netns import PROGRAMS, echo_server, run_in, tcp_echo, udp_echo
from support.ports import free_port
from support.processes import children, host_ipv4, wait_reaped

pytestmark = pytest.mark.root  # real helpers in real namespaces

PASTA = "/usr/bin/pasta"
FAST = 2.0  # seconds: an early failure is reported long before the 10 s deadline


def options(config, netns, **kwargs):
    return pasta.SetupOptions(config=config, netns=netns, **kwargs)


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


@pytest.fixture
def nothing_left(hygiene):
    """Fail the test if it leaves a child (pasta or other) behind."""
    before = set(children())
    yield
    assert set(children()) == before


def shown_addresses(netns: str) -> list[str]:
    """What ``ip addr`` shows in ``netns``, filtered as podman filters it."""
    links = json.loads(run_in(netns, "ip", "-j", "addr", "show"))
    found = [ip_address(a["local"]) for link in links for a in link["addr_info"]]
    return [
        str(a)
        for a in found
        if not (a.is_loopback or a.is_multicast or (a.version == 6 and a.is_link_local))
    ]


def default_routes(netns: str) -> list[dict[str, object]]:
    return json.loads(run_in(netns, "ip", "-j", "-4", "route", "show", "default"))


def test_setup_configures_the_namespace_and_reads_back_its_addresses(nothing_left, config, netns):
    with pasta.setup(options(config, netns)) as result:
        assert default_routes(netns), "no default route in the namespace"
        assert [str(a) for a in result.ip_addresses] == shown_addresses(netns)
        assert any(a.version == 4 for a in result.ip_addresses)
        assert result.ipv6 == any(a.version == 6 for a in result.ip_addresses)
        assert result.dns_forward_ips == [ip_address("169.254.1.1")]
        has_guest_addr = probe_pasta_features(PASTA).map_guest_addr
        assert result.map_guest_addr_ips == ([ip_address("169.254.1.2")] if has_guest_addr else [])
        assert result.returncode is None
        argv = cmdline(result.pid)
        assert argv[argv.index("--pid") + 2 : argv.index("--config-net")] == [
            "--foreground",
            "--stderr",
            "--runas",
            "0",
        ]
        pid = result.pid
    assert wait_reaped(pid)
    assert result.returncode == 0  # pasta exits 0 on SIGTERM
    result.close()  # a second close does nothing


def test_slirp4netns_addressing_gives_slirp4netns_addresses(nothing_left, config, netns):
    with pasta.setup(options(config, netns, addressing="slirp4netns")) as result:
        (route,) = default_routes(netns)
        assert route["gateway"] == "10.0.2.2"
        assert ip_address("10.0.2.100") in result.ip_addresses
        assert result.dns_forward_ips == [ip_address("10.0.2.3")]
        links = json.loads(run_in(netns, "ip", "-j", "-4", "addr", "show"))
        prefixes = {(a["local"], a["prefixlen"]) for link in links for a in link["addr_info"]}
        assert ("10.0.2.100", 24) in prefixes


def test_tcp_and_udp_mappings_carry_data_and_close_frees_the_ports(nothing_left, config, netns):
    tcp_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    ports = [
        pyslirp.PortMapping(host_port=tcp_port, container_port=8080),
        pyslirp.PortMapping(host_port=udp_port, container_port=5353, protocol="udp"),
    ]
    # slirp4netns addressing: with the host's own address in the namespace, a datagram
    # from the host's address would come back to its own source. Debian 12's pasta does
    # not forward UDP sent to 127.0.0.1.
    opts = options(config, netns, ports=ports, addressing="slirp4netns")
    host = host_ipv4()
    with (
        pasta.setup(opts),
        echo_server(netns, "tcp", 8080),
        echo_server(netns, "udp", 5353),
    ):
        assert tcp_echo(tcp_port).split() == ["hi", "127.0.0.1", "8080"]
        assert udp_echo(udp_port, host).split() == ["hi", host, "5353"]
    # close() returned after pasta was reaped: its ports are free at once, a restart
    # binds them again (podman's daemonised pasta races here).
    with pasta.setup(opts):
        pass


def in_netns(netns: str, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", os.path.basename(netns), *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def wire(host: str, client: str) -> None:
    """A veth between ``host`` (10.213.0.1, its default route via the client) and
    ``client`` (10.213.0.2)."""
    h, c = os.path.basename(host), os.path.basename(client)
    for command in (
        f"ip -n {h} link add vh type veth peer name vc netns {c}",
        f"ip -n {h} addr add 10.213.0.1/24 dev vh",
        f"ip -n {c} addr add 10.213.0.2/24 dev vc",
        f"ip -n {h} link set vh up",
        f"ip -n {c} link set vc up",
        f"ip -n {h} route add default via 10.213.0.2",
    ):
        subprocess.run(command.split(), check=True)


def test_a_client_on_another_host_is_seen_with_its_own_address(nothing_left, config, make_netns):
    host, client, target = make_netns(), make_netns(), make_netns()
    wire(host, client)
    port = free_port()
    owner = in_netns(
        host,
        sys.executable,
        str(PROGRAMS / "pasta_in_netns.py"),
        config.tmp_dir,
        target,
        str(port),
        "slirp4netns",
    )
    try:
        assert owner.stdout is not None
        started = json.loads(owner.stdout.readline())
        assert "pid" in started, started
        with echo_server(target, "tcp", 8080):
            reply = run_in(
                client, sys.executable, str(PROGRAMS / "connect.py"), "10.213.0.1", str(port)
            )
        assert reply.split() == ["hi", "10.213.0.2", "8080"]
    finally:
        owner.communicate()
    assert owner.returncode == 0
    assert wait_reaped(started["pid"])


def test_no_external_interface_is_a_start_error_naming_the_fix(nothing_left, config, make_netns):
    empty_host, target = make_netns(), make_netns()
    owner = in_netns(
        empty_host,
        sys.executable,
        str(PROGRAMS / "pasta_in_netns.py"),
        config.tmp_dir,
        target,
        "0",
        "host",
    )
    out, _ = owner.communicate()
    assert json.loads(out) == {
        "error": "StartError",
        "message": f"pasta for netns {target}: External interface not usable "
        "(the host has no interface with a default route to copy addresses from: "
        "bring one up, name one with -i IFACE, or use addressing='slirp4netns')",
    }


def test_netns_that_is_a_regular_file_fails_fast_and_leaves_nothing(nothing_left, config, tmp_path):
    plain = tmp_path / "not-a-netns"
    plain.write_text("")
    started = time.monotonic()
    with pytest.raises(pyslirp.StartError, match="Couldn't switch to pasta namespaces") as info:
        pasta.setup(options(config, str(plain)))
    assert time.monotonic() - started < FAST
    assert not isinstance(info.value, pyslirp.ReadyTimeout)
    assert "rootless caller must give userns_path" in str(info.value)
    assert "exited with status 1" in str(info.value.__cause__)


def test_missing_netns_names_the_path(nothing_left, config, tmp_path):
    with pytest.raises(pyslirp.StartError, match="Couldn't open network namespace"):
        pasta.setup(options(config, str(tmp_path / "absent")))


def test_a_bound_host_port_is_a_port_forward_error_and_leaves_nothing(nothing_left, config, netns):
    with socket.socket(socket.AF_INET6) as busy:  # dual stack: IPv4 and IPv6 both taken
        busy.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        busy.bind(("::", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        mapping = pyslirp.PortMapping(host_port=port, container_port=80)
        started = time.monotonic()
        with pytest.raises(
            pyslirp.PortForwardError, match=f"Failed to bind any port for '-t {port}"
        ):
            pasta.setup(options(config, netns, ports=[mapping]))
        assert time.monotonic() - started < FAST


def test_an_option_pasta_refuses_is_an_option_error(nothing_left, config, netns):
    with pytest.raises(pyslirp.OptionError, match="unrecognized option '--no-such-option'"):
        pasta.setup(options(config, netns, extra_options=["--no-such-option"]))
    with pytest.raises(pyslirp.OptionError, match="Multiple --stderr options given"):
        pasta.setup(options(config, netns, extra_options=["--stderr", "--stderr"]))


@pytest.mark.parametrize(
    "bad",
    [
        {"ready_timeout": math.inf},
        {"ready_timeout": math.nan},
        {"ready_timeout": 0},
        {"ready_timeout": "5"},
        {"ready_timeout": 1e10},
        {"netns": "/run/netns/x\0y"},
        {"userns_path": ""},
        {"addressing": "bridge"},
        {"extra_options": ["--pid", "/tmp/p"]},
        {"extra_options": ["-a\0"]},
        {"ports": [pyslirp.PortMapping(host_port=80, container_port=80, protocol="sctp")]},
    ],
)
def test_bad_input_is_refused_before_anything_is_spawned(nothing_left, config, netns, bad):
    bad = dict(bad)
    with pytest.raises((pyslirp.OptionError, pyslirp.PortMappingError)):
        pasta.setup(options(config, bad.pop("netns", netns), **bad))
    assert not Path(config.tmp_dir).exists()


def test_pasta_options_from_containers_conf_come_before_extra_options(
    nothing_left, tmp_path, netns
):
    conf = tmp_path / "containers.conf"
    conf.write_text('[network]\npasta_options = ["--mtu", "1500"]\n')
    config = pyslirp.Config.load([str(conf)])
    assert config.pasta_options == ("--mtu", "1500")
    config = pyslirp.Config(tmp_dir=str(tmp_path / "run"), pasta_options=config.pasta_options)
    with pasta.setup(options(config, netns, extra_options=["-4"])) as result:
        argv = cmdline(result.pid)
        assert argv[argv.index("--config-net") :][:4] == ["--config-net", "--mtu", "1500", "-4"]
        assert result.ipv6 is False
        assert result.dns_forward_ips == [ip_address("169.254.1.1")]


def test_pasta_is_found_in_helper_dirs_before_path(tmp_path, monkeypatch):
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "pasta").symlink_to(PASTA)
    config = pyslirp.Config(helper_binaries_dir=[str(helpers)])
    assert config.find_pasta() == str(helpers / "pasta")
    assert pyslirp.Config(helper_binaries_dir=[]).find_pasta() == PASTA
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(pyslirp.BinaryNotFound, match=r"^could not find pasta, the network"):
        pyslirp.Config(helper_binaries_dir=[]).find_pasta()


FAKE_HELP = 'if [ "$1" = --help ]; then echo "Usage: pasta --netns"; exit 1; fi'
FAKES = {
    "exits": ("echo 'fake: cannot start' >&2; exit 1", pyslirp.StartError, "fake: cannot start"),
    "never_ready": ("exec sleep 100", pyslirp.ReadyTimeout, "did not become ready"),
}


@pytest.mark.parametrize("fault", sorted(FAKES))
def test_fake_pasta_faults_are_typed_and_leave_nothing(nothing_left, tmp_path, netns, fault):
    body, kind, message = FAKES[fault]
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "pasta").write_text(f"#!/bin/sh\n{FAKE_HELP}\n{body}\n")
    (helpers / "pasta").chmod(0o755)
    config = pyslirp.Config(tmp_dir=str(tmp_path / "run"), helper_binaries_dir=[str(helpers)])
    with pytest.raises(kind, match=message):
        pasta.setup(options(config, netns, ready_timeout=0.5))


def test_map_guest_addr_is_passed_where_help_lists_it(nothing_left, tmp_path, netns):
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "pasta").write_text(
        '#!/bin/sh\nif [ "$1" = --help ]; then echo "--map-guest-addr ADDR"; exit 0; fi\n'
        f'exec {PASTA} "$@"\n'
    )
    (helpers / "pasta").chmod(0o755)
    config = pyslirp.Config(tmp_dir=str(tmp_path / "run"), helper_binaries_dir=[str(helpers)])
    # Debian's pasta does not know the option: it refuses it, as an old pasta refuses podman.
    with pytest.raises(pyslirp.OptionError, match="unrecognized option '--map-guest-addr'"):
        pasta.setup(options(config, netns))


def exits_within(pidfd: int, timeout: float) -> bool:
    return bool(select.select([pidfd], [], [], timeout)[0])


def owner_of_pasta(config, netns, pdeathsig: int) -> tuple[subprocess.Popen[bytes], int]:
    """A process that has set up pasta (with ``pdeathsig``), and a pidfd of that pasta."""
    program = str(PROGRAMS / "pasta_owner.py")
    owner = subprocess.Popen(
        [sys.executable, program, config.tmp_dir, netns, str(int(pdeathsig))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert owner.stdout is not None
    return owner, os.pidfd_open(int(owner.stdout.readline()))


def test_sigkill_of_the_owner_stops_pasta(config, netns):
    owner, pidfd = owner_of_pasta(config, netns, signal.SIGKILL)
    try:
        assert not exits_within(pidfd, 0)
        owner.kill()
        owner.wait()
        assert exits_within(pidfd, 5), "pasta outlived the process that owned it"
    finally:
        os.close(pidfd)
        owner.stdin.close()  # type: ignore[union-attr]


def test_without_pdeathsig_pasta_outlives_its_owner(config, netns):
    owner, pidfd = owner_of_pasta(config, netns, 0)
    try:
        owner.kill()
        owner.wait()
        assert not exits_within(pidfd, 0.2)
    finally:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        assert exits_within(pidfd, 5)
        os.close(pidfd)
        owner.stdin.close()  # type: ignore[union-attr]


@pytest.fixture
def rootless(tmp_path):
    """Runs programs/rootless_pasta.py (as nobody) with a tmp_dir nobody owns;
    /dev/net/tun open to everyone."""
    if os.stat("/dev/net/tun").st_mode & 0o006 != 0o006:
        os.chmod("/dev/net/tun", 0o666)  # as .ci/run does: rootless pasta opens it
    tmp_dir = Path(tempfile.mkdtemp(prefix="pyslirp-rootless-"))
    os.chown(tmp_dir, 65534, 65534)

    def run(mode: str) -> subprocess.Popen[str]:
        program = str(PROGRAMS / "rootless_pasta.py")
        return subprocess.Popen(
            [sys.executable, program, str(tmp_dir), str(free_port()), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )

    yield run
    subprocess.run(["rm", "-rf", str(tmp_dir)], check=True)


def test_rootless_setup_publishes_a_port_and_reads_addresses(rootless):
    out, err = rootless("publish").communicate(timeout=60)
    report = json.loads(out) if out else {}
    assert report.get("reply") == "hi 127.0.0.1", err
    assert report["pasta_uid"] == 65534
    assert report["ip_addresses"] == ["10.0.2.100"]  # read back from outside the userns
    assert wait_reaped(report["pid"])


def test_rootless_sigkill_of_the_owner_stops_pasta(rootless):
    owner = rootless("hold")
    assert owner.stdout is not None
    started = json.loads(owner.stdout.readline())
    pidfd = os.pidfd_open(started["pid"])
    try:
        owner.kill()
        owner.wait()
        assert exits_within(pidfd, 5), "rootless pasta outlived the process that owned it"
    finally:
        os.close(pidfd)
        for pid in started["others"]:
            os.kill(pid, signal.SIGKILL)
        owner.communicate()


def test_pasta_quits_when_its_netns_is_deleted_and_close_still_works(nothing_left, config, netns):
    result = pasta.setup(options(config, netns))
    pidfd = os.pidfd_open(result.pid)
    try:
        subprocess.run(["ip", "netns", "delete", os.path.basename(netns)], check=True)
        assert exits_within(pidfd, 5), "pasta did not quit when its netns was deleted"
    finally:
        os.close(pidfd)
        result.close()
    assert result.returncode is not None


def test_detach_leaves_pasta_running_for_the_caller(nothing_left, config, netns):
    result = pasta.setup(options(config, netns))
    pid = result.detach()
    pidfd = os.pidfd_open(pid)
    try:
        result.close()  # a no-op now
        del result
        assert not exits_within(pidfd, 0)
    finally:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        assert exits_within(pidfd, 5)
        os.close(pidfd)
    assert wait_reaped(pid)  # our reaper still collects it


def test_a_dropped_result_warns_and_stops_pasta(nothing_left, config, netns):
    result = pasta.setup(options(config, netns))
    pidfd = os.pidfd_open(result.pid)
    try:
        with pytest.warns(ResourceWarning, match="unclosed"):
            del result
            gc.collect()
        assert exits_within(pidfd, 5)
    finally:
        os.close(pidfd)
