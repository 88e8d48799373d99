"""slirp4netns network options (config ones, then per-call extras), parsed as podman does."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass, fields
from ipaddress import AddressValueError, IPv4Address, IPv4Network, IPv6Address
from typing import Any, Literal, get_args

from .addresses import parse_subnet
from .errors import OptionError, SubnetError
from .gostrconv import go_atoi, go_quote

PortHandler = Literal["rootlesskit", "slirp4netns"]
PORT_HANDLERS: tuple[PortHandler, ...] = get_args(PortHandler)
DEFAULT_MTU = 65520
MTU_MIN = 68
MTU_MAX = 65521
# slirp4netns refuses /0, and gives the namespace network + 100, so at most /25.
CIDR_PREFIX_MIN = 1
CIDR_PREFIX_MAX = 25


@dataclass(frozen=True, kw_only=True)
class NetworkOptions:
    """The parsed options; the defaults are podman's."""

    cidr: IPv4Network | None = None
    port_handler: PortHandler = "rootlesskit"
    allow_host_loopback: bool = False
    enable_ipv6: bool = True
    outbound_addr: str | None = None
    outbound_addr6: str | None = None
    mtu: int = DEFAULT_MTU

    def __post_init__(self) -> None:
        if self.cidr is not None:
            _check_cidr(self.cidr, str(self.cidr))
        if self.port_handler not in PORT_HANDLERS:
            raise OptionError(
                f"unknown port_handler for slirp4netns: {go_quote(str(self.port_handler))}"
            )
        for name in ("allow_host_loopback", "enable_ipv6"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise OptionError(f"invalid value of {name} for slirp4netns: {value!r}")
        if self.outbound_addr is not None:
            _check_outbound_addr(self.outbound_addr)
        if self.outbound_addr6 is not None:
            _check_outbound_addr6(self.outbound_addr6)
            if not self.enable_ipv6:
                raise OptionError("enable_ipv6=true is required for outbound_addr6")
        if isinstance(self.mtu, bool) or not isinstance(self.mtu, int):
            raise OptionError(f"invalid mtu {self.mtu!r}")
        _check_mtu(self.mtu, str(self.mtu))


OPTION_KEYS = tuple(f.name for f in fields(NetworkOptions))
"""The keys of ``network_cmd_options`` (``key=value``), in podman's documented order."""


def parse_options(config_options: Iterable[str], extra_options: Iterable[str]) -> NetworkOptions:
    """Parse ``key=value`` options, config ones first; a later value wins.

    Each value is checked as it is read, with Go's error wording; ``outbound_addr6``
    without IPv6 is refused once every option has been read.
    """
    values: dict[str, Any] = {}
    for option in [*config_options, *extra_options]:
        key, sep, value = option.partition("=")
        if not sep:
            raise OptionError(f"unknown option for slirp4netns: {go_quote(option)}")
        match key:
            case "cidr":
                values[key] = _parse_cidr(value)
            case "port_handler":
                if value not in PORT_HANDLERS:
                    raise OptionError(f"unknown port_handler for slirp4netns: {go_quote(value)}")
                values[key] = value
            case "allow_host_loopback" | "enable_ipv6":
                values[key] = _parse_bool(key, value)
            case "outbound_addr":
                values[key] = _check_outbound_addr(value)
            case "outbound_addr6":
                values[key] = _check_outbound_addr6(value)
            case "mtu":
                number = go_atoi(value)
                if number is None:
                    raise OptionError(f"invalid mtu {go_quote(value)}")
                values[key] = _check_mtu(number, value)
            case _:
                raise OptionError(f"unknown option for slirp4netns: {go_quote(option)}")
    return NetworkOptions(**values)


def _parse_bool(key: str, value: str) -> bool:
    if value not in ("true", "false"):
        raise OptionError(f"invalid value of {key} for slirp4netns: {go_quote(value)}")
    return value == "true"


def _parse_cidr(value: str) -> IPv4Network:
    try:
        network = parse_subnet(value)
    except SubnetError:
        raise OptionError(f"invalid cidr {go_quote(value)}") from None
    return _check_cidr(network, value)


def _check_cidr(network: IPv4Network, text: str) -> IPv4Network:
    if not isinstance(network, IPv4Network):
        raise OptionError(f"invalid cidr {go_quote(text)}")
    if not CIDR_PREFIX_MIN <= network.prefixlen <= CIDR_PREFIX_MAX:
        raise OptionError(
            f"invalid cidr {go_quote(text)}: slirp4netns needs a prefix length of "
            f"{CIDR_PREFIX_MIN} to {CIDR_PREFIX_MAX} (the namespace gets network + 100)"
        )
    return network


def _check_mtu(mtu: int, text: str) -> int:
    if mtu < MTU_MIN:
        raise OptionError(f"invalid mtu {go_quote(text)}")
    if mtu > MTU_MAX:
        raise OptionError(f"invalid mtu {go_quote(text)}: slirp4netns allows at most {MTU_MAX}")
    return mtu


def _interface_exists(name: str) -> bool:
    """Whether ``name`` is an interface of the current network namespace."""
    try:
        socket.if_nametoindex(name)
    except (OSError, ValueError):
        return False
    return True


def _check_outbound_addr(value: str) -> str:
    if not isinstance(value, str):
        raise OptionError(f"invalid outbound_addr {value!r}")
    try:
        IPv4Address(value)
    except AddressValueError:
        if not _interface_exists(value):
            raise OptionError(f"invalid outbound_addr {go_quote(value)}") from None
    return value


def _check_outbound_addr6(value: str) -> str:
    if not isinstance(value, str):
        raise OptionError(f"invalid outbound_addr6: {value!r}")
    try:
        # Go's net.ParseIP takes no zone, and To4() != nil for IPv4-mapped addresses.
        address = IPv6Address(value) if "%" not in value else None
    except AddressValueError:
        address = None
    if (address is None or address.ipv4_mapped is not None) and not _interface_exists(value):
        raise OptionError(f"invalid outbound_addr6: {go_quote(value)}")
    return value
