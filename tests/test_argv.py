"""The slirp4netns argv: Go's order, dropped and refused flags, and the options round trip."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from ipaddress import IPv4Network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyslirp.argv import build_argv
from pyslirp.errors import OptionError
from pyslirp.features import Features, probe_features
from pyslirp.options import NetworkOptions, parse_options

FULL = Features(**{field.name: True for field in dataclasses.fields(Features)})
BARE = Features()
NETNS = "/run/netns/test"
TAIL = ["-c", "-r", "3", "--netns-type=path", NETNS, "tap0"]


def options_from_argv(argv: Sequence[str]) -> list[str]:
    """The network options a :func:`build_argv` command line carries, as ``key=value``:
    the inverse of build_argv for a binary with every feature.

    An absent ``--disable-host-loopback`` or ``--enable-ipv6`` reads as allowed/disabled,
    and ``--api-socket`` as ``port_handler=slirp4netns``.
    """
    flags: dict[str, str] = {}
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-r", "-e", "--api-socket"):
            flags[arg] = next(args)
        else:
            name, _, value = arg.partition("=")
            flags[name] = value
    options = [
        f"allow_host_loopback={str('--disable-host-loopback' not in flags).lower()}",
        f"enable_ipv6={str('--enable-ipv6' in flags).lower()}",
    ]
    for flag, key in (
        ("--mtu", "mtu"),
        ("--cidr", "cidr"),
        ("--outbound-addr", "outbound_addr"),
        ("--outbound-addr6", "outbound_addr6"),
    ):
        if flag in flags:
            options.append(f"{key}={flags[flag]}")
    if "--api-socket" in flags:
        options.append("port_handler=slirp4netns")
    return options


@pytest.mark.parametrize(
    ("options", "features", "kwargs", "expected"),
    [
        pytest.param(
            NetworkOptions(),
            FULL,
            {},
            [
                "--disable-host-loopback",
                "--mtu=65520",
                "--enable-sandbox",
                "--enable-seccomp",
                "--enable-ipv6",
                *TAIL,
            ],
            id="defaults",
        ),
        pytest.param(
            NetworkOptions(
                cidr=IPv4Network("10.9.0.0/16"),
                allow_host_loopback=True,
                mtu=1500,
                outbound_addr="127.0.0.1",
                outbound_addr6="::1",
            ),
            FULL,
            {"exit_fd": True, "api_socket": "/tmp/x.net"},
            [
                "--mtu=1500",
                "--enable-sandbox",
                "--enable-seccomp",
                "--cidr=10.9.0.0/16",
                "--enable-ipv6",
                "--outbound-addr=127.0.0.1",
                "--outbound-addr6=::1",
                "-c",
                "-r",
                "3",
                "-e",
                "4",
                "--api-socket",
                "/tmp/x.net",
                "--netns-type=path",
                NETNS,
                "tap0",
            ],
            id="everything",
        ),
        pytest.param(
            NetworkOptions(enable_ipv6=False),
            FULL,
            {"no_pivot_root": True, "userns_path": "/proc/1/ns/user"},
            [
                "--disable-host-loopback",
                "--mtu=65520",
                "--enable-seccomp",
                "-c",
                "-r",
                "3",
                "--userns-path=/proc/1/ns/user",
                "--netns-type=path",
                NETNS,
                "tap0",
            ],
            id="no-pivot-root-no-ipv6-userns",
        ),
        pytest.param(
            NetworkOptions(enable_ipv6=False),
            BARE,
            {"exit_fd": True},
            ["-c", "-r", "3", "-e", "4", "--netns-type=path", NETNS, "tap0"],
            id="old-binary-drops-optional-flags",
        ),
        pytest.param(
            NetworkOptions(),
            dataclasses.replace(FULL, enable_sandbox=False, mtu=False),
            {},
            ["--disable-host-loopback", "--enable-seccomp", "--enable-ipv6", *TAIL],
            id="no-sandbox-no-mtu-support",
        ),
    ],
)
def test_argv_is_in_gos_order(
    options: NetworkOptions, features: Features, kwargs: dict[str, Any], expected: list[str]
) -> None:
    argv = build_argv("/usr/bin/slirp4netns", options, features, netns=NETNS, **kwargs)
    assert argv == ["/usr/bin/slirp4netns", *expected]


@pytest.mark.parametrize(
    ("options", "features", "message"),
    [
        (
            NetworkOptions(cidr=IPv4Network("10.9.0.0/16")),
            dataclasses.replace(FULL, cidr=False),
            "cidr not supported",
        ),
        (NetworkOptions(), dataclasses.replace(FULL, ipv6=False), "enable_ipv6 not supported"),
        (
            NetworkOptions(outbound_addr="127.0.0.1"),
            dataclasses.replace(FULL, outbound_addr=False),
            "outbound_addr not supported",
        ),
        (
            NetworkOptions(outbound_addr6="::1"),
            dataclasses.replace(FULL, outbound_addr=False),
            "outbound_addr6 not supported",
        ),
    ],
)
def test_a_requested_option_the_binary_lacks_is_an_error(
    options: NetworkOptions, features: Features, message: str
) -> None:
    with pytest.raises(OptionError, match=f"^{message}$"):
        build_argv("s", options, features, netns=NETNS)


def test_ipv4_outbound_addr_needs_no_ipv6_support() -> None:
    options = NetworkOptions(enable_ipv6=False, outbound_addr="127.0.0.1")
    argv = build_argv("s", options, dataclasses.replace(FULL, ipv6=False), netns=NETNS)
    assert "--outbound-addr=127.0.0.1" in argv


def test_userns_path_without_support_is_an_error() -> None:
    with pytest.raises(OptionError, match=r"^userns_path not supported$"):
        build_argv(
            "s",
            NetworkOptions(),
            dataclasses.replace(FULL, userns_path=False),
            netns=NETNS,
            userns_path="/proc/1/ns/user",
        )


def test_real_binary_features_build_the_default_argv() -> None:
    argv = build_argv(
        "/usr/bin/slirp4netns",
        NetworkOptions(),
        probe_features("/usr/bin/slirp4netns"),
        netns=NETNS,
    )
    assert argv[1:6] == [
        "--disable-host-loopback",
        "--mtu=65520",
        "--enable-sandbox",
        "--enable-seccomp",
        "--enable-ipv6",
    ]


def test_options_from_argv_reads_the_network_flags() -> None:
    argv = build_argv(
        "s",
        parse_options(["cidr=10.1.0.0/16", "mtu=9000"], []),
        FULL,
        netns=NETNS,
        api_socket="/tmp/a.net",
        exit_fd=True,
    )
    assert options_from_argv(argv) == [
        "allow_host_loopback=false",
        "enable_ipv6=true",
        "mtu=9000",
        "cidr=10.1.0.0/16",
        "port_handler=slirp4netns",
    ]


_option_lists = st.lists(
    st.one_of(
        st.builds("cidr={}/{}".format, st.ip_addresses(v=4), st.integers(1, 25)),
        st.sampled_from(["port_handler=rootlesskit", "port_handler=slirp4netns"]),
        st.sampled_from(["allow_host_loopback=true", "allow_host_loopback=false"]),
        st.sampled_from(["enable_ipv6=true", "enable_ipv6=false"]),
        st.builds("outbound_addr={}".format, st.one_of(st.ip_addresses(v=4), st.just("lo"))),
        st.builds("mtu={}".format, st.integers(68, 65521)),
    ),
    max_size=8,
)


@settings(max_examples=300)
@given(_option_lists, st.booleans(), st.booleans())
def test_a_valid_option_list_survives_a_round_trip_through_argv(
    option_list: list[str], with_ipv6_addr: bool, exit_fd: bool
) -> None:
    if with_ipv6_addr:
        option_list = [*option_list, "enable_ipv6=true", "outbound_addr6=::1"]
    options = parse_options(option_list, [])
    api_socket = "/tmp/x.net" if options.port_handler == "slirp4netns" else None
    argv = build_argv(
        "/usr/bin/slirp4netns", options, FULL, netns=NETNS, exit_fd=exit_fd, api_socket=api_socket
    )
    assert parse_options(options_from_argv(argv), []) == options
