"""``setup()``: pasta (from the passt project) for a network namespace, as our child.

The Python counterpart of podman's ``libnetwork/pasta.Setup``: the same options in the same
order, the same addresses read back. Unlike podman, pasta is not left to daemonise: it runs
in the foreground as our child, its pid arriving on a FIFO is the ready signal, so its death
is noticed at once, it dies with its owner (``pdeathsig``, SIGKILL by default) and
:meth:`SetupResult.close` returns only once it is reaped and its ports are free.

Addressing: by default pasta copies the host's addresses and routes into the namespace,
as podman does. ``addressing="slirp4netns"`` gives slirp4netns's addresses instead
(10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3), so :func:`~pyslirp.get_ip`,
:func:`~pyslirp.get_gateway` and :func:`~pyslirp.get_dns` keep their meaning for code that
switches backends; it is what a sandbox wants that must not see the host's addresses.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .config import Config
from .errors import OptionError, PortForwardError, SlirpError, StartError
from .features import probe_pasta_features
from .netnsaddr import IPAddress, netns_addresses
from .pastaargv import SLIRP4NETNS_PRESET, child_options, create_pasta_args
from .ports import PortMapping
from .ready import wait_ready
from .signals import signals_deferred
from .spawn import DEVNULL, Child, spawn
from .tmpfiles import anonymous_file, read_tail

__all__ = ["BINARY_NAME", "SetupOptions", "SetupResult", "setup"]

BINARY_NAME = "pasta"
Addressing = Literal["host", "slirp4netns"]
MAX_READY_TIMEOUT = 3600.0

log = logging.getLogger("pyslirp")


@dataclass(frozen=True, kw_only=True)
class SetupOptions:
    """What :func:`setup` needs: the fields of Go's ``pasta.SetupOptions`` in snake_case,
    and ours.

    ``extra_options`` are pasta options appended after containers.conf's ``pasta_options``.
    ``pdeathsig`` is the signal pasta gets when this process dies, however it dies (0: it
    outlives us). ``userns_path`` is the user namespace owning ``netns`` when the caller
    is outside it (rootless). ``ready_timeout`` bounds the whole setup.
    """

    config: Config = field(default_factory=Config)
    netns: str
    ports: Sequence[PortMapping] = ()
    extra_options: Sequence[str] = ()
    addressing: Addressing = "host"
    pdeathsig: int = signal.SIGKILL
    ready_timeout: float = 10.0
    userns_path: str | None = None


class SetupResult:
    """A running pasta (Go's ``pasta.SetupResult``) that :meth:`close` stops and reaps."""

    def __init__(
        self,
        process: PastaProcess,
        ip_addresses: list[IPAddress],
        dns_forward_ips: list[IPAddress],
        map_guest_addr_ips: list[IPAddress],
    ) -> None:
        self.process = process
        self.ip_addresses = ip_addresses
        self.ipv6 = any(address.version == 6 for address in ip_addresses)
        self.dns_forward_ips = _same_families(dns_forward_ips, ip_addresses)
        self.map_guest_addr_ips = _same_families(map_guest_addr_ips, ip_addresses)

    @property
    def pid(self) -> int:
        """The pid of pasta."""
        return self.process.child.pid

    @property
    def returncode(self) -> int | None:
        """None while pasta runs; its exit status (``-N``: signal N) once it died."""
        return self.process.child.poll()

    def log(self) -> str:
        """What pasta has written to stdout and stderr (the last 64 KiB)."""
        return self.process.log()

    def close(self, timeout: float = 5.0) -> None:
        """Stop pasta (SIGKILL after ``timeout``) and reap it: then its ports are free.
        Safe to call more than once."""
        self.process.stop(timeout)

    def __enter__(self) -> SetupResult:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        addresses = ", ".join(map(str, self.ip_addresses))
        return f"<pasta.SetupResult pid={self.pid} ip_addresses=[{addresses}]>"


class PastaProcess:
    """pasta as our child, from spawn to reaped: its whole life cycle in one place.

    It runs in the foreground with its pid file on a FIFO in a private directory: the pid
    arriving there is the ready signal (pasta writes it once the namespace is configured
    and its ports are bound). A FIFO rather than ``/dev/fd/N`` on a pipe, which Debian 12's
    pasta accepts: later ones close every inherited fd at start (``isolate_initial``).
    Under the temporary directory, as podman's pid file: pasta's AppArmor profile lets it
    write there (``owner /tmp/** w``), not under ``/run/libpod``.
    """

    def __init__(self, child: Child, log_fd: int) -> None:
        self.child = child
        self._log_fd = log_fd
        self._stopped = False

    @classmethod
    def start(
        cls, argv: list[str], *, tmp_dir: str, pdeathsig: int, name: str, deadline: float
    ) -> PastaProcess:
        """Spawn ``argv`` with ``--pid FIFO`` and wait until pasta is ready; on any failure
        it is stopped and reaped before this raises."""
        private = None
        ready_r = log_fd = -1
        try:
            try:
                private = tempfile.mkdtemp(prefix="pyslirp-pasta-")
                pid_file = os.path.join(private, "pid")
                os.mkfifo(pid_file, 0o600)
                # Non-blocking: no writer yet. No EOF is seen before a writer has come.
                ready_r = os.open(pid_file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                raise StartError(f"cannot make a pid file FIFO for pasta: {exc}") from exc
            log_fd = anonymous_file(tmp_dir)
            full_argv = [argv[0], "--pid", pid_file, *argv[1:]]
            log.debug("starting %s", full_argv)
            # Ctrl-C waits until the handle owns pasta: then stop() undoes it.
            with signals_deferred():
                try:
                    child = spawn(
                        full_argv,
                        stdin=DEVNULL,
                        stdout=log_fd,
                        stderr=log_fd,
                        pdeathsig=pdeathsig,
                    )
                except OSError as exc:
                    raise StartError(f"cannot start {argv[0]}: {exc}") from exc
                process = cls(child, log_fd)
                log_fd = -1
            try:
                wait_ready(name, child, ready_r, deadline, process.log)
            except BaseException:
                process.stop(0)  # it failed: no graceful exit to wait for
                raise
            return process
        finally:
            for fd in (ready_r, log_fd):
                if fd >= 0:
                    os.close(fd)
            if private is not None:
                shutil.rmtree(private, ignore_errors=True)

    def log(self) -> str:
        """pasta's output, without the lines it adds when no syslog listens."""
        return _without_syslog_noise(read_tail(self._log_fd)) if not self._stopped else ""

    def stop(self, timeout: float) -> None:
        """SIGTERM (pasta exits at once), SIGKILL after ``timeout``; returns once reaped."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.child.stop(timeout)
        finally:
            os.close(self._log_fd)


def setup(opts: SetupOptions) -> SetupResult:
    """Start pasta for ``opts.netns``, wait until it is ready, read back its addresses.

    Raises :class:`~pyslirp.OptionError` (and its siblings) before anything is spawned;
    when pasta fails, a typed error naming the fix (:class:`~pyslirp.OptionError` for an
    option pasta refuses, :class:`~pyslirp.PortForwardError` for a port it cannot bind,
    :class:`~pyslirp.StartError` for the rest, :class:`~pyslirp.ReadyTimeout` past the
    deadline). On any error nothing is left behind.
    """
    started = time.monotonic()
    _check(opts)
    deadline = started + opts.ready_timeout
    config = opts.config
    binary = config.find_pasta()
    extra = [*(SLIRP4NETNS_PRESET if opts.addressing == "slirp4netns" else ()), *opts.extra_options]
    pasta_args = create_pasta_args(
        config.pasta_options,
        extra,
        opts.ports,
        opts.netns,
        map_guest_addr=probe_pasta_features(binary).map_guest_addr,
    )
    own = child_options(pasta_args.args, root=os.geteuid() == 0, userns=opts.userns_path)
    argv = [binary, *own, *pasta_args.args]
    name = f"{BINARY_NAME} for netns {opts.netns}"
    try:
        process = PastaProcess.start(
            argv, tmp_dir=config.tmp_dir, pdeathsig=opts.pdeathsig, name=name, deadline=deadline
        )
    except StartError as exc:
        typed = _typed(exc, opts.netns)
        if typed is exc:
            raise
        raise typed from exc
    try:
        addresses = netns_addresses(opts.netns, opts.userns_path, deadline)
    except BaseException as exc:
        process.stop(0)
        if isinstance(exc, OSError):
            raise StartError(f"cannot read the addresses of netns {opts.netns}: {exc}") from exc
        raise
    log.debug("%s ready in %.1f ms", name, (time.monotonic() - started) * 1e3)
    return SetupResult(
        process, addresses, pasta_args.dns_forward_ips, pasta_args.map_guest_addr_ips
    )


def _check(opts: SetupOptions) -> None:
    paths = {"netns": opts.netns}
    if opts.userns_path is not None:
        paths["userns_path"] = opts.userns_path
    for name, value in paths.items():
        if not isinstance(value, str) or not value or "\0" in value:
            raise OptionError(f"invalid {name} {value!r}")
    for option in [*opts.config.pasta_options, *opts.extra_options]:
        if not isinstance(option, str) or "\0" in option:
            raise OptionError(f"invalid pasta option {option!r}")
    if opts.addressing not in ("host", "slirp4netns"):
        raise OptionError(f"invalid addressing {opts.addressing!r}: use 'host' or 'slirp4netns'")
    timeout = opts.ready_timeout
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or not 0 < timeout <= MAX_READY_TIMEOUT
    ):
        raise OptionError(
            f"invalid ready_timeout {timeout!r}: must be over 0 and at most {MAX_READY_TIMEOUT} s"
        )


_SYSLOG_NOISE = re.compile(r"^Failed to send \d+ bytes to syslog\n", re.MULTILINE)

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
    """``exc`` as the error type that fits pasta's message, with the fix named."""
    text = str(exc)
    for pattern, kind, fix in _FIXES:
        found = pattern.search(text)
        if found is not None:
            return kind(f"{BINARY_NAME} for netns {netns}: {found.group(0).strip()} ({fix})")
    return exc


def _without_syslog_noise(text: str) -> str:
    return _SYSLOG_NOISE.sub("", text)


def _same_families(addresses: list[IPAddress], configured: list[IPAddress]) -> list[IPAddress]:
    """``addresses`` of the families the namespace has an address of (podman's filter)."""
    families = {address.version for address in configured}
    return [address for address in addresses if address.version in families]
