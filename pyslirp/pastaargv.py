"""The pasta command line: podman's options in podman's order, then the ones that keep
pasta our child."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from .errors import OptionError, PortMappingError
from .gostrconv import go_quote
from .ports import PortMapping

DNS_FORWARD_OPT = "--dns-forward"
MAP_GUEST_ADDR_OPT = "--map-guest-addr"
# Link-local: unlikely to clash with anything the namespace or the host uses.
DNS_FORWARD_IPV4 = "169.254.1.1"
MAP_GUEST_ADDR_IPV4 = "169.254.1.2"

SLIRP4NETNS_ADDRESSING = ("-a", "10.0.2.100", "-n", "24", "-g", "10.0.2.2")
SLIRP4NETNS_DNS = (DNS_FORWARD_OPT, "10.0.2.3")
SLIRP4NETNS_PRESET = (*SLIRP4NETNS_ADDRESSING, *SLIRP4NETNS_DNS)
"""slirp4netns's addresses (as rootlesskit's pasta driver gives them): the namespace is
10.0.2.100/24, the gateway 10.0.2.2 and DNS 10.0.2.3, whatever the host's network is."""

_PID_OPTIONS = ("--pid", "-P")
_LOG_OPTIONS = ("-l", "--log-file")

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True)
class PastaArgs:
    """What podman's ``createPastaArgs`` returns: pasta's options (no binary) and the DNS
    forward and guest-mapped addresses they set."""

    args: list[str]
    dns_forward_ips: list[IPAddress]
    map_guest_addr_ips: list[IPAddress]


def create_pasta_args(
    config_options: Sequence[str],
    extra_options: Sequence[str],
    ports: Sequence[PortMapping],
    netns: str,
    *,
    map_guest_addr: bool = True,
) -> PastaArgs:
    """pasta's options exactly as podman builds them (containers/common libnetwork/pasta).

    ``--config-net``, the config options, then the per-call ones (the ``--map-gw`` pseudo
    option taken out, which also drops ``--no-map-gw``); one ``-t``/``-u`` per mapping and
    protocol; ``--dns-forward 169.254.1.1`` unless one is given; ``none`` for every
    forwarding direction not set; ``--quiet`` unless debugging; ``--netns``; last
    ``--map-guest-addr 169.254.1.2`` unless one is given, and only where the binary has
    that option (``map_guest_addr``; podman retries without it instead).
    """
    args = ["--config-net", *config_options, *extra_options]
    map_gw = "--map-gw" in args
    args = [arg for arg in args if arg != "--map-gw"]
    no_tcp_init = no_udp_init = no_tcp_ns = no_udp_ns = quiet = True
    dns_forward: list[str] = []
    guest_addr: list[str] = []
    for i, arg in enumerate(args):
        following = args[i + 1 : i + 2]  # a flag at the end has no value: pasta refuses it
        match arg:
            case "-t" | "--tcp-ports":
                no_tcp_init = False
            case "-u" | "--udp-ports":
                no_udp_init = False
            case "-T" | "--tcp-ns":
                no_tcp_ns = False
            case "-U" | "--udp-ns":
                no_udp_ns = False
            case "-d" | "--debug" | "--trace":
                quiet = False
            case "--dns-forward":
                dns_forward += following
            case "--map-guest-addr":
                guest_addr += following
    for mapping in ports:
        for protocol in mapping.protocols:
            if protocol == "tcp":
                no_tcp_init = False
                args.append("-t")
            elif protocol == "udp":
                no_udp_init = False
                args.append("-u")
            else:
                raise PortMappingError(f"can't forward protocol: {protocol}")
            args.append(port_spec(mapping))
    if not dns_forward:
        args += [DNS_FORWARD_OPT, DNS_FORWARD_IPV4]
        dns_forward.append(DNS_FORWARD_IPV4)
    for flag, unset in (
        ("-t", no_tcp_init),
        ("-u", no_udp_init),
        ("-T", no_tcp_ns),
        ("-U", no_udp_ns),
    ):
        if unset:
            args += [flag, "none"]
    if not map_gw:
        args.append("--no-map-gw")
    if quiet:
        args.append("--quiet")
    args += ["--netns", netns]
    if not guest_addr and map_guest_addr:
        args += [MAP_GUEST_ADDR_OPT, MAP_GUEST_ADDR_IPV4]
        guest_addr.append(MAP_GUEST_ADDR_IPV4)
    return PastaArgs(
        args, _addresses(DNS_FORWARD_OPT, dns_forward), _addresses(MAP_GUEST_ADDR_OPT, guest_addr)
    )


def port_spec(mapping: PortMapping) -> str:
    """``[HOSTIP/]H1-H2:C1-C2``, pasta's spec for one mapping (podman writes ranges always)."""
    last = mapping.range - 1
    prefix = f"{mapping.host_ip}/" if mapping.host_ip else ""
    return (
        f"{prefix}{mapping.host_port}-{mapping.host_port + last}:"
        f"{mapping.container_port}-{mapping.container_port + last}"
    )


def child_options(options: Sequence[str], *, root: bool, userns: str | None) -> list[str]:
    """What keeps pasta our child, put before podman's ``options`` (the pid file comes
    with the spawn): in the foreground; its errors on stderr, our log, even where a syslog
    would swallow them; as root ``--runas 0`` (else it drops to nobody and cannot enter
    the namespace); ``--userns`` to join the user namespace that owns the netns.

    Options the caller gave themselves are not repeated (pasta refuses a second one); a
    pid file of the caller's is refused: ours is the ready signal.
    """
    given = set(options)
    for option in options:
        if option in _PID_OPTIONS or option.startswith(("--pid=", "-P")):
            raise OptionError(
                f"cannot use --pid or -P in the pasta options: pyslirp reads pasta's pid "
                f"from a pid file of its own, got {go_quote(option)}"
            )
    own = [] if given & {"-f", "--foreground"} else ["--foreground"]
    if not given & {"-e", "--stderr", *_LOG_OPTIONS} and not _has_prefix(options, "--log-file="):
        own.append("--stderr")
    if root and "--runas" not in given and not _has_prefix(options, "--runas="):
        own += ["--runas", "0"]
    if userns is not None:
        own += ["--userns", userns]
    return own


def _has_prefix(options: Sequence[str], prefix: str) -> bool:
    return any(option.startswith(prefix) for option in options)


def _addresses(option: str, values: list[str]) -> list[IPAddress]:
    addresses = []
    for value in values:
        try:
            addresses.append(ip_address(value))
        except ValueError:
            raise OptionError(f"invalid {option} address {go_quote(value)}") from None
    return addresses
