"""slirp4netns network options (config ones, then per-call extras), parsed as podman does,
and :class:`SetupOptions`, everything a setup needs, validated when made."""

from __future__ import annotations

import math
import signal
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from ipaddress import AddressValueError, IPv4Address, IPv4Network, IPv6Address
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

from .addresses import parse_subnet
from .config import Config
from .errors import OptionError, PortMappingError, SubnetError
from .gostrconv import go_atoi, go_quote
from .ports import PortMapping

if TYPE_CHECKING:
    from .process import FdLike

T = TypeVar("T")

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
    """Whether ``name`` is the name of an interface of the current network namespace.

    As Go's ``net.InterfaceByName``, which lists the links: an altname does not count
    (``if_nametoindex`` would resolve one).
    """
    return any(known == name for _, known in socket.if_nameindex())


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


READY_TIMEOUT_MAX = 3600.0  # seconds: a helper not ready in an hour never will be
PORT_HANDLER_PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True, kw_only=True)
class SetupOptions:
    """What :func:`~pyslirp.setup` needs; the fields of Go's ``SetupOptions`` in snake_case.

    ``netns`` is the path of the network namespace (Go's ``--netns-type=path``). The exit
    pipes are read ends owned by the caller: closing the write end stops the helper, and
    the helper then outlives this process if the caller's write end does. Without them,
    pyslirp owns an exit pipe per helper, so the helpers stop when this process dies.
    ``userns_path`` is the user namespace owning ``netns`` when the caller is outside it.
    ``ready_timeout`` bounds the whole setup, ports included.

    Every field is checked when the options are made (:class:`~pyslirp.OptionError`,
    :class:`~pyslirp.PortMappingError`), the network options parsed (:attr:`network`).
    """

    config: Config = field(default_factory=Config)
    container_id: str
    netns: str
    ports: Sequence[PortMapping] = ()
    extra_options: Sequence[str] = ()
    slirp4netns_exit_pipe_r: FdLike | None = None
    rootless_port_exit_pipe_r: FdLike | None = None
    pdeathsig: int = 0
    ready_timeout: float = 10.0
    userns_path: str | None = None
    # What a SetupPlan made from these options depends on, and its hash: made once, here.
    plan_key: tuple[object, ...] = field(init=False, repr=False, compare=False)
    plan_hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.config, Config):
            raise OptionError(f"invalid config {self.config!r}: not a pyslirp.Config")
        _check_container_id(self.container_id)
        check_path("netns", self.netns)
        check_path("tmp_dir", self.config.tmp_dir)
        if self.config.network_cmd_path is not None:
            check_path("network_cmd_path", self.config.network_cmd_path)
        if self.userns_path is not None:
            check_path("userns_path", self.userns_path)
        object.__setattr__(self, "ports", _check_ports(self.ports))
        object.__setattr__(self, "extra_options", check_strings(self.extra_options))
        for name in ("slirp4netns_exit_pipe_r", "rootless_port_exit_pipe_r"):
            check_fd(name, getattr(self, name))
        check_pdeathsig(self.pdeathsig)
        check_ready_timeout(self.ready_timeout)
        network = parse_options(self.config.network_cmd_options, self.extra_options)
        object.__setattr__(self, "_network", network)
        plan_key = (
            self.config,
            self.extra_options,
            bool(self.ports),  # which ports is each setup's own
            self.pdeathsig,
            self.userns_path,
            self.slirp4netns_exit_pipe_r is None,
        )
        object.__setattr__(self, "plan_key", plan_key)
        object.__setattr__(self, "plan_hash", hash(plan_key))

    @property
    def network(self) -> NetworkOptions:
        """The network options: the config's ``network_cmd_options``, then ``extra_options``."""
        network: NetworkOptions = self.__dict__["_network"]
        return network


def _check_container_id(value: object) -> None:
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "\0" in value:
        raise OptionError(f"invalid container id {value!r}")


def check_path(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise OptionError(f"invalid {name} {value!r}: must be a non-empty string")
    if "\0" in value:
        raise OptionError(f"invalid {name} {value!r}: contains a NUL byte")


def _check_ports(ports: object) -> tuple[PortMapping, ...]:
    checked = _sequence_of(
        PortMapping, ports, ("ports", "PortMapping"), ("port mapping", "a PortMapping")
    )
    for mapping in checked:
        for protocol in mapping.protocols:
            if protocol not in PORT_HANDLER_PROTOCOLS:
                raise PortMappingError(
                    f"cannot publish {go_quote(protocol)} ports (protocol "
                    f"{go_quote(mapping.protocol)}): rootlessport and slirp4netns forward "
                    "only tcp and udp"
                )
    return checked


def check_strings(items: object) -> tuple[str, ...]:
    return _sequence_of(str, items, ("extra_options", "strings"), ("option", "a string"))


def _sequence_of(
    kind: type[T], items: object, whole: tuple[str, str], item: tuple[str, str]
) -> tuple[T, ...]:
    """``items`` as a tuple of ``kind``; else the error (PortMappingError for mappings,
    OptionError for the rest) naming the whole as ``whole`` or the item as ``item``:
    (what it is, what it must be)."""
    error = PortMappingError if kind is PortMapping else OptionError
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise error(f"invalid {whole[0]} {items!r}: must be a sequence of {whole[1]}")
    checked = tuple(items)
    for one in checked:
        if not isinstance(one, kind):
            raise error(f"invalid {item[0]} {one!r}: not {item[1]}")
    return checked


def check_fd(name: str, value: object) -> None:
    if value is None:
        return
    fd = value if isinstance(value, int) else getattr(value, "fileno", None)
    if callable(fd):
        try:
            fd = fd()
        except (OSError, ValueError) as exc:
            raise OptionError(f"invalid {name} {value!r}: {exc}") from exc
    if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
        raise OptionError(f"invalid {name} {value!r}: not an fd or a file")


def check_pdeathsig(value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < signal.NSIG:
        raise OptionError(f"invalid pdeathsig {value!r}: not 0 or a signal number")


def check_ready_timeout(value: object) -> None:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 < value <= READY_TIMEOUT_MAX
    ):
        raise OptionError(
            f"invalid ready_timeout {value!r}: must be seconds, more than 0 and at most "
            f"{READY_TIMEOUT_MAX:g}"
        )


def fd_of(value: FdLike) -> int:
    """The fd number of an fd or of an object with ``fileno()``."""
    return value if isinstance(value, int) else value.fileno()
