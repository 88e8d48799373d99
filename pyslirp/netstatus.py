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


@dataclass(frozen=True, kw_only=True)
class NetAddress:
    """One address of an interface: ``ipnet`` (address with prefix) and its gateway."""

    ipnet: IPv4Interface | IPv6Interface
    gateway: IPv4Address | IPv6Address | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NetAddress:
        """Build from netavark's ``{"ipnet": "10.88.0.2/16", "gateway": "10.88.0.1"}``."""
        gateway = data.get("gateway")
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
    def from_json(cls, data: Mapping[str, Any]) -> NetInterface:
        """Build from netavark's ``{"subnets": [...], "mac_address": "..."}``."""
        return cls(
            subnets=tuple(NetAddress.from_json(s) for s in data.get("subnets") or ()),
            mac_address=str(data.get("mac_address") or ""),
        )


@dataclass(frozen=True, kw_only=True)
class StatusBlock:
    """The status of one network: interface name -> interface."""

    interfaces: Mapping[str, NetInterface] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatusBlock:
        """Build from netavark's ``{"interfaces": {"eth0": {...}}}``."""
        interfaces = data.get("interfaces") or {}
        return cls(interfaces={name: NetInterface.from_json(i) for name, i in interfaces.items()})


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"net status: {key} must be a string, got {value!r}")
    return value
