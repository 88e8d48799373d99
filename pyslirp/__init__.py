"""User-mode networking for Linux network namespaces through slirp4netns."""

from __future__ import annotations

from .errors import (
    BinaryNotFound,
    ConfigError,
    OptionError,
    PortForwardError,
    PortMappingError,
    ReadyTimeout,
    SlirpError,
    StartError,
    SubnetError,
)
from .spawn import DEVNULL, Child, spawn

__all__ = [
    "DEVNULL",
    "BinaryNotFound",
    "Child",
    "ConfigError",
    "OptionError",
    "PortForwardError",
    "PortMappingError",
    "ReadyTimeout",
    "SlirpError",
    "StartError",
    "SubnetError",
    "spawn",
]
