"""Address math and the rootlessport child IP, against podman's Go behaviour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pyslirp
from pyslirp.addresses import (
    DEFAULT_SUBNET,
    get_dns,
    get_gateway,
    get_ip,
    get_rootless_port_child_ip,
    parse_subnet,
)
from pyslirp.errors import SubnetError
from pyslirp.netstatus import NetAddress, NetInterface, StatusBlock

PROGRAMS = Path(__file__).parent / "programs"


def test_binary_name_and_default_subnet() -> None:
    assert pyslirp.BINARY_NAME == "slirp4netns"
    assert IPv4Network("10.0.2.0/24") == DEFAULT_SUBNET


def test_default_subnet_gives_100_2_3() -> None:
    assert get_ip() == IPv4Address("10.0.2.100")
    assert get_gateway() == IPv4Address("10.0.2.2")
    assert get_dns() == IPv4Address("10.0.2.3")


def test_get_ip_masks_host_bits() -> None:
    assert get_ip("192.168.7.77/24") == IPv4Address("192.168.7.100")
    assert get_gateway("192.168.7.77/24") == IPv4Address("192.168.7.2")


def test_ipv4_network_objects_are_accepted() -> None:
    assert get_dns(IPv4Network("172.16.0.0/16")) == IPv4Address("172.16.0.3")


def test_address_outside_subnet_raises_with_go_wording() -> None:
    with pytest.raises(SubnetError) as info:
        get_ip("10.0.2.0/26")
    assert str(info.value) == (
        "calculating expected ip for slirp4netns: calculated ip address 10.0.2.100"
        " is not within given subnet 10.0.2.0/26"
    )


def test_overflow_past_broadcast_raises_with_go_wording() -> None:
    with pytest.raises(SubnetError) as info:
        get_ip("255.255.255.192/26")
    assert str(info.value) == (
        "calculating expected ip for slirp4netns: integer overflow while calculating ip "
        "address offset, 255.255.255.192 + 100"
    )


def test_the_last_address_of_all_is_no_overflow() -> None:
    assert get_dns("255.255.255.252/30") == IPv4Address("255.255.255.255")


def test_gateway_and_dns_errors_name_what_was_calculated() -> None:
    with pytest.raises(SubnetError, match=r"^calculating expected gateway ip for slirp4netns: "):
        get_gateway("10.0.2.1/32")
    with pytest.raises(SubnetError, match=r"^calculating expected dns ip for slirp4netns: "):
        get_dns("10.0.2.0/31")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "10.0.2.0",
        "10.0.2.0/33",
        "::1/64",
        "10.0.2.0/",
        "010.0.2.0/24",
        "10.0.2.0/24 ",
        "10.0.2.0/255.255.255.0",
    ],
)
def test_bad_subnet_strings_raise_subnet_error(value: str) -> None:
    with pytest.raises(SubnetError) as info:
        get_ip(value)
    assert str(info.value) == f"invalid CIDR address: {value}"


@pytest.mark.parametrize(
    ("value", "network"),
    [("10.0.2.0/024", "10.0.2.0/24"), ("10.0.0.0/008", "10.0.0.0/8"), ("0.0.0.0/000", "0.0.0.0/0")],
)
def test_a_prefix_length_with_leading_zeros_is_read_as_gos_parse_cidr_reads_it(
    value: str, network: str
) -> None:
    assert parse_subnet(value) == IPv4Network(network)


@pytest.mark.parametrize("value", ["10.0.2.0/033", "10.0.2.0/0100", "10.0.2.0/-1"])
def test_leading_zeros_do_not_make_a_bad_prefix_length_good(value: str) -> None:
    with pytest.raises(SubnetError) as info:
        parse_subnet(value)
    assert str(info.value) == f"invalid CIDR address: {value}"


def test_ipv6_network_raises_subnet_error() -> None:
    with pytest.raises(SubnetError) as info:
        get_ip(IPv6Network("fd00::/64"))  # type: ignore[arg-type]
    assert str(info.value) == "invalid subnet IPv6Network('fd00::/64'): not an IPv4 network"


def test_subnet_error_is_a_value_error() -> None:
    assert issubclass(SubnetError, ValueError)


def test_parse_subnet_none_is_default() -> None:
    assert parse_subnet(None) == DEFAULT_SUBNET
    assert parse_subnet("10.9.9.9/8") == IPv4Network("10.0.0.0/8")


@settings(max_examples=400)
@given(st.integers(0, 2**32 - 1), st.integers(0, 25))
def test_prefix_up_to_25_gives_offsets_inside(address: int, prefix: int) -> None:
    subnet = IPv4Network((address, prefix), strict=False)
    base = subnet.network_address
    assert get_ip(subnet) == base + 100
    assert get_gateway(subnet) == base + 2
    assert get_dns(subnet) == base + 3
    for found in (get_ip(subnet), get_gateway(subnet), get_dns(subnet)):
        assert found in subnet


@settings(max_examples=400)
@given(st.integers(0, 2**32 - 1), st.integers(26, 32))
def test_prefix_26_to_32_raises_or_stays_inside(address: int, prefix: int) -> None:
    subnet = IPv4Network((address, prefix), strict=False)
    for function in (get_ip, get_gateway, get_dns):
        try:
            found = function(subnet)
        except SubnetError:
            continue
        assert found in subnet


@settings(max_examples=500)
@given(st.one_of(st.text(), st.from_regex(r"\A[0-9./a-f:]{0,20}\Z")))
def test_any_string_gives_an_address_or_subnet_error(value: str) -> None:
    for function in (get_ip, get_gateway, get_dns):
        try:
            found = function(value)
        except SubnetError:
            continue
        assert found in parse_subnet(value)


def test_child_ip_with_subnet_is_its_plus_100() -> None:
    assert get_rootless_port_child_ip(IPv4Network("10.5.0.0/16"), None) == "10.5.0.100"
    assert get_rootless_port_child_ip("10.5.0.0/16", {}) == "10.5.0.100"


def test_child_ip_with_unusable_subnet_is_empty() -> None:
    assert get_rootless_port_child_ip("10.0.2.0/26", None) == ""
    assert get_rootless_port_child_ip("bogus", None) == ""


def test_child_ip_without_anything_is_empty() -> None:
    assert get_rootless_port_child_ip(None, None) == ""
    assert get_rootless_port_child_ip(None, {"n": {"interfaces": {}}}) == ""


def test_child_ip_prefers_ipv4_over_an_earlier_ipv6() -> None:
    status = {
        "a": {"interfaces": {"eth0": {"subnets": [{"ipnet": "fd00::5/64"}]}}},
        "b": {
            "interfaces": {"eth0": {"subnets": [{"ipnet": "10.88.0.2/16", "gateway": "10.88.0.1"}]}}
        },
    }
    assert get_rootless_port_child_ip(None, status) == "10.88.0.2"


def test_child_ip_falls_back_to_the_first_ipv6() -> None:
    status = {
        "b": {"interfaces": {"eth0": {"subnets": [{"ipnet": "fd00::9/64"}]}}},
        "a": {
            "interfaces": {
                "eth1": {"subnets": [{"ipnet": "fd00::5/64"}]},
                "eth0": {"subnets": [{"ipnet": "fd00::1/64"}]},
            }
        },
    }
    assert get_rootless_port_child_ip(None, status) == "fd00::1"


def test_child_ip_treats_ipv4_mapped_addresses_as_ipv4() -> None:
    status = {"n": {"interfaces": {"eth0": {"subnets": [{"ipnet": "::ffff:10.1.2.3/120"}]}}}}
    assert get_rootless_port_child_ip(None, status) == "10.1.2.3"


def test_child_ip_accepts_typed_status_blocks() -> None:
    block = StatusBlock(
        interfaces={
            "eth0": NetInterface(
                subnets=(
                    NetAddress(ipnet=IPv6Interface("fd00::2/64")),
                    NetAddress(
                        ipnet=IPv4Interface("10.89.0.7/24"), gateway=IPv4Address("10.89.0.1")
                    ),
                ),
                mac_address="aa:bb:cc:dd:ee:ff",
            )
        }
    )
    assert get_rootless_port_child_ip(None, {"podman": block}) == "10.89.0.7"


def _many_networks(reverse: bool) -> dict[str, object]:
    """Twenty networks of three IPv4 interfaces each, inserted forwards or backwards."""

    def ordered(count: int) -> range:
        return range(count - 1, -1, -1) if reverse else range(count)

    return {
        f"net{i:02d}": {
            "interfaces": {
                f"eth{j}": {"subnets": [{"ipnet": f"10.{i}.{j}.2/24"}]} for j in ordered(3)
            }
        }
        for i in ordered(20)
    }


def test_child_ip_is_the_same_in_every_process_and_dict_order() -> None:
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(pyslirp.__file__)))
    answers = set()
    for seed in ("0", "1", "2", "12345", "random"):
        for reverse in (False, True):
            env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=package_root)
            result = subprocess.run(
                [sys.executable, str(PROGRAMS / "child_ip.py")],
                input=json.dumps(_many_networks(reverse)),
                capture_output=True,
                text=True,
                env=env,
                check=True,
                timeout=60,
            )
            answers.add(result.stdout.strip())
    assert answers == {"10.0.0.2"}
