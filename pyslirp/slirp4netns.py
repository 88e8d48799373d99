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
import dataclasses
import os
import socket
import time
import warnings
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Network

from ._spawn import lib
from .addresses import DEFAULT_SUBNET
from .apisocket import request_steps
from .argv import BINARY_NAME, EXIT_FD, NETNS_FD, READY_FD, build_argv
from .errors import OptionError, StartError
from .features import probe_features
from .gostrconv import go_quote
from .helper import Helper, start_error
from .mounttemplate import MountPaths, MountTemplate
from .options import SetupOptions, check_fd, check_path, fd_of
from .ports import PortMapping, slirp4netns_hostfwd_args
from .process import DEVNULL, STEPS, Child, FdLike, SpawnPlan, file_id, same_file
from .rootlessport import check_tmp_dir, prepare_rootlessport, rootlessport_plan, start_rootlessport
from .steps import Steps, drive, drive_all

__all__ = ["SetupOptions", "SetupPlan", "SetupResult", "close_all", "setup"]

ACCEPT_DAD = "/proc/sys/net/ipv6/conf/default/accept_dad"
SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path), the terminating NUL included
HELPER_UMASK = 0o077  # the API socket slirp4netns makes is reachable by our uid only
STALE_EXE, STALE_MOUNTS = STEPS[lib.PYSLIRP_STEP_STALE_EXE], STEPS[lib.PYSLIRP_STEP_STALE_MOUNTS]


class SetupResult:
    """A running slirp4netns (as Go's ``SetupResult``) and the helpers it needs.

    Owns them as a file object owns its fd: :meth:`close` (or ``with``) stops and reaps
    them, :meth:`detach` gives them up on purpose, and a result dropped while it still
    owns them warns (``ResourceWarning``) and kills them.
    """

    rootlessport: Helper | None = None
    _api_socket_inode: tuple[int, int] | None = None  # (st_dev, st_ino) once seen
    _closing = False

    def __init__(
        self, subnet: IPv4Network, ipv6: bool, api_socket: str | None, label: str = BINARY_NAME
    ) -> None:
        self.subnet = subnet
        self.ipv6 = ipv6
        self.api_socket = api_socket
        self.slirp4netns = Helper(BINARY_NAME, label=label)
        self._closed = False

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


def setup(opts: SetupOptions) -> SetupResult:
    """Start slirp4netns for ``opts.netns``, wait until it is ready, publish the ports.

    Raises :class:`~pyslirp.OptionError` (and its siblings) before anything is spawned,
    :class:`~pyslirp.StartError` or :class:`~pyslirp.ReadyTimeout` when slirp4netns does
    not come up, and :class:`~pyslirp.PortForwardError` when a port cannot be published.
    On any error, Ctrl-C included, nothing is left behind: no process, fd, socket file
    or changed sysctl. What does not change from one network to the next is worked out
    once (see :class:`SetupPlan`).
    """
    plan = _kept_plan(opts)
    try:
        return plan._setup(opts, opts.netns, opts.slirp4netns_exit_pipe_r)
    except _StalePlan:
        pass  # its binary moved: once more, with a new plan
    return _new_plan(opts)._setup(opts, opts.netns, opts.slirp4netns_exit_pipe_r)


def setup_steps(opts: SetupOptions) -> Steps[SetupResult]:
    """:func:`setup` as steps (see :mod:`pyslirp.steps`): all its waits are fds.

    The result exists before anything is made; interrupted at any point (an exception
    thrown in at a wait: a cancellation), it is closed at once (SIGKILL) and the error
    goes on.
    """
    plan = _kept_plan(opts)
    try:
        return (yield from plan._steps(opts))
    except _StalePlan:
        pass  # its binary moved: once more, with a new plan
    return (yield from _new_plan(opts)._steps(opts))


class _StalePlan(StartError):
    """A kept plan's binary was replaced (seen by the spawn call, which then spawned
    nothing): the setup is made again with a new plan. Made again once only: should the
    second go find it changed again, this is what it raises."""

    def __init__(self) -> None:
        super().__init__(
            f"{BINARY_NAME}'s binary or a mount it uses changed while it started: try again"
        )


class _StaleTemplate(_StalePlan):
    """The template mount namespace is older than a mount of one of slirp4netns's paths
    (seen by the spawn call, which then spawned nothing): the setup is made again in a
    new template."""


class SetupPlan:
    """What :func:`setup` decides once for networks set up alike, so that each
    :meth:`setup` does only the per-network work: the options checked, slirp4netns found
    and its features probed, its argv and spawn arguments built (as C data).

    ``SetupPlan(opts)`` takes everything from ``opts`` but what :meth:`setup` is given
    for each network: ``netns``, ``container_id``, ``ports`` and the exit pipes. :func:`setup`
    keeps plans of its own, looked up by the options' value; it makes a new one when the
    binary it found is replaced (another inode or mtime at that path) or ``$PATH`` or
    ``$CONTAINERS_HELPER_BINARY_DIR`` change. A plan you hold never looks again: make a
    new one when you change those.
    """

    def __init__(self, opts: SetupOptions) -> None:
        config, network = opts.config, opts.network
        self._opts = opts
        self._kept = False  # True: setup() keeps it, and checks it is current each time
        self.euid = os.geteuid()
        self.subnet = network.cidr or DEFAULT_SUBNET
        self.ipv6 = network.enable_ipv6
        self._env = _binary_env()
        self.binary = config.find_network_cmd()
        self._exe_id = file_id(self.binary)  # a kept plan's spawns check it is still so
        self._api = bool(opts.ports) and network.port_handler == "slirp4netns"
        api_socket = None
        if self._api:
            api_socket = _api_socket_path(config.tmp_dir, opts.container_id)
            _check_api_socket(api_socket)
        self._rootlessport: str | None = None  # its binary, when it publishes the ports
        self._rootlessport_plans: dict[bool, SpawnPlan] = {}  # by: the caller's exit pipe?
        if opts.ports and network.port_handler == "rootlesskit":
            check_tmp_dir(config.tmp_dir)
            self._rootlessport = config.find_helper_binary("rootlessport")  # before any spawn
        argv = build_argv(
            self.binary,
            network,
            probe_features(self.binary),
            netns=opts.netns,
            no_pivot_root=config.no_pivot_root,
            exit_fd=True,
            api_socket=api_socket,
            userns_path=opts.userns_path,
        )
        self.argv = argv
        self._netns_at = len(argv) - 2  # ... "--netns-type=path", NETNS, "tap0"
        self._api_socket_at = argv.index("--api-socket") + 1 if self._api else -1
        self._caller_exit = opts.slirp4netns_exit_pipe_r is not None
        # Without a private mount namespace the sandbox's pivot_root unmounts the host's
        # /run/netns/* (a shared mount). Making one takes root, or the user namespace that
        # slirp4netns is started in when userns_path is given.
        private_mounts = "--enable-sandbox" in argv and (
            self.euid == 0 or opts.userns_path is not None
        )
        # As root, it joins this process's template mount namespace instead, where the
        # netns path does not exist: the netns is handed over as fd 5. Rootless, the
        # private copy is made in the user namespace: a less privileged one, whose copies
        # of the host's shared mounts are slaves. (See pyslirp.mounttemplate.)
        # An API socket is made in tmp_dir (whatever the container id).
        self._mount_paths = MountPaths([self.binary, *([config.tmp_dir] if self._api else [])])
        self._in_template = (
            private_mounts and opts.userns_path is None and self._template() is not None
        )
        if self._in_template:
            argv[self._netns_at] = f"/proc/self/fd/{NETNS_FD}"
        try:
            self._spawn = SpawnPlan(
                argv,
                fds={EXIT_FD: None} if self._caller_exit else None,  # given per setup
                check_exit_fd=EXIT_FD if self._caller_exit else None,
                ready_fd=READY_FD,
                exit_fd=None if self._caller_exit else EXIT_FD,
                stdin=DEVNULL,
                log=True,
                umask=HELPER_UMASK,
                pdeathsig=opts.pdeathsig,
                private_mounts=private_mounts and not self._in_template,
                netns=opts.netns if self._in_template else None,  # each setup's, per setup
                pass_netns=NETNS_FD if self._in_template else None,
                # Started inside the user namespace, as podman's rootless slirp4netns is:
                # from outside it, slirp4netns 1.2.0's sandbox fails at setegid(0).
                userns=opts.userns_path,
                # IPv6 DAD would keep tap0's address tentative for 2-4 s: off while it is
                # made (in each setup's netns).
                hold_sysctl=(opts.netns, ACCEPT_DAD, "0") if self.ipv6 else None,
                template_paths=self._mount_paths if self._in_template else None,
            )
        except OSError as exc:
            raise start_error(f"cannot start {self.binary}", exc) from exc

    def current(self) -> bool:
        """Whether the binary found is still the one at its path, and ``$PATH`` and
        ``$CONTAINERS_HELPER_BINARY_DIR`` are as they were (what :func:`setup` checks)."""
        return _binary_env() == self._env and same_file(self.binary, self._exe_id)

    def setup(
        self,
        netns: str,
        *,
        container_id: str | None = None,
        ports: Sequence[PortMapping] | None = None,
        slirp4netns_exit_pipe_r: FdLike | None = None,
        rootless_port_exit_pipe_r: FdLike | None = None,
    ) -> SetupResult:
        """:func:`setup` for ``netns`` with this plan: its options, with these values in
        place of its own; the same errors, and nothing left behind. A plan made with
        ports publishes some in each setup (its own, or ``ports``), one made without
        none."""
        opts = self._opts
        if (
            container_id is None
            and ports is None
            and rootless_port_exit_pipe_r is None
            and self._rootlessport is None
        ):
            if type(netns) is not str or not netns or "\0" in netns:
                check_path("netns", netns)
        else:
            if ports is not None and bool(ports) != bool(opts.ports):
                raise OptionError(
                    f"ports {list(ports)!r}: this plan was made "
                    + ("with ports: each setup publishes some" if opts.ports else "without ports")
                )
            opts = dataclasses.replace(
                opts,
                netns=netns,
                container_id=opts.container_id if container_id is None else container_id,
                ports=opts.ports if ports is None else ports,
                slirp4netns_exit_pipe_r=slirp4netns_exit_pipe_r,
                rootless_port_exit_pipe_r=rootless_port_exit_pipe_r,
            )
        try:
            return self._setup(opts, netns, slirp4netns_exit_pipe_r)
        except _StaleTemplate:
            self._template()  # made anew: once more, in it
        return self._setup(opts, netns, slirp4netns_exit_pipe_r)

    def _setup(self, opts: SetupOptions, netns: str, exit_r: FdLike | None) -> SetupResult:
        """The setup sequence, waited for in this thread (in C, without the GIL): start,
        ready, publish. :meth:`_steps` is the same sequence for other drivers."""
        deadline = time.monotonic() + opts.ready_timeout
        result = self._start(opts, netns, exit_r)
        try:
            payload = self._prepare_rootlessport(result, opts)
            result.slirp4netns.wait_ready(deadline)
            if opts.ports:
                drive(self._publish_steps(result, opts, deadline, payload))
        except BaseException:
            result.close(timeout=0)
            raise
        return result

    def _steps(self, opts: SetupOptions) -> Steps[SetupResult]:
        deadline = time.monotonic() + opts.ready_timeout
        result = self._start(opts, opts.netns, opts.slirp4netns_exit_pipe_r)
        try:
            payload = self._prepare_rootlessport(result, opts)
            yield from result.slirp4netns.ready_steps(deadline)
            yield from self._publish_steps(result, opts, deadline, payload)
        except BaseException:
            result.close(timeout=0)
            raise
        return result

    def _start(self, opts: SetupOptions, netns: str, exit_r: FdLike | None) -> SetupResult:
        """Check this network's values, make its result, and spawn slirp4netns into it:
        ready pipe on fd 3, exit pipe on fd 4 (ours unless the caller gave one), stdout
        and stderr into its log. The spawn call first checks that a kept plan's binary
        is the one it probed, and that the template has the mounts of its paths."""
        if self._caller_exit != (exit_r is not None):
            raise OptionError(
                "slirp4netns_exit_pipe_r must be given to a plan made with one, and only then"
            )
        if exit_r is not None and (type(exit_r) is not int or exit_r < 0):
            check_fd("slirp4netns_exit_pipe_r", exit_r)
            exit_r = fd_of(exit_r)
        api_socket = None
        if self._api:
            api_socket = _api_socket_path(opts.config.tmp_dir, opts.container_id)
            _check_api_socket(api_socket)
        result = SetupResult(
            self.subnet, self.ipv6, api_socket, label=f"{BINARY_NAME} for netns {netns}"
        )
        try:
            helper = result.slirp4netns
            argv: dict[int, str] = {}
            if api_socket is not None:
                _claim_api_socket(helper.child, api_socket)
                argv[self._api_socket_at] = api_socket
            template = self._template(checked=False) if self._in_template else None
            if template is None:
                argv[self._netns_at] = netns
            helper.start(
                self._spawn,
                argv=argv,
                fds={EXIT_FD: exit_r} if exit_r is not None else None,
                sysctl_netns=netns if self.ipv6 else None,
                netns=netns if template is not None else None,
                mount_ns=template,
                exe_id=self._exe_id if self._kept else None,
            )
        except BaseException as exc:
            result.close(timeout=0)
            step = getattr(exc.__cause__, "step", None)
            if step == STALE_EXE:
                raise _StalePlan() from exc
            if step == STALE_MOUNTS:
                raise _StaleTemplate() from exc
            raise
        return result

    def _template(self, *, checked: bool = True) -> MountTemplate | None:
        """The template mount namespace, with the mounts of slirp4netns's binary and its
        API socket's directory (one statx each); None before Linux 6.8. Unless
        ``checked``, the latest as it is: the spawn call checks it."""
        paths = self._mount_paths
        try:
            return paths.template() if checked else paths.latest()
        except OSError as exc:
            raise start_error(f"cannot make a mount namespace for {BINARY_NAME}", exc) from exc

    def _prepare_rootlessport(self, result: SetupResult, opts: SetupOptions) -> bytes | None:
        """rootlessport's handle (under ``result``), private directory and config, when it
        publishes the ports: made while slirp4netns starts."""
        if self._rootlessport is None:
            return None
        result.rootlessport = Helper("rootlessport")
        return prepare_rootlessport(result.rootlessport, opts, result.subnet, None)

    def _publish_steps(
        self, result: SetupResult, opts: SetupOptions, deadline: float, payload: bytes | None
    ) -> Steps[None]:
        """Publish the ports, through slirp4netns's API socket or rootlessport (given its
        config, ``payload``)."""
        if result.api_socket is not None:
            with contextlib.suppress(OSError):  # missing: the requests below say so
                st = os.stat(result.api_socket)
                result._api_socket_inode = (st.st_dev, st.st_ino)
            for mapping in opts.ports:
                for hostfwd in slirp4netns_hostfwd_args(mapping):
                    yield from request_steps(result.api_socket, "add_hostfwd", hostfwd, deadline)
        binary, helper = self._rootlessport, result.rootlessport
        if binary is not None and helper is not None and payload is not None:
            caller_exit = opts.rootless_port_exit_pipe_r is not None
            plan = self._rootlessport_plans.get(caller_exit)
            if plan is None:
                plan = self._rootlessport_plans[caller_exit] = rootlessport_plan(binary, opts)
            yield from start_rootlessport(helper, plan, opts, payload, deadline)


_PLANS_KEPT = 64
_plans: dict[int, SetupPlan] = {}  # by their options' plan_hash


def forget_plans() -> None:
    """Drop the plans :func:`setup` keeps (the next setups make new ones)."""
    _plans.clear()


def _kept_plan(opts: SetupOptions) -> SetupPlan:
    """The plan kept from an earlier setup alike (made with this $PATH and
    $CONTAINERS_HELPER_BINARY_DIR), else a new one. The spawn call checks that its binary
    is still the one it probed."""
    plan = _plans.get(opts.plan_hash)
    if (
        plan is None
        or plan._opts.plan_key != opts.plan_key
        or plan.euid != os.geteuid()
        or plan._env != _binary_env()
    ):
        plan = _new_plan(opts)
    return plan


def _new_plan(opts: SetupOptions) -> SetupPlan:
    plan = SetupPlan(opts)
    plan._kept = True
    if len(_plans) >= _PLANS_KEPT:
        _plans.pop(next(iter(_plans)), None)  # the oldest
    _plans[opts.plan_hash] = plan
    return plan


def _binary_env() -> tuple[str | None, str | None]:
    return os.environ.get("PATH"), os.environ.get("CONTAINERS_HELPER_BINARY_DIR")


def _api_socket_path(tmp_dir: str, container_id: str) -> str:
    return os.path.join(tmp_dir, f"{container_id}.net")


def _check_api_socket(api_socket: str) -> None:
    if len(os.fsencode(_lock_path(api_socket))) >= SUN_PATH_MAX:
        raise OptionError(
            f"api socket path {go_quote(api_socket)} is too long "
            f"(a unix socket path must be under {SUN_PATH_MAX - 5} bytes)"
        )


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
