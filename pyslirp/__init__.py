"""User-mode networking for Linux network namespaces through slirp4netns, or pasta
(:mod:`pyslirp.pasta`).

The names below are imported on first use, so ``import pyslirp`` costs almost nothing.
A program that drops privileges after importing pyslirp (and cannot read the interpreter's
files after that) should touch what it uses first, e.g. ``pyslirp.setup``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv4Network

    from . import pasta
    from .addresses import get_dns, get_gateway, get_ip, get_rootless_port_child_ip
    from .aio import asetup, asetup_rootless_port_mapping_via_rlk
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
    from .process import DEVNULL, Child, spawn
    from .rootlessport import setup_rootless_port_mapping_via_rlk
    from .slirp4netns import SetupPlan, SetupResult, close_all, setup

# Where each public name lives. They are imported on first use, so that `import pyslirp`
# (and the CLI's start-up) pays only for what a program touches.
_HOMES = {
    "IPv4Address": "ipaddress",
    "IPv4Network": "ipaddress",
    "pasta": ".pasta",
    **dict.fromkeys(
        ["get_dns", "get_gateway", "get_ip", "get_rootless_port_child_ip"], ".addresses"
    ),
    **dict.fromkeys(["asetup", "asetup_rootless_port_mapping_via_rlk"], ".aio"),
    "BINARY_NAME": ".argv",
    "Config": ".config",
    **dict.fromkeys(
        [
            "BinaryNotFound",
            "ConfigError",
            "NetStatusError",
            "OptionError",
            "PortForwardError",
            "PortMappingError",
            "ReadyTimeout",
            "SlirpError",
            "StartError",
            "SubnetError",
        ],
        ".errors",
    ),
    **dict.fromkeys(["Features", "probe_features"], ".features"),
    "Helper": ".helper",
    **dict.fromkeys(["NetAddress", "NetInterface", "StatusBlock"], ".netstatus"),
    **dict.fromkeys(["NetworkOptions", "SetupOptions", "parse_options"], ".options"),
    **dict.fromkeys(["PortMapping", "parse_publish"], ".ports"),
    **dict.fromkeys(["DEVNULL", "Child", "spawn"], ".process"),
    "setup_rootless_port_mapping_via_rlk": ".rootlessport",
    **dict.fromkeys(["SetupPlan", "SetupResult", "close_all", "setup"], ".slirp4netns"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pyslirp' has no attribute {name!r}")
    module = importlib.import_module(home, __name__)
    value = module if name == "pasta" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
    "SetupPlan",
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
