"""pasta's argv: podman's createPastaArgs case by case, then the options that keep pasta
our child. Pure: nothing is spawned."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from pyslirp import OptionError, PortMapping, PortMappingError
from pyslirp.pastaargv import (
    SLIRP4NETNS_ADDRESSING,
    SLIRP4NETNS_PRESET,
    child_options,
    create_pasta_args,
)

DNS = "169.254.1.1"
GUEST = "169.254.1.2"
NONE_ALL = ["-t", "none", "-u", "none", "-T", "none", "-U", "none"]
TAIL = ["--no-map-gw", "--quiet", "--netns", "netns123", "--map-guest-addr", GUEST]


def tcp(host: int, container: int, range: int = 1, host_ip: str = "") -> PortMapping:
    return PortMapping(host_port=host, container_port=container, range=range, host_ip=host_ip)


def udp(host: int, container: int) -> PortMapping:
    return PortMapping(host_port=host, container_port=container, protocol="udp")


# podman's Test_createPastaArgs (containers/common libnetwork/pasta), with the builder
# that adds --dns-forward 169.254.1.1 and, last, --map-guest-addr 169.254.1.2:
# (name, config options, extra options, ports, the argv, DNS forward, guest addresses)
PODMAN_CASES = [
    (
        "default options",
        [],
        [],
        [],
        ["--config-net", "--dns-forward", DNS, *NONE_ALL, *TAIL],
        [DNS],
        [GUEST],
    ),
    (
        "basic port",
        [],
        [],
        [tcp(80, 80)],
        ["--config-net", "-t", "80-80:80-80", "--dns-forward", DNS, *NONE_ALL[2:], *TAIL],
        [DNS],
        [GUEST],
    ),
    (
        "port range",
        [],
        [],
        [tcp(80, 80, range=3)],
        ["--config-net", "-t", "80-82:80-82", "--dns-forward", DNS, *NONE_ALL[2:], *TAIL],
        [DNS],
        [GUEST],
    ),
    (
        "different host and container port",
        [],
        [],
        [tcp(80, 60)],
        ["--config-net", "-t", "80-80:60-60", "--dns-forward", DNS, *NONE_ALL[2:], *TAIL],
        [DNS],
        [GUEST],
    ),
    (
        "tcp and udp port",
        [],
        [],
        [tcp(80, 60), udp(100, 100)],
        [
            "--config-net",
            *["-t", "80-80:60-60", "-u", "100-100:100-100"],
            *["--dns-forward", DNS, "-T", "none", "-U", "none", *TAIL],
        ],
        [DNS],
        [GUEST],
    ),
    (
        "two tcp ports",
        [],
        [],
        [tcp(80, 60), tcp(100, 100)],
        [
            "--config-net",
            *["-t", "80-80:60-60", "-t", "100-100:100-100"],
            *["--dns-forward", DNS, *NONE_ALL[2:], *TAIL],
        ],
        [DNS],
        [GUEST],
    ),
    (
        "config options before extra options",
        ["-i", "eth0"],
        ["-n", "24"],
        [],
        ["--config-net", "-i", "eth0", "-n", "24", "--dns-forward", DNS, *NONE_ALL, *TAIL],
        [DNS],
        [GUEST],
    ),
    (
        "-T option",
        [],
        ["-T", "80"],
        [],
        [
            "--config-net",
            *["-T", "80", "--dns-forward", DNS, "-t", "none", "-u", "none", "-U", "none"],
            *TAIL,
        ],
        [DNS],
        [GUEST],
    ),
    (
        "--tcp-ns option",
        [],
        ["--tcp-ns", "80"],
        [],
        [
            "--config-net",
            *["--tcp-ns", "80", "--dns-forward", DNS, "-t", "none", "-u", "none", "-U", "none"],
            *TAIL,
        ],
        [DNS],
        [GUEST],
    ),
    (
        "--map-gw option",
        [],
        ["--map-gw"],
        [],
        ["--config-net", "--dns-forward", DNS, *NONE_ALL, *TAIL[1:]],
        [DNS],
        [GUEST],
    ),
    (
        "--map-gw with port directly after",  # podman issue 22477
        [],
        ["--map-gw", "-T", "80"],
        [],
        [
            "--config-net",
            *["-T", "80", "--dns-forward", DNS, "-t", "none", "-u", "none", "-U", "none"],
            *TAIL[1:],
        ],
        [DNS],
        [GUEST],
    ),
    (
        "two --map-gw",
        ["--map-gw", "-T", "80"],
        ["--map-gw"],
        [],
        [
            "--config-net",
            *["-T", "80", "--dns-forward", DNS, "-t", "none", "-u", "none", "-U", "none"],
            *TAIL[1:],
        ],
        [DNS],
        [GUEST],
    ),
    (
        "--dns-forward option",
        [],
        ["--dns-forward", "192.168.255.255"],
        [],
        ["--config-net", "--dns-forward", "192.168.255.255", *NONE_ALL, *TAIL],
        ["192.168.255.255"],
        [GUEST],
    ),
    (
        "two --dns-forward options",
        [],
        ["--dns-forward", "192.168.255.255", "--dns-forward", "::1"],
        [],
        [
            "--config-net",
            *["--dns-forward", "192.168.255.255", "--dns-forward", "::1"],
            *NONE_ALL,
            *TAIL,
        ],
        ["192.168.255.255", "::1"],
        [GUEST],
    ),
    (
        "port and custom opt",
        [],
        ["-i", "eth0"],
        [tcp(80, 80)],
        [
            "--config-net",
            *["-i", "eth0", "-t", "80-80:80-80", "--dns-forward", DNS],
            *NONE_ALL[2:],
            *TAIL,
        ],
        [DNS],
        [GUEST],
    ),
    (
        "Add verbose logging",
        [],
        ["--log-file=/tmp/log", "--trace", "--debug"],
        [],
        [
            "--config-net",
            *["--log-file=/tmp/log", "--trace", "--debug", "--dns-forward", DNS],
            *NONE_ALL,
            *["--no-map-gw", "--netns", "netns123", "--map-guest-addr", GUEST],
        ],
        [DNS],
        [GUEST],
    ),
    (
        "--map-guest-addr option",
        [],
        ["--map-guest-addr", "192.168.255.255"],
        [],
        [
            "--config-net",
            *["--map-guest-addr", "192.168.255.255", "--dns-forward", DNS],
            *NONE_ALL,
            *TAIL[:-2],
        ],
        [DNS],
        ["192.168.255.255"],
    ),
    (
        "host ip",
        [],
        [],
        [tcp(8080, 80, host_ip="127.0.0.1")],
        [
            "--config-net",
            *["-t", "127.0.0.1/8080-8080:80-80", "--dns-forward", DNS],
            *NONE_ALL[2:],
            *TAIL,
        ],
        [DNS],
        [GUEST],
    ),
    (
        "-d shortens to no --quiet, and a port spec of the caller's counts",
        ["-d"],
        ["-t", "22", "--udp-ports", "53"],
        [],
        [
            "--config-net",
            *["-d", "-t", "22", "--udp-ports", "53", "--dns-forward", DNS],
            *["-T", "none", "-U", "none", "--no-map-gw", "--netns", "netns123"],
            *["--map-guest-addr", GUEST],
        ],
        [DNS],
        [GUEST],
    ),
]


@pytest.mark.parametrize(
    ("config", "extra", "ports", "argv", "dns", "guest"),
    [case[1:] for case in PODMAN_CASES],
    ids=[case[0] for case in PODMAN_CASES],
)
def test_argv_is_podmans_for_the_same_inputs(config, extra, ports, argv, dns, guest):
    built = create_pasta_args(config, extra, ports, "netns123")
    assert built.args == argv
    assert built.dns_forward_ips == [ip_address(a) for a in dns]
    assert built.map_guest_addr_ips == [ip_address(a) for a in guest]


def test_sctp_is_refused_with_podmans_words():
    sctp = PortMapping(host_port=80, container_port=60, protocol="sctp")
    with pytest.raises(PortMappingError, match=r"^can't forward protocol: sctp$"):
        create_pasta_args([], [], [sctp], "netns123")


def test_without_map_guest_addr_support_it_is_left_out_as_podmans_retry_does():
    built = create_pasta_args([], [], [], "netns123", map_guest_addr=False)
    assert built.args == ["--config-net", "--dns-forward", DNS, *NONE_ALL, *TAIL[:-2]]
    assert built.map_guest_addr_ips == []


def test_a_tcp_and_udp_mapping_gives_one_flag_per_protocol():
    both = PortMapping(host_port=5000, container_port=50, range=2, protocol="udp,tcp")
    args = create_pasta_args([], [], [both], "n").args
    assert args[1:5] == ["-u", "5000-5001:50-51", "-t", "5000-5001:50-51"]


def test_slirp4netns_preset_sets_its_addresses_and_dns():
    built = create_pasta_args([], SLIRP4NETNS_PRESET, [], "n")
    assert built.args[1:9] == [*SLIRP4NETNS_ADDRESSING, "--dns-forward", "10.0.2.3"]
    assert SLIRP4NETNS_ADDRESSING == ("-a", "10.0.2.100", "-n", "24", "-g", "10.0.2.2")
    assert built.args.count("--dns-forward") == 1
    assert built.dns_forward_ips == [ip_address("10.0.2.3")]


def test_a_bad_dns_forward_address_is_an_option_error():
    with pytest.raises(OptionError, match='invalid --dns-forward address "nope"'):
        create_pasta_args([], ["--dns-forward", "nope"], [], "n")


def test_child_options_as_root_and_rootless():
    assert child_options([], root=True, userns=None) == [
        "--foreground",
        "--stderr",
        "--runas",
        "0",
    ]
    assert child_options([], root=False, userns="/proc/7/ns/user") == [
        "--foreground",
        "--stderr",
        "--userns",
        "/proc/7/ns/user",
    ]


@pytest.mark.parametrize(
    ("given", "dropped"),
    [
        (["-f"], "--foreground"),
        (["--foreground"], "--foreground"),
        (["-e"], "--stderr"),
        (["-l", "/tmp/pasta.log"], "--stderr"),
        (["--log-file=/tmp/pasta.log"], "--stderr"),
        (["--runas", "1000"], "--runas"),
        (["--runas=1000"], "--runas"),
    ],
)
def test_child_options_are_not_repeated_when_given(given, dropped):
    assert dropped not in child_options(given, root=True, userns=None)


@pytest.mark.parametrize("pid_option", [["--pid", "/x"], ["-P", "/x"], ["--pid=/x"], ["-P/x"]])
def test_a_pid_file_of_the_callers_is_refused(pid_option):
    with pytest.raises(OptionError, match="cannot use --pid or -P in the pasta options"):
        child_options(["--config-net", *pid_option], root=True, userns=None)
