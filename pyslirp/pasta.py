"""``setup()``: pasta (from the passt project) for a network namespace, as our child.

The Python counterpart of podman's ``libnetwork/pasta.Setup``: the same options in the same
order, the same addresses read back. Unlike podman, pasta is not left to daemonise: it runs
in the foreground as our child (a :class:`~pyslirp.helper.Helper`), and writes its pid to
``/dev/fd/3``, the write end of its ready pipe, once the namespace is configured and its
ports are bound. So its death is noticed at once, it dies with its owner (``pdeathsig``,
SIGKILL by default: pasta has no exit pipe) and :meth:`SetupResult.close` returns only once
it is reaped and its ports are free.

Addressing: by default pasta copies the host's addresses and routes into the namespace,
as podman does. ``addressing="slirp4netns"`` gives slirp4netns's addresses instead
(10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3), so :func:`~pyslirp.get_ip`,
:func:`~pyslirp.get_gateway` and :func:`~pyslirp.get_dns` keep their meaning for code that
switches backends; it is what a sandbox wants that must not see the host's addresses.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .config import Config
from .errors import OptionError, PortForwardError, SlirpError, StartError
from .features import probe_pasta_features
from .helper import Helper
from .netnsaddr import IPAddress, netns_addresses
from .options import check_path, check_pdeathsig, check_ready_timeout, check_strings
from .pastaargv import SLIRP4NETNS_PRESET, child_options, create_pasta_args
from .ports import PortMapping
from .process import DEVNULL

__all__ = ["BINARY_NAME", "SetupOptions", "SetupResult", "setup"]

BINARY_NAME = "pasta"
READY_FD = 3  # pasta's pid file is /dev/fd/3: the pid written is the ready signal
NETNS_FD = 4  # the namespaces pasta joins, as /proc/self/fd/N
USERNS_FD = 5
Addressing = Literal["host", "slirp4netns"]

logger = logging.getLogger("pyslirp")


@dataclass(frozen=True, kw_only=True)
class SetupOptions:
    """What :func:`setup` needs: the fields of Go's ``pasta.SetupOptions`` in snake_case,
    and ours.

    ``extra_options`` are pasta options appended after containers.conf's ``pasta_options``.
    ``pdeathsig`` is the signal pasta gets when this process dies, however it dies (0: it
    outlives us). ``userns_path`` is the user namespace owning ``netns`` when the caller
    is outside it (rootless). ``ready_timeout`` bounds the whole setup. Every field is
    checked when the options are made (:class:`~pyslirp.OptionError`).
    """

    config: Config = field(default_factory=Config)
    netns: str
    ports: Sequence[PortMapping] = ()
    extra_options: Sequence[str] = ()
    addressing: Addressing = "host"
    pdeathsig: int = signal.SIGKILL
    ready_timeout: float = 10.0
    userns_path: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, Config):
            raise OptionError(f"invalid config {self.config!r}: not a pyslirp.Config")
        check_path("netns", self.netns)
        check_path("tmp_dir", self.config.tmp_dir)
        if self.userns_path is not None:
            check_path("userns_path", self.userns_path)
        object.__setattr__(self, "extra_options", check_strings(self.extra_options))
        for option in (*self.config.pasta_options, *self.extra_options):
            if "\0" in option:
                raise OptionError(f"invalid pasta option {option!r}: contains a NUL byte")
        if self.addressing not in ("host", "slirp4netns"):
            raise OptionError(
                f"invalid addressing {self.addressing!r}: use 'host' or 'slirp4netns'"
            )
        check_pdeathsig(self.pdeathsig)
        check_ready_timeout(self.ready_timeout)


class SetupResult:
    """A running pasta (Go's ``pasta.SetupResult``), owned as a file object owns its fd:
    :meth:`close` (or ``with``) stops and reaps it, :meth:`detach` gives it up, and a
    result dropped while it still owns pasta warns (``ResourceWarning``) and kills it."""

    def __init__(self, label: str) -> None:
        self.pasta = Helper(BINARY_NAME, label=label)
        self.ip_addresses: list[IPAddress] = []
        self.ipv6 = False
        self.dns_forward_ips: list[IPAddress] = []
        self.map_guest_addr_ips: list[IPAddress] = []

    def _read_back(
        self, addresses: list[IPAddress], dns_forward: list[IPAddress], guest: list[IPAddress]
    ) -> None:
        """Podman's result: the addresses, and the DNS forward and guest-mapped addresses
        of the families the namespace has an address of."""
        families = {address.version for address in addresses}
        self.ip_addresses = addresses
        self.ipv6 = 6 in families
        self.dns_forward_ips = [a for a in dns_forward if a.version in families]
        self.map_guest_addr_ips = [a for a in guest if a.version in families]

    @property
    def pid(self) -> int:
        """The pid of pasta."""
        return self.pasta.pid

    @property
    def returncode(self) -> int | None:
        """None while pasta runs; its exit status (``-N``: signal N) once it died."""
        return self.pasta.returncode

    def log(self) -> str:
        """What pasta has written to stdout and stderr (the last 64 KiB)."""
        return _without_syslog_noise(self.pasta.log())

    def close(self, timeout: float = 5.0) -> None:
        """Stop pasta (SIGTERM; SIGKILL after ``timeout``) and reap it: then its ports are
        free. Safe to call more than once; in a forked child it only closes the fds."""
        self.pasta.close(timeout)

    def detach(self) -> int:
        """Give up ownership and return pasta's pid: it keeps running, and with
        ``pdeathsig`` still dies with this process."""
        return self.pasta.detach()

    def __enter__(self) -> SetupResult:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        addresses = ", ".join(map(str, self.ip_addresses))
        return f"<pasta.SetupResult pid={self.pid} ip_addresses=[{addresses}]>"


def setup(opts: SetupOptions) -> SetupResult:
    """Start pasta for ``opts.netns``, wait until it is ready, read back its addresses.

    When pasta fails: a typed error naming the fix (:class:`~pyslirp.OptionError` for an
    option pasta refuses, :class:`~pyslirp.PortForwardError` for a port it cannot bind,
    :class:`~pyslirp.StartError` for the rest, :class:`~pyslirp.ReadyTimeout` past the
    deadline). On any error, Ctrl-C included, nothing is left behind.
    """
    started = time.monotonic()
    deadline = started + opts.ready_timeout
    config = opts.config
    binary = config.find_pasta()
    result = SetupResult(label=f"{BINARY_NAME} for netns {opts.netns}")
    try:
        # A namespace of a process (/proc/PID/ns/...) is handed to pasta as its own fd:
        # once pasta has dropped its capabilities it can open neither that of a process
        # that is not dumpable nor, rootless, another's user namespace. A named netns
        # stays a path: pasta watches it and quits when it is deleted. (Opened in the
        # spawned child: a Ctrl-C cannot come between an open and its owner.)
        netns, userns = opts.netns, opts.userns_path
        handed: dict[str, str | int] = {}
        if netns.startswith("/proc/"):
            handed.update(netns=netns, pass_netns=NETNS_FD)
            netns = f"/proc/self/fd/{NETNS_FD}"
        if userns is not None and userns.startswith("/proc/"):
            handed.update(userns=userns, pass_userns=USERNS_FD)
            userns = f"/proc/self/fd/{USERNS_FD}"
        preset = SLIRP4NETNS_PRESET if opts.addressing == "slirp4netns" else ()
        pasta_args = create_pasta_args(
            config.pasta_options,
            [*preset, *opts.extra_options],
            opts.ports,
            netns,
            map_guest_addr=probe_pasta_features(binary).map_guest_addr,
        )
        own = child_options(pasta_args.args, root=os.geteuid() == 0, userns=userns)
        argv = [binary, "--pid", f"/dev/fd/{READY_FD}", *own, *pasta_args.args]
        logger.debug("starting %s", argv)
        result.pasta.spawn(
            argv, ready_fd=READY_FD, stdin=DEVNULL, log=True, pdeathsig=opts.pdeathsig, **handed
        )
        try:
            result.pasta.wait_ready(deadline)
        except StartError as exc:
            raise _typed(exc, opts.netns) from exc
        try:
            addresses = netns_addresses(opts.netns, opts.userns_path, deadline)
        except OSError as exc:
            raise StartError(f"cannot read the addresses of netns {opts.netns}: {exc}") from exc
        result._read_back(addresses, pasta_args.dns_forward_ips, pasta_args.map_guest_addr_ips)
    except BaseException:
        result.close(timeout=0)
        raise
    logger.debug("%s ready in %.1f ms", result.pasta.label, (time.monotonic() - started) * 1e3)
    return result


# What pasta prints before each message when no syslog listens (no /dev/log).
_SYSLOG_NOISE = re.compile(r"^Failed to send \d+ bytes to syslog\n?", re.MULTILINE)

# pasta's own words -> (the error type, what to do about it)
_FIXES: list[tuple[re.Pattern[str], type[SlirpError], str]] = [
    (
        re.compile(r"External interface not usable.*"),
        StartError,
        "the host has no interface with a default route to copy addresses from: bring "
        "one up, name one with -i IFACE, or use addressing='slirp4netns'",
    ),
    (
        re.compile(r"Couldn't open network namespace.*"),
        StartError,
        "netns must be the path of a network namespace (/run/netns/NAME, /proc/PID/ns/net)",
    ),
    (
        re.compile(r"Couldn't switch to pasta namespaces.*"),
        StartError,
        "netns must be a network namespace, and a rootless caller must give userns_path, "
        "the user namespace that owns it",
    ),
    (
        re.compile(r"Failed to bind.*"),
        PortForwardError,
        "a published host port is in use or privileged: free it, or publish another one",
    ),
    (
        re.compile(r"Failed to open tun socket in namespace.*"),
        StartError,
        "the namespace has a pasta interface already (another pasta serves it?), or "
        "/dev/net/tun cannot be opened",
    ),
    (
        re.compile(r"(unrecognized|invalid) option.*|Multiple \S+ options given.*"),
        OptionError,
        "check pasta_options in containers.conf and extra_options against `pasta --help`",
    ),
]


def _typed(exc: StartError, netns: str) -> SlirpError:
    """``exc`` as the error type that fits pasta's message, with the fix named; else
    ``exc``'s kind and words without the lines pasta adds when no syslog listens."""
    said = _without_syslog_noise(exc.log)  # the whole log: a usage text follows the error
    for pattern, kind, fix in _FIXES:
        found = pattern.search(said)
        if found is not None:
            return kind(f"{BINARY_NAME} for netns {netns}: {found.group(0).strip()} ({fix})")
    error = type(exc)(_without_syslog_noise(str(exc)))
    error.log = _without_syslog_noise(exc.log)
    return error


def _without_syslog_noise(text: str) -> str:
    return _SYSLOG_NOISE.sub("", text)
