"""Typed network status blocks (podman's ``types.StatusBlock``) and their JSON shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    ip_address,
    ip_interface,
)
from typing import Any

from .errors import NetStatusError


@dataclass(frozen=True, kw_only=True)
class NetAddress:
    """One address of an interface: ``ipnet`` (address with prefix) and its gateway."""

    ipnet: IPv4Interface | IPv6Interface
    gateway: IPv4Address | IPv6Address | None = None

    @classmethod
    def from_json(cls, data: Any) -> NetAddress:
        """Build from netavark's ``{"ipnet": "10.88.0.2/16", "gateway": "10.88.0.1"}``.

        Raises ValueError when ``data`` does not have that shape.
        """
        data = _object(data, "subnet")
        gateway = _string(data.get("gateway"), "gateway")
        return cls(
            ipnet=ip_interface(_text(data, "ipnet")),
            gateway=ip_address(gateway) if gateway else None,
        )


@dataclass(frozen=True, kw_only=True)
class NetInterface:
    """One interface of a network: its addresses, in order, and MAC address."""

    subnets: tuple[NetAddress, ...] = ()
    mac_address: str = ""

    @classmethod
    def from_json(cls, data: Any) -> NetInterface:
        """Build from netavark's ``{"subnets": [...], "mac_address": "..."}``.

        A subnet that is null or has a null or missing ``ipnet`` is Go's empty address,
        which carries no IP: it is left out. Raises ValueError when ``data`` does not have
        that shape.
        """
        data = _object(data, "interface")
        subnets = data.get("subnets")
        if subnets is not None and not isinstance(subnets, list):
            raise NetStatusError(f"net status: subnets must be an array, got {subnets!r}")
        return cls(
            subnets=tuple(
                NetAddress.from_json(s)
                for s in subnets or ()
                if _object(s, "subnet").get("ipnet") is not None
            ),
            mac_address=_string(data.get("mac_address"), "mac_address"),
        )


@dataclass(frozen=True, kw_only=True)
class StatusBlock:
    """The status of one network: interface name -> interface."""

    interfaces: Mapping[str, NetInterface] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> StatusBlock:
        """Build from netavark's ``{"interfaces": {"eth0": {...}}}``.

        As Go's ``json.Unmarshal``: ``null`` anywhere is the empty value, any other
        wrong type raises ValueError.
        """
        interfaces = _object(_object(data, "status block").get("interfaces"), "interfaces")
        return cls(interfaces={name: NetInterface.from_json(i) for name, i in interfaces.items()})


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise NetStatusError(f"net status: {what} must be an object, got {value!r}")
    return value


def _string(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NetStatusError(f"net status: {what} must be a string, got {value!r}")
    return value


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise NetStatusError(f"net status: {key} must be a string, got {value!r}")
    return value
