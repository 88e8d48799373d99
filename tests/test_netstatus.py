"""net_status blocks (podman's types.StatusBlock) read from netavark's JSON, as Go reads them."""

from __future__ import annotations

import dataclasses
import json
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyslirp.addresses import get_rootless_port_child_ip
from pyslirp.netstatus import NetAddress, NetInterface, StatusBlock

from support.processes import ANY_JSON


def test_status_block_from_netavark_json() -> None:
    block = StatusBlock.from_json(
        {
            "interfaces": {
                "eth0": {
                    "subnets": [
                        {"ipnet": "10.88.0.2/16", "gateway": "10.88.0.1"},
                        {"ipnet": "fd00::2/64"},
                    ],
                    "mac_address": "12:34:56:78:9a:bc",
                }
            }
        }
    )
    assert block == StatusBlock(
        interfaces={
            "eth0": NetInterface(
                subnets=(
                    NetAddress(
                        ipnet=IPv4Interface("10.88.0.2/16"), gateway=IPv4Address("10.88.0.1")
                    ),
                    NetAddress(ipnet=IPv6Interface("fd00::2/64")),
                ),
                mac_address="12:34:56:78:9a:bc",
            )
        }
    )


def test_an_ipv6_gateway_is_an_ipv6_address() -> None:
    address = NetAddress.from_json({"ipnet": "fd00::2/64", "gateway": "fd00::1"})
    assert address.gateway == IPv6Address("fd00::1")


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {"interfaces": None},
        {"interfaces": {}},
    ],
)
def test_null_or_missing_interfaces_are_none(data: Any) -> None:
    assert StatusBlock.from_json(data) == StatusBlock()


@pytest.mark.parametrize(
    "interface",
    [
        None,
        {},
        {"subnets": None, "mac_address": None},
        {"subnets": []},
        {"subnets": [None, {}, {"ipnet": None, "gateway": "10.0.0.1"}]},
    ],
)
def test_null_or_missing_subnets_are_empty(interface: Any) -> None:
    block = StatusBlock.from_json({"interfaces": {"eth0": interface}})
    assert block == StatusBlock(interfaces={"eth0": NetInterface()})
    assert get_rootless_port_child_ip(None, {"podman": {"interfaces": {"eth0": interface}}}) == ""


def test_a_subnet_without_an_address_is_left_out_but_the_others_kept() -> None:
    interface = {"subnets": [{"ipnet": None}, {"ipnet": "10.1.2.3/24", "gateway": None}]}
    assert NetInterface.from_json(interface) == NetInterface(
        subnets=(NetAddress(ipnet=IPv4Interface("10.1.2.3/24")),)
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "net status: status block must be an object, got []"),
        ("eth0", "net status: status block must be an object, got 'eth0'"),
        ({"interfaces": []}, "net status: interfaces must be an object, got []"),
        ({"interfaces": {"eth0": 1}}, "net status: interface must be an object, got 1"),
        (
            {"interfaces": {"eth0": {"subnets": {"ipnet": "10.0.0.2/24"}}}},
            "net status: subnets must be an array, got {'ipnet': '10.0.0.2/24'}",
        ),
        (
            {"interfaces": {"eth0": {"subnets": "10.0.0.2/24"}}},
            "net status: subnets must be an array, got '10.0.0.2/24'",
        ),
        (
            {"interfaces": {"eth0": {"subnets": ["10.0.0.2/24"]}}},
            "net status: subnet must be an object, got '10.0.0.2/24'",
        ),
        (
            {"interfaces": {"eth0": {"subnets": [{"ipnet": 167772162}]}}},
            "net status: ipnet must be a string, got 167772162",
        ),
        (
            {"interfaces": {"eth0": {"subnets": [{"ipnet": "10.0.0.2/24", "gateway": 1}]}}},
            "net status: gateway must be a string, got 1",
        ),
        (
            {"interfaces": {"eth0": {"mac_address": ["12", "34"]}}},
            "net status: mac_address must be a string, got ['12', '34']",
        ),
    ],
)
def test_a_block_of_the_wrong_shape_raises_naming_what_is_wrong(data: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        StatusBlock.from_json(data)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"gateway": "10.0.0.1"}, "net status: ipnet must be a string, got None"),
        ("10.0.0.2/24", "net status: subnet must be an object, got '10.0.0.2/24'"),
    ],
)
def test_a_subnet_read_alone_must_be_an_object_with_an_ipnet(data: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        NetAddress.from_json(data)
    assert str(info.value) == message


@pytest.mark.parametrize("cls", [NetAddress, NetInterface, StatusBlock])
def test_status_types_are_frozen_and_keyword_only(cls: type[Any]) -> None:
    params = dataclasses.fields(cls)
    example = {"ipnet": IPv4Interface("10.0.0.2/24")} if cls is NetAddress else {}
    value = cls(**example)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, params[0].name, None)
    with pytest.raises(TypeError):
        cls(*[getattr(value, p.name) for p in params])


# Any JSON, of netavark's shape or not, after a JSON round trip as podman's output arrives.
ADDRESS = st.one_of(
    st.builds("{}/{}".format, st.ip_addresses(), st.integers(-1, 130)),
    st.ip_addresses().map(str),
    ANY_JSON,
)
SUBNET = st.fixed_dictionaries({"ipnet": ADDRESS}, optional={"gateway": ADDRESS})
INTERFACE = st.fixed_dictionaries(
    {},
    optional={
        "subnets": st.one_of(st.lists(SUBNET, max_size=3), ANY_JSON),
        "mac_address": st.one_of(st.text(max_size=17), ANY_JSON),
    },
)
BLOCK = st.one_of(
    st.fixed_dictionaries(
        {"interfaces": st.dictionaries(st.text(max_size=6), INTERFACE, max_size=3)}
    ),
    st.fixed_dictionaries({"interfaces": ANY_JSON}),
    ANY_JSON,
)


@given(net_status=st.dictionaries(st.text(max_size=6), BLOCK, max_size=3))
def test_any_net_status_json_gives_an_ip_or_value_error(net_status: dict[str, Any]) -> None:
    net_status = json.loads(json.dumps(net_status))
    try:
        child_ip = get_rootless_port_child_ip(None, net_status)
    except ValueError:
        child_ip = None
    if child_ip:
        assert ip_address(child_ip).version in (4, 6)
    for block in net_status.values():
        try:
            status = StatusBlock.from_json(block)
        except ValueError:
            continue
        assert all(isinstance(name, str) for name in status.interfaces)
