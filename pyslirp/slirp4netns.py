"""``setup()``: slirp4netns for a network namespace, ready and with its ports published.

The Python counterpart of podman's ``libnetwork/slirp4netns.Setup``: the same argv, fds
and error wording, but every input is checked before anything is spawned, readiness and
death are noticed at once, and a failure at any step leaves nothing behind.

Ownership: the :class:`SetupResult` exists before anything is made, and each helper is
put under it before it is spawned (see :mod:`pyslirp.helper`). Unless the caller passes
its own exit pipes, the helpers exit when this process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

from .addresses import DEFAULT_SUBNET
from .apisocket import request_steps
from .argv import BINARY_NAME, EXIT_FD, NETNS_FD, READY_FD, build_argv, with_netns
from .errors import OptionError, StartError
from .exitpipe import check_exit_pipe
from .features import probe_features
from .gostrconv import go_quote
from .helper import Helper, start_error
from .mounttemplate import MountTemplate, template_for
from .options import SetupOptions, fd_of
from .ports import slirp4netns_hostfwd_args
from .process import DEVNULL, Child
from .rootlessport import check_tmp_dir, start_rootlessport
from .steps import Steps, drive, drive_all

__all__ = ["SetupOptions", "SetupResult", "close_all", "setup"]

logger = logging.getLogger("pyslirp")

ACCEPT_DAD = "/proc/sys/net/ipv6/conf/default/accept_dad"
SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path), the terminating NUL included
HELPER_UMASK = 0o077  # the API socket slirp4netns makes is reachable by our uid only


class SetupResult:
    """A running slirp4netns (as Go's ``SetupResult``) and the helpers it needs.

    Owns them as a file object owns its fd: :meth:`close` (or ``with``) stops and reaps
    them, :meth:`detach` gives them up on purpose, and a result dropped while it still
    owns them warns (``ResourceWarning``) and kills them.
    """

    def __init__(
        self, subnet: IPv4Network, ipv6: bool, api_socket: str | None, label: str = BINARY_NAME
    ) -> None:
        self.subnet = subnet
        self.ipv6 = ipv6
        self.api_socket = api_socket
        self.slirp4netns = Helper(BINARY_NAME, label=label)
        self.rootlessport: Helper | None = None
        self._api_socket_inode: tuple[int, int] | None = None
        self._closed = False
        self._closing = False

    @property
    def child(self) -> Child:
        """slirp4netns's process handle."""
        return self.slirp4netns.child

    @property
    def pid(self) -> int:
        """The pid of slirp4netns."""
        return self.slirp4netns.pid

    @property
    def returncode(self) -> int | None:
        """None while slirp4netns runs; its exit status (``-N``: signal N) once it died."""
        return self.slirp4netns.returncode

    def log(self) -> str:
        """What slirp4netns has written to stdout and stderr (the last 64 KiB)."""
        return self.slirp4netns.log()

    def close(self, timeout: float = 5.0) -> None:
        """Stop rootlessport and slirp4netns (SIGKILL after ``timeout``), reap them, and
        remove what setup created. Safe to call more than once. In a forked child process
        this only closes that process's copies of the fds: the helpers are its parent's."""
        drive(self.close_steps(timeout))

    async def aclose(self, timeout: float = 5.0) -> None:
        """:meth:`close` without blocking the event loop: the exits are awaited there."""
        from .aio import run_steps

        await run_steps(self.close_steps(timeout))

    def close_steps(self, timeout: float = 5.0) -> Steps[None]:
        """:meth:`close` as steps (see :mod:`pyslirp.steps`)."""
        if self._closed:
            return
        self._closing = True  # interrupted from here on, __del__ finishes the job quietly
        failure = None
        if self.rootlessport is not None:
            try:
                yield from self.rootlessport.close_steps(timeout)
            except GeneratorExit:
                raise  # abandoned half way: no more waits, the finalizers kill
            except BaseException as exc:  # slirp4netns is stopped all the same
                failure = exc
        yield from self.slirp4netns.close_steps(timeout, then=self._remove_api_socket)
        self._closed = True
        if failure is not None:
            raise failure

    def detach(self) -> int:
        """Give up ownership and return slirp4netns's pid: the helpers keep running and
        are no longer stopped by this result. Without the caller's own exit pipes they
        still exit with this process (pyslirp keeps their exit pipes open until then)."""
        self._closed = True
        if self.rootlessport is not None:
            self.rootlessport.detach()
        return self.slirp4netns.detach()

    def _remove_api_socket(self) -> None:
        """Unlink the API socket and its lock file while we hold the lock, the socket
        only if ours made it (its inode, if setup got to see it)."""
        if self.api_socket is None or self.child.fd("lock_fd") < 0:
            return
        with contextlib.suppress(OSError):
            st = os.stat(self.api_socket)
            seen = self._api_socket_inode
            if (st.st_dev, st.st_ino) == seen or (seen is None and self.pid):
                os.unlink(self.api_socket)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_lock_path(self.api_socket))

    def __enter__(self) -> SetupResult:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> SetupResult:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or not self.child.owned_here or not self.pid:
            return  # (no _closed: __init__ itself was interrupted, before any spawn)
        if not self._closing:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=2)
        self._closed = True
        for helper in (self.rootlessport, self.slirp4netns):
            if helper is not None:
                helper.kill()
        self._remove_api_socket()
        for helper in (self.rootlessport, self.slirp4netns):
            if helper is not None:
                helper.release()

    def __repr__(self) -> str:
        return f"<SetupResult pid={self.pid} subnet={self.subnet} ipv6={self.ipv6}>"


def close_all(results: Iterable[SetupResult], timeout: float = 5.0) -> None:
    """Close many networks at once: each is stopped as :meth:`SetupResult.close` stops
    it (rootlessport first), but their waits overlap, so the kernel's teardowns do too:
    100 take about as long as a few. The first error is raised once all are closed."""
    drive_all(result.close_steps(timeout) for result in results)


@dataclass(frozen=True)
class _Plan:
    """Everything decided before the spawn."""

    argv: list[str]
    api_socket: str | None
    hostfwds: list[dict[str, Any]]
    rootlessport: str | None  # its binary, when it publishes the ports
    private_mounts: bool


def setup(opts: SetupOptions) -> SetupResult:
    """Start slirp4netns for ``opts.netns``, wait until it is ready, publish the ports.

    Raises :class:`~pyslirp.OptionError` (and its siblings) before anything is spawned,
    :class:`~pyslirp.StartError` or :class:`~pyslirp.ReadyTimeout` when slirp4netns does
    not come up, and :class:`~pyslirp.PortForwardError` when a port cannot be published.
    On any error, Ctrl-C included, nothing is left behind: no process, fd, socket file
    or changed sysctl.
    """
    return drive(setup_steps(opts))


def setup_steps(opts: SetupOptions) -> Steps[SetupResult]:
    """:func:`setup` as steps (see :mod:`pyslirp.steps`): all its waits are fds.

    The result exists before anything is made; interrupted at any point (an exception
    thrown in at a wait: a cancellation), it is closed at once (SIGKILL) and the error
    goes on.
    """
    started = time.monotonic()
    deadline = started + opts.ready_timeout
    plan = _plan(opts)
    network = opts.network
    result = SetupResult(
        network.cidr or DEFAULT_SUBNET,
        network.enable_ipv6,
        plan.api_socket,
        label=f"{BINARY_NAME} for netns {opts.netns}",
    )
    try:
        slirp4netns = result.slirp4netns
        if plan.api_socket is not None:
            _claim_api_socket(slirp4netns.child, plan.api_socket)
        _spawn(slirp4netns, opts, plan)
        try:
            yield from slirp4netns.ready_steps(deadline)
        finally:
            slirp4netns.child.restore()  # accept_dad: tap0 has its addresses now
        logger.debug("%s ready in %.1f ms", BINARY_NAME, (time.monotonic() - started) * 1e3)
        if plan.api_socket is not None:
            with contextlib.suppress(OSError):  # missing: the requests below say so
                st = os.stat(plan.api_socket)
                result._api_socket_inode = (st.st_dev, st.st_ino)
        for hostfwd in plan.hostfwds:
            assert plan.api_socket is not None
            yield from request_steps(plan.api_socket, "add_hostfwd", hostfwd, deadline)
        if plan.rootlessport is not None:
            result.rootlessport = Helper("rootlessport")
            yield from start_rootlessport(
                result.rootlessport, plan.rootlessport, opts, result.subnet, None, deadline
            )
    except BaseException:
        result.close(timeout=0)
        raise
    logger.debug("setup done in %.1f ms", (time.monotonic() - started) * 1e3)
    return result


def _plan(opts: SetupOptions) -> _Plan:
    config = opts.config
    network = opts.network
    hostfwds: list[dict[str, Any]] = []
    api_socket = None
    if opts.ports and network.port_handler == "slirp4netns":
        hostfwds = [args for mapping in opts.ports for args in slirp4netns_hostfwd_args(mapping)]
        api_socket = os.path.join(config.tmp_dir, f"{opts.container_id}.net")
        if len(os.fsencode(_lock_path(api_socket))) >= SUN_PATH_MAX:
            raise OptionError(
                f"api socket path {go_quote(api_socket)} is too long "
                f"(a unix socket path must be under {SUN_PATH_MAX - 5} bytes)"
            )
    rootlessport = None
    if opts.ports and network.port_handler == "rootlesskit":
        check_tmp_dir(config.tmp_dir)
        rootlessport = config.find_helper_binary("rootlessport")  # missing: before any spawn
        if opts.rootless_port_exit_pipe_r is not None:
            check_exit_pipe("rootlessport", opts.rootless_port_exit_pipe_r)
    if opts.slirp4netns_exit_pipe_r is not None:
        check_exit_pipe(BINARY_NAME, opts.slirp4netns_exit_pipe_r)
    binary = config.find_network_cmd()
    argv = build_argv(
        binary,
        network,
        probe_features(binary),
        netns=opts.netns,
        no_pivot_root=config.no_pivot_root,
        exit_fd=True,
        api_socket=api_socket,
        userns_path=opts.userns_path,
    )
    # Without a private mount namespace the sandbox's pivot_root unmounts the host's
    # /run/netns/* (a shared mount). Making one takes root, or the user namespace that
    # slirp4netns is started in when userns_path is given.
    private_mounts = "--enable-sandbox" in argv and (
        os.geteuid() == 0 or opts.userns_path is not None
    )
    return _Plan(argv, api_socket, hostfwds, rootlessport, private_mounts)


def _lock_path(api_socket: str) -> str:
    return api_socket + ".lock"


def _claim_api_socket(child: Child, path: str) -> None:
    """Make ``path`` ours for as long as ``child``'s handle lives.

    A lock file beside the socket, held by the handle, tells a live setup with the same
    container id from a stale socket left by one that died (whose lock died with it): the
    first is refused, the second removed. A socket a non-pyslirp slirp4netns listens on
    is refused too.
    """
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        child.lock(_lock_path(path))
    except BlockingIOError:
        raise StartError(
            f"api socket {path} is in use: another slirp4netns runs for this container id"
        ) from None
    except OSError as exc:
        raise start_error(f"cannot use api socket {path}", exc) from exc
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as probe:
            probe.setblocking(False)  # a full backlog (BlockingIOError) is a listener too
            probe.connect(path)
    except (FileNotFoundError, NotADirectoryError):
        return  # no socket there: the path is ours
    except ConnectionRefusedError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # nobody listens and no setup holds it: stale
        return
    except BlockingIOError:
        pass
    except OSError as exc:
        raise start_error(f"cannot use api socket {path}", exc) from exc
    raise StartError(f"api socket {path} is in use by a slirp4netns pyslirp did not start")


def _spawn(helper: Helper, opts: SetupOptions, plan: _Plan) -> None:
    """Spawn slirp4netns into ``helper``: ready pipe on fd 3, exit pipe on fd 4 (ours
    unless the caller gave one), stdout and stderr into its log; in this process's
    template mount namespace where it has one, with the netns on fd 5."""
    caller_exit = opts.slirp4netns_exit_pipe_r
    argv = plan.argv
    template = _mount_template(plan) if plan.private_mounts and opts.userns_path is None else None
    if template is not None:  # the netns path does not exist there: hand it over by fd
        argv = with_netns(argv, f"/proc/self/fd/{NETNS_FD}")
    logger.debug("starting %s", argv)
    helper.spawn(
        argv,
        fds={EXIT_FD: fd_of(caller_exit)} if caller_exit is not None else None,
        ready_fd=READY_FD,
        exit_fd=EXIT_FD if caller_exit is None else None,
        stdin=DEVNULL,
        log=True,
        umask=HELPER_UMASK,
        pdeathsig=opts.pdeathsig,
        # Rootless, the private copy is made in the user namespace: a less privileged
        # one, whose copies of the host's shared mounts are slaves.
        private_mounts=plan.private_mounts and template is None,
        mount_ns=template.fd if template is not None else None,
        netns=opts.netns if template is not None else None,
        pass_netns=NETNS_FD if template is not None else None,
        # Started inside the user namespace, as podman's rootless slirp4netns is:
        # from outside it, slirp4netns 1.2.0's sandbox fails at setegid(0).
        userns=opts.userns_path,
        # IPv6 DAD would keep tap0's address tentative for 2-4 s: off while it is made.
        hold_sysctl=(opts.netns, ACCEPT_DAD, "0") if opts.network.enable_ipv6 else None,
    )


def _mount_template(plan: _Plan) -> MountTemplate | None:
    """The template mount namespace slirp4netns joins (see :mod:`pyslirp.mounttemplate`),
    with the mounts of its binary and API socket; None: copy the host's per spawn."""
    paths = [plan.argv[0]]
    if plan.api_socket is not None:
        paths.append(os.path.dirname(plan.api_socket))
    try:
        return template_for(paths)
    except OSError as exc:
        raise start_error(f"cannot make a mount namespace for {BINARY_NAME}", exc) from exc
