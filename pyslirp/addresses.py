"""The addresses slirp4netns gives inside a subnet, and the child IP rootlessport forwards to."""

from __future__ import annotations

import re
from collections.abc import Mapping
from ipaddress import AddressValueError, IPv4Address, IPv4Network, IPv6Address
from typing import Any

from .errors import SubnetError
from .netstatus import StatusBlock

DEFAULT_SUBNET = IPv4Network("10.0.2.0/24")

_IP_OFFSET = 100
_GATEWAY_OFFSET = 2
_DNS_OFFSET = 3
# Go's net.ParseCIDR reads the prefix length with dtoi, which takes leading zeros ("/024").
_CIDR = re.compile(r"([^/]*)/0*([0-9]{1,2})")

SubnetLike = IPv4Network | str | None
NetStatus = Mapping[str, StatusBlock | Mapping[str, Any]]


def parse_subnet(value: SubnetLike) -> IPv4Network:
    """Return ``value`` as an IPv4 network (None means the default; host bits are masked)."""
    if value is None:
        return DEFAULT_SUBNET
    if isinstance(value, IPv4Network):
        return value
    if not isinstance(value, str):
        raise SubnetError(f"invalid subnet {value!r}: not an IPv4 network")
    match = _CIDR.fullmatch(value)
    if match is None or int(match[2]) > 32:
        raise SubnetError(f"invalid CIDR address: {value}")
    try:
        address = IPv4Address(match[1])
    except AddressValueError:
        raise SubnetError(f"invalid CIDR address: {value}") from None
    return IPv4Network((address, int(match[2])), strict=False)


def _add_to_ip(subnet: IPv4Network, offset: int, what: str) -> IPv4Address:
    prefix = f"calculating expected {what} for slirp4netns"
    base = int(subnet.network_address)
    if base + offset > int(IPv4Address("255.255.255.255")):
        raise SubnetError(
            f"{prefix}: integer overflow while calculating ip address offset, "
            f"{subnet.network_address} + {offset}"
        )
    address = IPv4Address(base + offset)
    if address not in subnet:
        raise SubnetError(
            f"{prefix}: calculated ip address {address} is not within given subnet {subnet}"
        )
    return address


def get_ip(subnet: SubnetLike = None) -> IPv4Address:
    """The address slirp4netns gives the namespace: network + 100."""
    return _add_to_ip(parse_subnet(subnet), _IP_OFFSET, "ip")


def get_gateway(subnet: SubnetLike = None) -> IPv4Address:
    """The gateway (the host, as seen from the namespace): network + 2."""
    return _add_to_ip(parse_subnet(subnet), _GATEWAY_OFFSET, "gateway ip")


def get_dns(subnet: SubnetLike = None) -> IPv4Address:
    """The DNS forwarder: network + 3."""
    return _add_to_ip(parse_subnet(subnet), _DNS_OFFSET, "dns ip")


def get_rootless_port_child_ip(slirp_subnet: SubnetLike, net_status: NetStatus | None) -> str:
    """The IP rootlessport forwards to: the slirp4netns address, else one from ``net_status``.

    Without a subnet, the first IPv4 address wins, else the first IPv6 one, else ``""``.
    Networks and interfaces are walked in sorted name order, so the answer is the same in
    every process (Go walks its maps in random order). A ``net_status`` block that is
    not of netavark's shape raises ValueError.
    """
    if slirp_subnet is not None:
        try:
            return str(get_ip(slirp_subnet))
        except SubnetError:
            return ""
    ipv6: IPv6Address | None = None
    net_status = net_status or {}
    for network in sorted(net_status):
        block = net_status[network]
        status = block if isinstance(block, StatusBlock) else StatusBlock.from_json(block)
        for name in sorted(status.interfaces):
            for address in status.interfaces[name].subnets:
                ip = address.ipnet.ip
                if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped
                if isinstance(ip, IPv4Address):
                    return str(ip)
                if ipv6 is None:
                    ipv6 = ip
    return "" if ipv6 is None else str(ipv6)
