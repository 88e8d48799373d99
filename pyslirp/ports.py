"""Port mappings (podman's ``types.PortMapping``) and podman's ``-p`` syntax."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address

from .errors import PortMappingError
from .gostrconv import go_atoi, go_quote

PROTOCOLS = ("tcp", "udp", "sctp")
SLIRP4NETNS_PROTOCOLS = ("tcp", "udp")
_PORT_MAX = 65535


@dataclass(frozen=True, kw_only=True)
class PortMapping:
    """Forward ``range`` consecutive host ports, from ``host_port``, to ``container_port``.

    ``protocol`` is a comma list of tcp, udp and sctp; ``host_ip`` empty means all addresses;
    ``range=0`` means 1, as podman's types document.
    """

    container_port: int
    host_port: int
    host_ip: str = ""
    range: int = 1
    protocol: str = "tcp"

    def __post_init__(self) -> None:
        if _is_int(self.range) and self.range == 0:
            object.__setattr__(self, "range", 1)
        if not _is_int(self.range) or not 1 <= self.range <= _PORT_MAX:
            raise PortMappingError(f"invalid range {self.range!r}: must be 0 to {_PORT_MAX}")
        _check_port("container_port", self.container_port, self.range)
        _check_port("host_port", self.host_port, self.range)
        _check_protocol(self.protocol)
        if not isinstance(self.host_ip, str) or (self.host_ip and not _is_ip(self.host_ip)):
            raise PortMappingError(
                f"invalid host_ip {self.host_ip!r}: cannot parse it as an IP address"
            )

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols of the comma list, in order."""
        return tuple(self.protocol.split(","))

    def to_json(self) -> dict[str, str | int]:
        """The mapping with podman's JSON keys, as rootlessport reads it."""
        return {
            "host_ip": self.host_ip,
            "container_port": self.container_port,
            "host_port": self.host_port,
            "range": self.range,
            "protocol": self.protocol,
        }


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_ip(text: str) -> bool:
    # Go's net.ParseIP takes no IPv6 zone ("fe80::1%eth0"); Python's parser would.
    if "%" in text:
        return False
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _check_port(name: str, port: int, count: int) -> None:
    if not _is_int(port) or not 1 <= port <= _PORT_MAX:
        raise PortMappingError(
            f"invalid {name} {port!r}: port numbers must be between 1 and 65535 (inclusive)"
        )
    if port + count - 1 > _PORT_MAX:
        raise PortMappingError(
            f"invalid {name} {port!r} with range {count}: "
            f"the last port {port + count - 1} is past {_PORT_MAX}"
        )


def _check_protocol(protocol: str) -> None:
    if not isinstance(protocol, str):
        raise PortMappingError(f"invalid protocol {protocol!r}: must be a string")
    seen: set[str] = set()
    for item in protocol.split(","):
        if item not in PROTOCOLS:
            raise PortMappingError(
                f"invalid protocol {go_quote(protocol)}: "
                f"unrecognized protocol {go_quote(item)} in port mapping"
            )
        if item in seen:
            raise PortMappingError(f"invalid protocol {go_quote(protocol)}: {item} is listed twice")
        seen.add(item)


def slirp4netns_hostfwd_args(mapping: PortMapping) -> list[dict[str, str | int]]:
    """The ``add_hostfwd`` arguments for slirp4netns's API: each protocol, then each port.

    The slirp4netns port handler forwards only tcp and udp; sctp is refused here, before
    anything is sent.
    """
    for protocol in mapping.protocols:
        if protocol not in SLIRP4NETNS_PROTOCOLS:
            raise PortMappingError(
                f"the slirp4netns port handler supports only tcp and udp, "
                f"not {go_quote(protocol)} (protocol {go_quote(mapping.protocol)})"
            )
    host_addr = mapping.host_ip or "0.0.0.0"
    return [
        {
            "proto": protocol,
            "host_addr": host_addr,
            "host_port": mapping.host_port + step,
            "guest_addr": "",
            "guest_port": mapping.container_port + step,
        }
        for protocol in mapping.protocols
        for step in range(mapping.range)
    ]


def parse_publish(spec: str) -> PortMapping:
    """Parse podman's ``-p [IP:]HOST[-END]:CONTAINER[-END][/PROTO]``.

    Unlike podman, a host port is required: no random port is picked.
    """
    try:
        return _parse_publish(spec)
    except PortMappingError as exc:
        raise PortMappingError(f"invalid port mapping {go_quote(spec)}: {exc}") from None


def _parse_publish(spec: str) -> PortMapping:
    rest, slash, proto = spec.partition("/")
    if "/" in proto:
        raise PortMappingError("invalid port format - protocol can only be specified once")
    if slash and not proto:
        raise PortMappingError("must provide a non-empty protocol to publish")
    host_ip: str | None = None
    if "]" in rest:
        bracketed, _, rest = rest.partition("]")
        if "]" in rest:
            raise PortMappingError(
                "invalid port format - at most one IPv6 address can be specified in a --publish"
            )
        if not bracketed.startswith("["):
            raise PortMappingError("invalid port format - IPv6 addresses must be enclosed by []")
        if not rest.startswith(":"):
            raise PortMappingError(
                "invalid port format - IPv6 address must be followed by a colon (':')"
            )
        host_ip, rest = bracketed[1:], rest[1:]
        if ":" not in rest:
            raise PortMappingError(
                "invalid port format - must provide host and destination port if specifying an IP"
            )
        if rest.count(":") == 2:
            raise PortMappingError(
                "invalid port format - when v6 address specified, must be [ipv6]:hostPort:ctrPort"
            )
    parts = rest.split(":")
    if len(parts) > 3:
        raise PortMappingError("invalid port format - format is [[hostIP:]hostPort:]containerPort")
    if len(parts) == 3:
        host_ip = parts.pop(0)
    if len(parts) == 1 or not parts[0]:
        raise PortMappingError("a host port is required (random host ports are not supported)")
    host_text, ctr_text = parts
    if not ctr_text:
        raise PortMappingError("must provide a non-empty container port to publish")
    ctr_start, ctr_len = _parse_range(ctr_text, "container")
    host_start, host_len = _parse_range(host_text, "host")
    if host_len != ctr_len:
        raise PortMappingError(
            f"host and container port ranges have different lengths: {host_len} vs {ctr_len}"
        )
    return PortMapping(
        container_port=ctr_start,
        host_port=host_start,
        host_ip=_normalise_host_ip(host_ip),
        range=ctr_len,
        protocol=_normalise_protocol(proto) if proto else "tcp",
    )


def _parse_range(text: str, side: str) -> tuple[int, int]:
    start_text, dash, end_text = text.partition("-")
    if "-" in end_text:
        raise PortMappingError(
            f"parsing {side} port: invalid port format - "
            "port ranges are formatted as startPort-stopPort"
        )
    if not start_text:
        raise PortMappingError(f"parsing {side} port: port numbers cannot be negative")
    start = _parse_port(start_text, side)
    if not dash:
        return start, 1
    if not end_text:
        raise PortMappingError(f"parsing {side} port: must provide ending number for port range")
    end = _parse_port(end_text, side)
    if end <= start:
        raise PortMappingError(
            f"parsing {side} port: the end port of a range must be higher than the start "
            f"port - {end} is not higher than {start}"
        )
    return start, end - start + 1


def _parse_port(text: str, side: str) -> int:
    number = go_atoi(text)
    if number is None:
        raise PortMappingError(
            f"parsing {side} port: invalid port number: "
            f"strconv.Atoi: parsing {go_quote(text)}: invalid syntax"
        )
    if not 1 <= number <= _PORT_MAX:
        raise PortMappingError(
            f"parsing {side} port: port numbers must be between 1 and 65535 (inclusive), "
            f"got {number}"
        )
    return number


def _normalise_host_ip(text: str | None) -> str:
    """Podman's rules: 0.0.0.0 means all addresses; others are written as Go prints them."""
    if text is None or text == "0.0.0.0":
        return ""
    if not text:
        raise PortMappingError("must provide a non-empty container host IP to publish")
    if not _is_ip(text):
        raise PortMappingError(f"cannot parse {go_quote(text)} as an IP address")
    ip = ip_address(text)
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _normalise_protocol(text: str) -> str:
    """Podman's rules: case-insensitive, an empty item is tcp, duplicates are dropped."""
    protocols: list[str] = []
    for item in text.lower().split(","):
        name = item or "tcp"
        if name not in PROTOCOLS:
            raise PortMappingError(f"unrecognized protocol {go_quote(item)} in port mapping")
        if name not in protocols:
            protocols.append(name)
    return ",".join(protocols)
