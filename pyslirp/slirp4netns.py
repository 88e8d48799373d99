"""``setup()``: slirp4netns for a network namespace, ready and with its ports published.

The Python counterpart of podman's ``libnetwork/slirp4netns.Setup``: the same argv, fds
and error wording, but every input is checked before anything is spawned, readiness and
death are noticed at once, and a failure at any step leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

from .addresses import BINARY_NAME, DEFAULT_SUBNET
from .apisocket import request
from .argv import EXIT_FD, READY_FD, build_argv
from .config import Config
from .errors import OptionError, StartError
from .exitpipe import check_exit_pipe
from .features import probe_features
from .gostrconv import go_quote
from .options import NetworkOptions, parse_options
from .ports import PortMapping, slirp4netns_hostfwd_args
from .ready import wait_ready
from .rootlessport import BINARY_NAME as ROOTLESSPORT
from .rootlessport import RootlessPort, start_rootlessport
from .signals import signals_deferred
from .spawn import DEVNULL, Child, FdLike, spawn
from .sysctl import ACCEPT_DAD, open_sysctl
from .tmpfiles import anonymous_file, read_tail

__all__ = ["SetupOptions", "SetupResult", "setup"]

log = logging.getLogger("pyslirp")

SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path), the terminating NUL included


@dataclass(frozen=True, kw_only=True)
class SetupOptions:
    """What :func:`setup` needs; the fields of Go's ``SetupOptions`` in snake_case.

    ``netns`` is the path of the network namespace (Go's ``--netns-type=path``). The exit
    pipes are read ends owned by the caller: closing the write end stops the helper.
    ``userns_path`` is the user namespace owning ``netns`` when the caller is outside it.
    ``ready_timeout`` bounds the whole setup, ports included.
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


class SetupResult:
    """A running slirp4netns (as Go's ``SetupResult``) that :meth:`close` tears down."""

    def __init__(
        self, child: Child, subnet: IPv4Network, ipv6: bool, log_fd: int, api_socket: str | None
    ) -> None:
        self.child = child
        self.subnet = subnet
        self.ipv6 = ipv6
        self.api_socket = api_socket
        self.rootlessport: RootlessPort | None = None
        self._log_fd = log_fd
        self._closed = False

    @property
    def pid(self) -> int:
        """The pid of slirp4netns."""
        return self.child.pid

    @property
    def returncode(self) -> int | None:
        """None while slirp4netns runs; its exit status (``-N``: signal N) once it died."""
        return self.child.poll()

    def log(self) -> str:
        """What slirp4netns has written to stdout and stderr (the last 64 KiB)."""
        return read_tail(self._log_fd) if not self._closed else ""

    def close(self, timeout: float = 5.0) -> None:
        """Stop rootlessport and slirp4netns (SIGKILL after ``timeout``), reap them, and
        remove what setup created. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.rootlessport is not None:
                self.rootlessport.close(timeout)
        finally:
            self._stop_slirp4netns(timeout)

    def _stop_slirp4netns(self, timeout: float) -> None:
        try:
            self.child.stop(timeout)
        finally:
            if self.api_socket is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.api_socket)
            os.close(self._log_fd)

    def __enter__(self) -> SetupResult:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SetupResult pid={self.pid} subnet={self.subnet} ipv6={self.ipv6}>"


@dataclass(frozen=True)
class _Plan:
    """Everything decided before the spawn."""

    argv: list[str]
    options: NetworkOptions
    api_socket: str | None
    hostfwds: list[dict[str, Any]]
    rootlessport: bool
    private_mounts: bool


def setup(opts: SetupOptions) -> SetupResult:
    """Start slirp4netns for ``opts.netns``, wait until it is ready, publish the ports.

    Raises :class:`~pyslirp.OptionError` (and its siblings) before anything is spawned,
    :class:`~pyslirp.StartError` or :class:`~pyslirp.ReadyTimeout` when slirp4netns does
    not come up, and :class:`~pyslirp.PortForwardError` when a port cannot be published.
    On any error nothing is left behind: no process, fd, socket file or changed sysctl.
    """
    started = time.monotonic()
    deadline = started + opts.ready_timeout
    plan = _plan(opts)
    result: SetupResult | None = None
    log_fd = ready_r = -1
    try:
        if plan.api_socket is not None:
            _claim_api_socket(plan.api_socket)
        # Ctrl-C waits until a handle owns what was just made: then close() undoes it.
        with signals_deferred():
            log_fd = anonymous_file(opts.config.tmp_dir)
        with _accept_dad_off(opts.netns, plan.options.enable_ipv6):
            with signals_deferred():
                result, ready_r = _start(opts, plan, log_fd)
            name = f"{BINARY_NAME} for netns {opts.netns}"
            wait_ready(name, result.child, ready_r, deadline, result.log)
        log.debug("%s ready in %.1f ms", BINARY_NAME, (time.monotonic() - started) * 1e3)
        for hostfwd in plan.hostfwds:
            assert plan.api_socket is not None
            request(plan.api_socket, "add_hostfwd", hostfwd, deadline)
        if plan.rootlessport:
            result.rootlessport = start_rootlessport(opts, result.subnet, None, deadline)
    except BaseException:
        if result is not None:
            result.close()
        elif log_fd >= 0:
            os.close(log_fd)
        raise
    finally:
        if ready_r >= 0:
            os.close(ready_r)
    log.debug("setup done in %.1f ms", (time.monotonic() - started) * 1e3)
    return result


def _plan(opts: SetupOptions) -> _Plan:
    config = opts.config
    options = parse_options(config.network_cmd_options, opts.extra_options)
    _check_container_id(opts.container_id)
    if not isinstance(opts.ready_timeout, (int, float)) or opts.ready_timeout <= 0:
        raise OptionError(f"invalid ready_timeout {opts.ready_timeout!r}")
    hostfwds: list[dict[str, Any]] = []
    api_socket = None
    if opts.ports and options.port_handler == "slirp4netns":
        hostfwds = [args for mapping in opts.ports for args in slirp4netns_hostfwd_args(mapping)]
        api_socket = os.path.join(config.tmp_dir, f"{opts.container_id}.net")
        if len(os.fsencode(api_socket)) >= SUN_PATH_MAX:
            raise OptionError(
                f"api socket path {go_quote(api_socket)} is too long "
                f"(a unix socket path must be under {SUN_PATH_MAX} bytes)"
            )
    rootlessport = bool(opts.ports) and options.port_handler == "rootlesskit"
    if rootlessport:
        config.find_helper_binary(ROOTLESSPORT, False)  # missing: fail before any spawn
        if opts.rootless_port_exit_pipe_r is not None:
            check_exit_pipe(ROOTLESSPORT, opts.rootless_port_exit_pipe_r)
    if opts.slirp4netns_exit_pipe_r is not None:
        check_exit_pipe(BINARY_NAME, opts.slirp4netns_exit_pipe_r)
    binary = config.find_network_cmd()
    argv = build_argv(
        binary,
        options,
        probe_features(binary),
        netns=opts.netns,
        no_pivot_root=config.no_pivot_root,
        exit_fd=opts.slirp4netns_exit_pipe_r is not None,
        api_socket=api_socket,
        userns_path=opts.userns_path,
    )
    # Without a private mount namespace the sandbox's pivot_root unmounts the host's
    # /run/netns/* (a shared mount). Making one takes root, or the user namespace that
    # slirp4netns is started in when userns_path is given.
    private_mounts = "--enable-sandbox" in argv and (
        os.geteuid() == 0 or opts.userns_path is not None
    )
    return _Plan(argv, options, api_socket, hostfwds, rootlessport, private_mounts)


def _claim_api_socket(path: str) -> None:
    """Remove a stale API socket left by a slirp4netns that died; refuse a live one,
    which another setup with the same container id is using."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as probe:
        try:
            probe.connect(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        except ConnectionRefusedError:
            os.unlink(path)  # nobody listens: stale
            return
        except OSError as exc:
            raise StartError(f"cannot use api socket {path}: {exc}") from exc
    raise StartError(f"api socket {path} is in use: another slirp4netns runs for this container id")


def _check_container_id(container_id: object) -> None:
    if (
        not isinstance(container_id, str)
        or container_id in ("", ".", "..")
        or "/" in container_id
        or "\0" in container_id
    ):
        raise OptionError(f"invalid container id {container_id!r}")


def _start(opts: SetupOptions, plan: _Plan, log_fd: int) -> tuple[SetupResult, int]:
    """Spawn slirp4netns; return its result handle and the read end of its ready pipe."""
    fds: dict[int, FdLike] = {}
    if opts.slirp4netns_exit_pipe_r is not None:
        fds[EXIT_FD] = opts.slirp4netns_exit_pipe_r
    ready_r, ready_w = os.pipe()
    fds[READY_FD] = ready_w
    log.debug("starting %s", plan.argv)
    try:
        child = spawn(
            plan.argv,
            fds=fds,
            stdin=DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            pdeathsig=opts.pdeathsig,
            private_mounts=plan.private_mounts,
            # Started inside the user namespace, as podman's rootless slirp4netns is:
            # from outside it, slirp4netns 1.2.0's sandbox fails at setegid(0).
            userns=opts.userns_path,
        )
    except BaseException as exc:
        os.close(ready_r)
        if isinstance(exc, OSError):
            raise StartError(f"cannot start {plan.argv[0]}: {exc}") from exc
        raise
    finally:
        os.close(ready_w)  # EOF on the ready pipe must mean slirp4netns closed it
    subnet = plan.options.cidr or DEFAULT_SUBNET
    return SetupResult(child, subnet, plan.options.enable_ipv6, log_fd, plan.api_socket), ready_r


@contextlib.contextmanager
def _accept_dad_off(netns: str, enabled: bool) -> Iterator[None]:
    """Turn off IPv6 DAD for interfaces created meanwhile in ``netns`` (it delays the
    address 2-4 s), then put the old value back."""
    fd = None
    if enabled:
        try:
            fd = open_sysctl(netns, ACCEPT_DAD)
        except OSError as exc:
            # slirp4netns will fail on this netns itself, with a better message.
            log.debug("cannot open accept_dad in %s: %s", netns, exc)
    if fd is None:
        yield
        return
    old = b"0"
    try:
        old = os.pread(fd, 32, 0).strip()
        if old != b"0":
            os.pwrite(fd, b"0", 0)
        yield
    finally:
        try:
            if old != b"0":
                os.pwrite(fd, old, 0)
        except OSError as exc:
            log.debug("cannot restore accept_dad in %s: %s", netns, exc)
        finally:
            os.close(fd)
