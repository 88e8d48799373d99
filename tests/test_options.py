"""Network option parsing: every key, default, Go error text and the merge order."""

from __future__ import annotations

import dataclasses
import math
import signal
import socket
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyslirp.config import Config
from pyslirp.errors import OptionError, PortMappingError, SlirpError
from pyslirp.options import OPTION_KEYS, NetworkOptions, SetupOptions, fd_of, parse_options
from pyslirp.ports import PortMapping


def test_defaults_are_podmans() -> None:
    options = parse_options([], [])
    assert options == NetworkOptions()
    assert options.cidr is None
    assert options.port_handler == "rootlesskit"
    assert options.allow_host_loopback is False
    assert options.enable_ipv6 is True
    assert options.outbound_addr is None
    assert options.outbound_addr6 is None
    assert options.mtu == 65520


def test_every_key_is_read() -> None:
    options = parse_options(
        [
            "cidr=10.9.0.0/16",
            "port_handler=slirp4netns",
            "allow_host_loopback=true",
            "enable_ipv6=true",
            "outbound_addr=127.0.0.1",
            "outbound_addr6=::1",
            "mtu=1500",
        ],
        [],
    )
    assert options == NetworkOptions(
        cidr=IPv4Network("10.9.0.0/16"),
        port_handler="slirp4netns",
        allow_host_loopback=True,
        enable_ipv6=True,
        outbound_addr="127.0.0.1",
        outbound_addr6="::1",
        mtu=1500,
    )


def test_cidr_host_bits_are_masked() -> None:
    assert parse_options(["cidr=192.168.7.77/24"], []).cidr == IPv4Network("192.168.7.0/24")


def test_extra_options_override_config_options() -> None:
    options = parse_options(["mtu=1500", "port_handler=slirp4netns"], ["mtu=9000"])
    assert options.mtu == 9000
    assert options.port_handler == "slirp4netns"


def test_a_later_value_wins_within_one_list() -> None:
    assert parse_options(["enable_ipv6=false", "enable_ipv6=true"], []).enable_ipv6 is True
    assert parse_options([], ["allow_host_loopback=true", "allow_host_loopback=false"]) == (
        NetworkOptions()
    )


def test_an_earlier_bad_value_fails_even_if_a_later_one_is_good() -> None:
    with pytest.raises(OptionError, match='invalid mtu "67"'):
        parse_options(["mtu=67"], ["mtu=1500"])


def test_outbound_addr_accepts_an_existing_interface_name() -> None:
    interface = socket.if_nameindex()[0][1]
    options = parse_options([f"outbound_addr={interface}", f"outbound_addr6={interface}"], [])
    assert options.outbound_addr == options.outbound_addr6 == interface


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("foo=bar", 'unknown option for slirp4netns: "foo=bar"'),
        ("mtu", 'unknown option for slirp4netns: "mtu"'),
        ("", 'unknown option for slirp4netns: ""'),
        ("a\tb", 'unknown option for slirp4netns: "a\\tb"'),
        ('say="hi"', 'unknown option for slirp4netns: "say=\\"hi\\""'),
        ("cidr=x", 'invalid cidr "x"'),
        ("cidr=fd00::/64", 'invalid cidr "fd00::/64"'),
        ("cidr=10.0.2.0", 'invalid cidr "10.0.2.0"'),
        ("port_handler=nope", 'unknown port_handler for slirp4netns: "nope"'),
        ("allow_host_loopback=1", 'invalid value of allow_host_loopback for slirp4netns: "1"'),
        ("enable_ipv6=yes", 'invalid value of enable_ipv6 for slirp4netns: "yes"'),
        ("enable_ipv6=True", 'invalid value of enable_ipv6 for slirp4netns: "True"'),
        ("outbound_addr=::1", 'invalid outbound_addr "::1"'),
        ("outbound_addr=no-such-if0", 'invalid outbound_addr "no-such-if0"'),
        ("outbound_addr=", 'invalid outbound_addr ""'),
        ("outbound_addr6=10.0.0.1", 'invalid outbound_addr6: "10.0.0.1"'),
        ("outbound_addr6=::ffff:10.0.0.1", 'invalid outbound_addr6: "::ffff:10.0.0.1"'),
        ("outbound_addr6=fe80::1%lo", 'invalid outbound_addr6: "fe80::1%lo"'),
        ("mtu=67", 'invalid mtu "67"'),
        ("mtu=abc", 'invalid mtu "abc"'),
        ("mtu= 1500", 'invalid mtu " 1500"'),
        ("mtu=1_500", 'invalid mtu "1_500"'),
        ("mtu=\u0661\u0665\u0660\u0660", 'invalid mtu "\u0661\u0665\u0660\u0660"'),
    ],
)
def test_errors_have_go_wording_and_quoting(option: str, message: str) -> None:
    with pytest.raises(OptionError) as info:
        parse_options([option], [])
    assert str(info.value) == message


@pytest.mark.parametrize("cidr", ["10.0.2.0/26", "10.0.2.0/32", "0.0.0.0/0"])
def test_cidr_prefix_outside_1_to_25_is_refused_before_spawn(cidr: str) -> None:
    with pytest.raises(OptionError) as info:
        parse_options([f"cidr={cidr}"], [])
    assert str(info.value) == (
        f'invalid cidr "{cidr}": slirp4netns needs a prefix length of 1 to 25 '
        "(the namespace gets network + 100)"
    )


def test_cidr_prefix_may_have_leading_zeros_as_in_go() -> None:
    assert parse_options(["cidr=10.0.2.0/024"], []).cidr == IPv4Network("10.0.2.0/24")


def test_cidr_prefix_25_and_1_are_accepted() -> None:
    assert parse_options(["cidr=10.0.2.128/25"], []).cidr == IPv4Network("10.0.2.128/25")
    assert parse_options(["cidr=128.0.0.0/1"], []).cidr == IPv4Network("128.0.0.0/1")


def test_mtu_range_is_68_to_65521() -> None:
    assert parse_options(["mtu=68"], []).mtu == 68
    assert parse_options(["mtu=65521"], []).mtu == 65521
    assert parse_options(["mtu=+1500"], []).mtu == 1500
    with pytest.raises(OptionError, match=r'^invalid mtu "65522": '):
        parse_options(["mtu=65522"], [])


def test_outbound_addr6_requires_ipv6_once_all_options_are_read() -> None:
    with pytest.raises(OptionError, match=r"^enable_ipv6=true is required for outbound_addr6$"):
        parse_options(["outbound_addr6=::1"], ["enable_ipv6=false"])
    options = parse_options(["enable_ipv6=false", "outbound_addr6=::1"], ["enable_ipv6=true"])
    assert options.outbound_addr6 == "::1"


def test_option_error_is_a_value_error() -> None:
    assert issubclass(OptionError, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"cidr": IPv4Network("10.0.0.0/30")},
            'invalid cidr "10.0.0.0/30": slirp4netns needs a prefix length of 1 to 25 '
            "(the namespace gets network + 100)",
        ),
        ({"cidr": "10.0.2.0/24"}, 'invalid cidr "10.0.2.0/24"'),
        ({"port_handler": "other"}, 'unknown port_handler for slirp4netns: "other"'),
        (
            {"allow_host_loopback": "yes"},
            "invalid value of allow_host_loopback for slirp4netns: 'yes'",
        ),
        ({"enable_ipv6": 1}, "invalid value of enable_ipv6 for slirp4netns: 1"),
        ({"mtu": 10}, 'invalid mtu "10"'),
        ({"mtu": 65522}, 'invalid mtu "65522": slirp4netns allows at most 65521'),
        ({"mtu": True}, "invalid mtu True"),
        ({"mtu": 1500.0}, "invalid mtu 1500.0"),
        ({"mtu": "1500"}, "invalid mtu '1500'"),
        ({"outbound_addr": "::1"}, 'invalid outbound_addr "::1"'),
        ({"outbound_addr": 5}, "invalid outbound_addr 5"),
        ({"outbound_addr6": 5}, "invalid outbound_addr6: 5"),
        (
            {"outbound_addr6": "::1", "enable_ipv6": False},
            "enable_ipv6=true is required for outbound_addr6",
        ),
    ],
)
def test_network_options_are_validated_when_built_directly(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(OptionError) as info:
        NetworkOptions(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_network_options_are_frozen_and_keyword_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        NetworkOptions().mtu = 1500  # type: ignore[misc]
    with pytest.raises(TypeError):
        NetworkOptions(None)  # type: ignore[misc]


def test_only_the_first_equals_sign_splits_key_from_value() -> None:
    with pytest.raises(OptionError) as info:
        parse_options(["mtu=1500=1"], [])
    assert str(info.value) == 'invalid mtu "1500=1"'


# Values the parser treats specially, near its limits, or in Go's and Python's gaps.
_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "true",
            "false",
            "rootlesskit",
            "slirp4netns",
            "lo",
            "::1",
            "fd00::1",
            "10.0.2.0/24",
            "10.0.2.0/25",
            "10.0.2.0/024",
            "0.0.0.0/0",
            "1.2.3.4",
            "+1500",
            "-1",
            "65520",
            "65521",
            "68",
            "67",
            "٣٣",
            "1e3",
        ]
    ),
    st.integers(-(2**70), 2**70).map(str),
    st.ip_addresses().map(str),
    st.builds("{}/{}".format, st.ip_addresses(v=4), st.integers(-1, 40)),
)
_option = st.one_of(
    st.builds("{}={}".format, st.sampled_from([*OPTION_KEYS, "other", ""]), _values),
    st.text(max_size=40),
)


@settings(max_examples=500)
@given(st.lists(_option, max_size=4), st.lists(_option, max_size=4))
def test_any_strings_give_valid_options_or_option_error(
    config: list[str], extra: list[str]
) -> None:
    try:
        options = parse_options(config, extra)
    except OptionError:
        return
    assert isinstance(options, NetworkOptions)
    assert 68 <= options.mtu <= 65521
    assert options.cidr is None or 1 <= options.cidr.prefixlen <= 25


# --- SetupOptions: every field checked when the options are made ---------------------------

CONFIG = Config(tmp_dir="/tmp/pyslirp-test-run")


def setup_options(**kwargs: Any) -> SetupOptions:
    return SetupOptions(**{"config": CONFIG, "container_id": "ctr", "netns": "/n", **kwargs})


def test_setup_options_defaults_and_the_parsed_network_options() -> None:
    opts = SetupOptions(container_id="ctr", netns="/run/netns/x")
    assert opts.config == Config()
    assert (opts.ports, opts.extra_options, opts.userns_path) == ((), (), None)
    assert (opts.slirp4netns_exit_pipe_r, opts.rootless_port_exit_pipe_r) == (None, None)
    assert (opts.pdeathsig, opts.ready_timeout) == (0, 10.0)
    assert opts.network == NetworkOptions()


def test_setup_options_read_config_options_then_extra_ones() -> None:
    config = Config(tmp_dir="/t", network_cmd_options=("mtu=1500", "enable_ipv6=false"))
    opts = setup_options(config=config, extra_options=["mtu=9000"])
    assert opts.network == NetworkOptions(mtu=9000, enable_ipv6=False)
    assert opts.extra_options == ("mtu=9000",)
    with pytest.raises(OptionError) as info:
        setup_options(extra_options=["mtu=1"])
    assert str(info.value) == 'invalid mtu "1"'


def test_setup_options_keep_ports_as_a_tuple() -> None:
    mapping = PortMapping(container_port=80, host_port=8080, protocol="tcp,udp")
    assert setup_options(ports=(m for m in [mapping])).ports == (mapping,)


def test_setup_options_take_fds_and_files(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w") as file:
        opts = setup_options(slirp4netns_exit_pipe_r=0, rootless_port_exit_pipe_r=file)
    assert (opts.slirp4netns_exit_pipe_r, opts.rootless_port_exit_pipe_r) == (0, file)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"container_id": "a.b..c"},
        {"userns_path": "/proc/1/ns/user"},
        {"config": Config(tmp_dir="/t", network_cmd_path="slirp4netns")},
        {"pdeathsig": signal.SIGKILL},
        {"pdeathsig": signal.NSIG - 1},
        {"ready_timeout": 0.001},
        {"ready_timeout": 3600},
    ],
)
def test_setup_options_accept_the_edges(kwargs: dict[str, Any]) -> None:
    opts = setup_options(**kwargs)
    for name, value in kwargs.items():
        assert getattr(opts, name) == value


class _ClosedFile:
    """A file whose fileno() raises, as a closed file's does."""

    def fileno(self) -> int:
        raise ValueError("I/O operation on closed file")

    def __repr__(self) -> str:
        return "<closed file>"


_CLOSED = _ClosedFile()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"config": "x"}, "invalid config 'x': not a pyslirp.Config"),
        ({"container_id": ""}, "invalid container id ''"),
        ({"container_id": "."}, "invalid container id '.'"),
        ({"container_id": ".."}, "invalid container id '..'"),
        ({"container_id": "../../etc"}, "invalid container id '../../etc'"),
        ({"container_id": "a\0b"}, "invalid container id 'a\\x00b'"),
        ({"container_id": 7}, "invalid container id 7"),
        ({"netns": ""}, "invalid netns '': must be a non-empty string"),
        ({"netns": 3}, "invalid netns 3: must be a non-empty string"),
        ({"netns": "/run/\0"}, "invalid netns '/run/\\x00': contains a NUL byte"),
        ({"config": Config(tmp_dir="")}, "invalid tmp_dir '': must be a non-empty string"),
        (
            {"config": Config(tmp_dir="/t", network_cmd_path="a\0")},
            "invalid network_cmd_path 'a\\x00': contains a NUL byte",
        ),
        ({"userns_path": ""}, "invalid userns_path '': must be a non-empty string"),
        ({"ports": "8080:80"}, "invalid ports '8080:80': must be a sequence of PortMapping"),
        ({"ports": b"80"}, "invalid ports b'80': must be a sequence of PortMapping"),
        ({"ports": 80}, "invalid ports 80: must be a sequence of PortMapping"),
        ({"ports": ["8080:80"]}, "invalid port mapping '8080:80': not a PortMapping"),
        (
            {"ports": [PortMapping(container_port=1, host_port=1, protocol="tcp,sctp")]},
            'cannot publish "sctp" ports (protocol "tcp,sctp"): rootlessport and slirp4netns '
            "forward only tcp and udp",
        ),
        (
            {"extra_options": "mtu=1500"},
            "invalid extra_options 'mtu=1500': must be a sequence of strings",
        ),
        ({"extra_options": b"m"}, "invalid extra_options b'm': must be a sequence of strings"),
        ({"extra_options": 5}, "invalid extra_options 5: must be a sequence of strings"),
        ({"extra_options": ["mtu=1500", 5]}, "invalid option 5: not a string"),
        (
            {"slirp4netns_exit_pipe_r": True},
            "invalid slirp4netns_exit_pipe_r True: not an fd or a file",
        ),
        (
            {"slirp4netns_exit_pipe_r": -1},
            "invalid slirp4netns_exit_pipe_r -1: not an fd or a file",
        ),
        (
            {"rootless_port_exit_pipe_r": "3"},
            "invalid rootless_port_exit_pipe_r '3': not an fd or a file",
        ),
        (
            {"rootless_port_exit_pipe_r": _CLOSED},
            "invalid rootless_port_exit_pipe_r <closed file>: I/O operation on closed file",
        ),
        ({"pdeathsig": -1}, "invalid pdeathsig -1: not 0 or a signal number"),
        ({"pdeathsig": signal.NSIG}, f"invalid pdeathsig {signal.NSIG}: not 0 or a signal number"),
        ({"pdeathsig": True}, "invalid pdeathsig True: not 0 or a signal number"),
        ({"pdeathsig": 9.0}, "invalid pdeathsig 9.0: not 0 or a signal number"),
    ],
)
def test_setup_options_name_a_bad_value(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((OptionError, PortMappingError)) as info:
        setup_options(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("timeout", [0, -1, 3600.5, math.inf, math.nan, True, "soon", None])
def test_setup_options_refuse_a_bad_ready_timeout(timeout: object) -> None:
    with pytest.raises(OptionError) as info:
        setup_options(ready_timeout=timeout)
    assert str(info.value) == (
        f"invalid ready_timeout {timeout!r}: must be seconds, more than 0 and at most 3600"
    )


def test_setup_options_are_frozen_and_keyword_only() -> None:
    opts = setup_options()
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.netns = "/m"  # type: ignore[misc]
    with pytest.raises(TypeError):
        SetupOptions(CONFIG, "ctr", "/n")  # type: ignore[misc]


def test_fd_of_takes_an_fd_or_a_file(tmp_path: Path) -> None:
    assert fd_of(7) == 7
    with open(tmp_path / "f", "w") as file:
        assert fd_of(file) == file.fileno()


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({"ports": "8080:80"}, PortMappingError),
        ({"ports": ["8080:80"]}, PortMappingError),
        ({"extra_options": 5}, OptionError),
        ({"extra_options": [5]}, OptionError),
    ],
)
def test_a_bad_sequence_is_the_error_of_what_it_holds(kwargs: dict[str, Any], kind: type) -> None:
    with pytest.raises(SlirpError) as info:
        setup_options(**kwargs)
    assert type(info.value) is kind
