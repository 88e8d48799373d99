"""The exceptions pyslirp raises: one hierarchy under :class:`SlirpError`."""

from __future__ import annotations


class SlirpError(Exception):
    """Base class of every error pyslirp raises on purpose."""


class OptionError(SlirpError, ValueError):
    """A slirp4netns network option is unknown, malformed or unsupported."""


class SubnetError(SlirpError, ValueError):
    """A subnet cannot hold the address slirp4netns would give."""


class PortMappingError(SlirpError, ValueError):
    """A port mapping (or a podman ``-p`` spec) is invalid."""


class ConfigError(SlirpError, ValueError):
    """A containers.conf file cannot be read or parsed."""


class NetStatusError(SlirpError, ValueError):
    """A network status (netavark's JSON) is not of the shape podman writes."""


class BinaryNotFound(SlirpError, FileNotFoundError):
    """A helper binary (slirp4netns, rootlessport) was not found."""


class StartError(SlirpError):
    """A helper process failed before it became ready.

    ``log`` holds what the helper wrote to its log (the last 64 KiB), when it has one;
    the message quotes only its last lines.
    """

    log: str = ""


class ReadyTimeout(StartError, TimeoutError):
    """A helper process did not become ready before the deadline."""


class PortForwardError(SlirpError):
    """A port could not be forwarded into the namespace."""
