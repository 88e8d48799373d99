"""Port mappings, their JSON, the slirp4netns API expansion and podman's -p syntax."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyslirp.errors import PortMappingError
from pyslirp.ports import PortMapping, parse_publish, slirp4netns_hostfwd_args


def test_defaults_are_tcp_all_addresses_one_port() -> None:
    mapping = PortMapping(container_port=80, host_port=8080)
    assert (mapping.host_ip, mapping.range, mapping.protocol) == ("", 1, "tcp")


def test_fields_are_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        PortMapping(80, 8080)  # type: ignore[call-arg]
    mapping = PortMapping(container_port=80, host_port=8080)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mapping.host_port = 1  # type: ignore[misc]


def test_to_json_has_podmans_keys_exactly() -> None:
    mapping = PortMapping(
        container_port=80, host_port=8080, host_ip="127.0.0.1", range=3, protocol="tcp,udp"
    )
    assert mapping.to_json() == {
        "host_ip": "127.0.0.1",
        "container_port": 80,
        "host_port": 8080,
        "range": 3,
        "protocol": "tcp,udp",
    }


def test_range_zero_means_one() -> None:
    mapping = PortMapping(container_port=80, host_port=8080, range=0)
    assert mapping.range == 1
    assert mapping.to_json()["range"] == 1
    assert mapping == PortMapping(container_port=80, host_port=8080)


def test_protocols_splits_the_comma_list() -> None:
    mapping = PortMapping(container_port=1, host_port=1, protocol="udp,tcp,sctp")
    assert mapping.protocols == ("udp", "tcp", "sctp")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"container_port": 0, "host_port": 1}, "container_port 0"),
        ({"container_port": 65536, "host_port": 1}, "container_port 65536"),
        ({"container_port": 1, "host_port": -1}, "host_port -1"),
        ({"container_port": 1, "host_port": True}, "host_port True"),
        ({"container_port": "80", "host_port": 1}, "container_port '80'"),
        ({"container_port": 1, "host_port": 65535, "range": 2}, "host_port 65535 with range 2"),
        ({"container_port": 65530, "host_port": 1, "range": 7}, "container_port 65530"),
        ({"container_port": 1, "host_port": 1, "range": -1}, "range -1"),
        ({"container_port": 1, "host_port": 1, "range": 65536}, "range 65536"),
        ({"container_port": 1, "host_port": 1, "protocol": ""}, 'protocol ""'),
        ({"container_port": 1, "host_port": 1, "protocol": "TCP"}, 'protocol "TCP"'),
        ({"container_port": 1, "host_port": 1, "protocol": "tcp,"}, 'protocol "tcp,"'),
        ({"container_port": 1, "host_port": 1, "protocol": "icmp"}, 'protocol "icmp"'),
        ({"container_port": 1, "host_port": 1, "protocol": "tcp,tcp"}, "listed twice"),
        ({"container_port": 1, "host_port": 1, "host_ip": "localhost"}, "host_ip 'localhost'"),
        ({"container_port": 1, "host_port": 1, "host_ip": "fe80::1%lo"}, "host_ip 'fe80::1%lo'"),
        ({"container_port": 1, "host_port": 1, "host_ip": "[::1]"}, "host_ip '[::1]'"),
    ],
)
def test_bad_mapping_raises_port_mapping_error_naming_the_value(
    kwargs: dict[str, object], named: str
) -> None:
    with pytest.raises(PortMappingError) as info:
        PortMapping(**kwargs)  # type: ignore[arg-type]
    assert named in str(info.value)
    assert isinstance(info.value, ValueError)


def test_last_port_of_a_range_may_be_65535() -> None:
    mapping = PortMapping(container_port=65534, host_port=65533, range=2)
    assert mapping.range == 2
    assert PortMapping(container_port=1, host_port=1, range=65535).range == 65535


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"container_port": 1, "host_port": 65535, "range": 2},
            "invalid host_port 65535 with range 2: the last port 65536 is past 65535",
        ),
        (
            {"container_port": 65530, "host_port": 1, "range": 7},
            "invalid container_port 65530 with range 7: the last port 65536 is past 65535",
        ),
        (
            {"container_port": 0, "host_port": 1},
            "invalid container_port 0: port numbers must be between 1 and 65535 (inclusive)",
        ),
        (
            {"container_port": 1, "host_port": 1, "range": -1},
            "invalid range -1: must be 0 to 65535",
        ),
        (
            {"container_port": 1, "host_port": 1, "protocol": 5},
            "invalid protocol 5: must be a string",
        ),
        (
            {"container_port": 1, "host_port": 1, "protocol": "tcp,"},
            'invalid protocol "tcp,": unrecognized protocol "" in port mapping',
        ),
        (
            {"container_port": 1, "host_port": 1, "protocol": "udp,tcp,udp"},
            'invalid protocol "udp,tcp,udp": udp is listed twice',
        ),
        (
            {"container_port": 1, "host_port": 1, "host_ip": "localhost"},
            "invalid host_ip 'localhost': cannot parse it as an IP address",
        ),
    ],
)
def test_bad_mapping_messages_in_full(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PortMappingError) as info:
        PortMapping(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_ipv4_and_ipv6_host_ips_are_accepted() -> None:
    assert PortMapping(container_port=1, host_port=1, host_ip="::1").host_ip == "::1"
    assert PortMapping(container_port=1, host_port=1, host_ip="0.0.0.0").host_ip == "0.0.0.0"


def test_hostfwd_args_expand_each_protocol_then_each_port() -> None:
    mapping = PortMapping(container_port=80, host_port=8080, range=2, protocol="udp,tcp")
    assert slirp4netns_hostfwd_args(mapping) == [
        {
            "proto": "udp",
            "host_addr": "0.0.0.0",
            "host_port": 8080,
            "guest_addr": "",
            "guest_port": 80,
        },
        {
            "proto": "udp",
            "host_addr": "0.0.0.0",
            "host_port": 8081,
            "guest_addr": "",
            "guest_port": 81,
        },
        {
            "proto": "tcp",
            "host_addr": "0.0.0.0",
            "host_port": 8080,
            "guest_addr": "",
            "guest_port": 80,
        },
        {
            "proto": "tcp",
            "host_addr": "0.0.0.0",
            "host_port": 8081,
            "guest_addr": "",
            "guest_port": 81,
        },
    ]


def test_hostfwd_args_keep_a_given_host_ip() -> None:
    mapping = PortMapping(container_port=22, host_port=2222, host_ip="127.0.0.1")
    [args] = slirp4netns_hostfwd_args(mapping)
    assert args["host_addr"] == "127.0.0.1"


def test_hostfwd_args_refuse_sctp_naming_it() -> None:
    mapping = PortMapping(container_port=1, host_port=1, protocol="tcp,sctp")
    with pytest.raises(PortMappingError) as info:
        slirp4netns_hostfwd_args(mapping)
    assert str(info.value) == (
        'the slirp4netns port handler supports only tcp and udp, not "sctp" (protocol "tcp,sctp")'
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8080:80", PortMapping(container_port=80, host_port=8080)),
        ("127.0.0.1:8080:80", PortMapping(container_port=80, host_port=8080, host_ip="127.0.0.1")),
        ("0.0.0.0:8080:80", PortMapping(container_port=80, host_port=8080)),
        ("8080-8082:80-82", PortMapping(container_port=80, host_port=8080, range=3)),
        ("53:53/udp", PortMapping(container_port=53, host_port=53, protocol="udp")),
        ("53:53/tcp,udp", PortMapping(container_port=53, host_port=53, protocol="tcp,udp")),
        ("53:53/UDP,tcp,udp", PortMapping(container_port=53, host_port=53, protocol="udp,tcp")),
        ("9:9/sctp", PortMapping(container_port=9, host_port=9, protocol="sctp")),
        ("[::1]:8080:80", PortMapping(container_port=80, host_port=8080, host_ip="::1")),
        ("[::ffff:127.0.0.1]:1:2", PortMapping(container_port=2, host_port=1, host_ip="127.0.0.1")),
        (
            "[FD00:0::1]:1:2/udp",
            PortMapping(container_port=2, host_port=1, host_ip="fd00::1", protocol="udp"),
        ),
    ],
)
def test_parse_publish_accepts_podman_syntax(spec: str, expected: PortMapping) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("80", "a host port is required (random host ports are not supported)"),
        ("127.0.0.1::80", "a host port is required (random host ports are not supported)"),
        ("80:", "must provide a non-empty container port to publish"),
        ("80:80/", "must provide a non-empty protocol to publish"),
        ("80:80/tcp/udp", "invalid port format - protocol can only be specified once"),
        ("80:80/icmp", 'unrecognized protocol "icmp" in port mapping'),
        ("80:80/tcp,Icmp", 'unrecognized protocol "icmp" in port mapping'),
        ("1:2:3:4", "invalid port format - format is [[hostIP:]hostPort:]containerPort"),
        (
            "x:80",
            'parsing host port: invalid port number: strconv.Atoi: parsing "x": invalid syntax',
        ),
        (
            "80-x:80-81",
            'parsing host port: invalid port number: strconv.Atoi: parsing "x": invalid syntax',
        ),
        (
            "80:x",
            "parsing container port: invalid port number: "
            'strconv.Atoi: parsing "x": invalid syntax',
        ),
        (
            "0:80",
            "parsing host port: port numbers must be between 1 and 65535 (inclusive), got 0",
        ),
        (
            "80:65536",
            "parsing container port: port numbers must be between 1 and 65535 (inclusive), "
            "got 65536",
        ),
        ("8080-8081:80", "host and container port ranges have different lengths: 2 vs 1"),
        (
            "81-80:81-80",
            "parsing container port: the end port of a range must be higher than the start "
            "port - 80 is not higher than 81",
        ),
        (
            "80-80:80-80",
            "parsing container port: the end port of a range must be higher than the start "
            "port - 80 is not higher than 80",
        ),
        ("80-:80-", "parsing container port: must provide ending number for port range"),
        (
            "1-2-3:1-2-3",
            "parsing container port: invalid port format - "
            "port ranges are formatted as startPort-stopPort",
        ),
        ("-80:80", "parsing host port: port numbers cannot be negative"),
        ("host:80:80", 'cannot parse "host" as an IP address'),
        (":80:80", "must provide a non-empty container host IP to publish"),
        (
            "[::1]:80",
            "invalid port format - must provide host and destination port if specifying an IP",
        ),
        (
            "[::1]:1:2:3",
            "invalid port format - when v6 address specified, must be [ipv6]:hostPort:ctrPort",
        ),
        ("::1]:1:2", "invalid port format - IPv6 addresses must be enclosed by []"),
        ("[::1]1:2", "invalid port format - IPv6 address must be followed by a colon (':')"),
        (
            "[::1]:[::2]:1:2",
            "invalid port format - at most one IPv6 address can be specified in a --publish",
        ),
    ],
)
def test_parse_publish_rejects_with_podman_reason_and_the_spec(spec: str, reason: str) -> None:
    with pytest.raises(PortMappingError) as info:
        parse_publish(spec)
    assert str(info.value) == f'invalid port mapping "{spec}": {reason}'


def test_an_empty_protocol_item_is_tcp_as_podman_reads_it() -> None:
    assert parse_publish("53:53/udp,").protocol == "udp,tcp"
    assert parse_publish("53:53/,udp").protocol == "tcp,udp"


_ports = st.integers(1, 65535)


@settings(max_examples=300)
@given(
    _ports,
    _ports,
    st.integers(1, 64),
    st.sampled_from(["tcp", "udp", "tcp,udp", "sctp"]),
    st.sampled_from(["", "127.0.0.1", "::1", "10.1.2.3"]),
)
def test_a_mapping_written_as_a_publish_spec_parses_back(
    host: int, container: int, count: int, protocol: str, host_ip: str
) -> None:
    count = min(count, 65536 - host, 65536 - container)
    mapping = PortMapping(
        container_port=container, host_port=host, range=count, protocol=protocol, host_ip=host_ip
    )

    def ports(start: int) -> str:
        return f"{start}-{start + count - 1}" if count > 1 else str(start)

    address = f"[{host_ip}]:" if ":" in host_ip else f"{host_ip}:" if host_ip else ""
    assert parse_publish(f"{address}{ports(host)}:{ports(container)}/{protocol}") == mapping


_spec_pieces = st.sampled_from(
    [
        "8080",
        "80",
        "0",
        "65535",
        "65536",
        "-",
        ":",
        "::",
        "/",
        "[",
        "]",
        "::1",
        "[::1]",
        "127.0.0.1",
        "0.0.0.0",
        "tcp",
        "udp",
        "sctp",
        "TCP",
        ",",
        "1-2",
        "+1",
        "٣",
        " ",
        "",
    ]
)
_specs = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789:-/[].,abcdefptuTCPUDP ", max_size=30),
    st.lists(_spec_pieces, max_size=8).map("".join),
)


@settings(max_examples=500)
@given(_specs)
def test_any_spec_parses_back_to_itself_or_raises_port_mapping_error(spec: str) -> None:
    try:
        mapping = parse_publish(spec)
    except PortMappingError as exc:
        assert str(exc).startswith("invalid port mapping ")
        return
    host_ip = f"[{mapping.host_ip}]" if ":" in mapping.host_ip else mapping.host_ip
    ranges = [
        f"{p}-{p + mapping.range - 1}" if mapping.range > 1 else str(p)
        for p in (mapping.host_port, mapping.container_port)
    ]
    again = f"{host_ip}:{ranges[0]}:{ranges[1]}/{mapping.protocol}".lstrip(":")
    assert parse_publish(again) == mapping


_any_value = st.one_of(
    st.integers(-70000, 140000),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.none(),
    st.binary(max_size=4),
)
_protocols = st.one_of(
    st.lists(
        st.sampled_from(["tcp", "udp", "sctp", "TCP", "", "icmp"]), min_size=1, max_size=4
    ).map(",".join),
    _any_value,
)
_host_ips = st.one_of(
    st.just(""),
    st.ip_addresses().map(str),
    _any_value,
    st.sampled_from(["fe80::1%eth0", "::ffff:1.2.3.4", "localhost"]),
)


@settings(max_examples=500)
@given(
    container_port=st.one_of(st.integers(-2, 65537), _any_value),
    host_port=st.one_of(st.integers(-2, 65537), _any_value),
    host_ip=_host_ips,
    range_=st.one_of(st.integers(-1, 70000), _any_value),
    protocol=_protocols,
)
def test_any_values_build_a_valid_mapping_or_raise_port_mapping_error(
    container_port: Any, host_port: Any, host_ip: Any, range_: Any, protocol: Any
) -> None:
    try:
        mapping = PortMapping(
            container_port=container_port,
            host_port=host_port,
            host_ip=host_ip,
            range=range_,
            protocol=protocol,
        )
    except PortMappingError:
        return
    assert 1 <= mapping.host_port <= mapping.host_port + mapping.range - 1 <= 65535
    assert 1 <= mapping.container_port <= mapping.container_port + mapping.range - 1 <= 65535
    json.dumps(mapping.to_json())
    try:
        forwards = slirp4netns_hostfwd_args(mapping)
    except PortMappingError:
        assert "sctp" in mapping.protocols
        return
    assert len(forwards) == mapping.range * len(mapping.protocols)
