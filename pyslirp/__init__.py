"""User-mode networking for Linux network namespaces through slirp4netns, or pasta
(:mod:`pyslirp.pasta`)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any

from . import pasta
from .addresses import (
    get_dns,
    get_gateway,
    get_ip,
    get_rootless_port_child_ip,
)
from .argv import BINARY_NAME
from .config import Config
from .errors import (
    BinaryNotFound,
    ConfigError,
    NetStatusError,
    OptionError,
    PortForwardError,
    PortMappingError,
    ReadyTimeout,
    SlirpError,
    StartError,
    SubnetError,
)
from .features import Features, probe_features
from .helper import Helper
from .netstatus import NetAddress, NetInterface, StatusBlock
from .options import NetworkOptions, SetupOptions, parse_options
from .ports import PortMapping, parse_publish
from .rootlessport import setup_rootless_port_mapping_via_rlk
from .slirp4netns import SetupResult, close_all, setup
from .spawn import DEVNULL, Child, spawn

if TYPE_CHECKING:
    from .aio import asetup, asetup_rootless_port_mapping_via_rlk

_ASYNC = ("asetup", "asetup_rootless_port_mapping_via_rlk")


def __getattr__(name: str) -> Any:
    # The asyncio API is imported on first use: asyncio costs milliseconds to import.
    if name in _ASYNC:
        from . import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'pyslirp' has no attribute {name!r}")


__all__ = [
    "BINARY_NAME",
    "DEVNULL",
    "BinaryNotFound",
    "Child",
    "Config",
    "ConfigError",
    "Features",
    "Helper",
    "IPv4Address",
    "IPv4Network",
    "NetAddress",
    "NetInterface",
    "NetStatusError",
    "NetworkOptions",
    "OptionError",
    "PortForwardError",
    "PortMapping",
    "PortMappingError",
    "ReadyTimeout",
    "SetupOptions",
    "SetupResult",
    "SlirpError",
    "StartError",
    "StatusBlock",
    "SubnetError",
    "asetup",
    "asetup_rootless_port_mapping_via_rlk",
    "close_all",
    "get_dns",
    "get_gateway",
    "get_ip",
    "get_rootless_port_child_ip",
    "parse_options",
    "parse_publish",
    "pasta",
    "probe_features",
    "setup",
    "setup_rootless_port_mapping_via_rlk",
    "spawn",
]
