"""Start helper programs with exactly the process state they need (see ``csrc/spawn.c``).

:func:`spawn` validates everything in Python, then makes one call into C that does
``clone(CLONE_VM|CLONE_VFORK)`` and ``execve``: the cost does not grow with the parent's
memory, and a failure comes back as an :class:`OSError` naming the step that failed.
"""

from __future__ import annotations

import errno
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeAlias, TypeVar

from ._spawn import ffi, lib
from .lookpath import look_path
from .mounttemplate import MountPaths, MountTemplate
from .signals import block_in_this_thread

__all__ = ["DEVNULL", "Child", "spawn"]

DEVNULL = subprocess.DEVNULL
"""Connect a standard stream of the child to ``/dev/null``."""


class HasFileno(Protocol):
    def fileno(self) -> int: ...


StrPath: TypeAlias = "str | bytes | os.PathLike[str] | os.PathLike[bytes]"
FdLike: TypeAlias = "int | HasFileno"
T = TypeVar("T")

STEPS = {
    lib.PYSLIRP_STEP_SIGNALS: "reset signal handlers",
    lib.PYSLIRP_STEP_SETPGID: "setpgid",
    lib.PYSLIRP_STEP_NEW_NAMESPACES: "unshare(new namespaces)",
    lib.PYSLIRP_STEP_SETNS_USER: "setns(user)",
    lib.PYSLIRP_STEP_SETNS_NET: "setns(net)",
    lib.PYSLIRP_STEP_UNSHARE_MOUNTS: "unshare(CLONE_NEWNS)",
    lib.PYSLIRP_STEP_PRIVATE_MOUNTS: "make / private",
    lib.PYSLIRP_STEP_PDEATHSIG: "prctl(PR_SET_PDEATHSIG)",
    lib.PYSLIRP_STEP_FDS: "map fds",
    lib.PYSLIRP_STEP_CLOSE_FDS: "close fds",
    lib.PYSLIRP_STEP_SIGMASK: "empty signal mask",
    lib.PYSLIRP_STEP_EXEC: "exec",
    lib.PYSLIRP_STEP_CLONE: "clone",
    lib.PYSLIRP_STEP_PIPE: "make pipes",
    lib.PYSLIRP_STEP_REAPER: "start the reaper",
    lib.PYSLIRP_STEP_STACK: "map the child's stack",
    lib.PYSLIRP_STEP_MEMFD: "make memfds",
    lib.PYSLIRP_STEP_EXIT_PIPE: "check the exit pipe",
    lib.PYSLIRP_STEP_SETNS_MOUNTS: "setns(mnt)",
    lib.PYSLIRP_STEP_STALE_EXE: "check the executable",
    lib.PYSLIRP_STEP_STALE_MOUNTS: "check the template's mounts",
}


class Child:
    """A spawned process: signalled through its pidfd and reaped the moment it exits.

    The handle exists before the process does: it owns a C slot into which the spawn call
    writes the pid, the pidfd and the parent's ends of the pipes and memfds it made, so
    nothing can come between a clone and its owner. A handle dropped while it still owns
    a live child kills it (see :meth:`detach`); the reaper collects the status either way.
    """

    def __init__(self, args: Sequence[str | bytes]) -> None:
        self.args = list(args)
        slot = lib.pyslirp_slot_new()
        if slot == ffi.NULL:
            raise MemoryError("cannot allocate a child slot")
        self._slot = ffi.gc(slot, lib.pyslirp_slot_drop)

    @property
    def pid(self) -> int:
        """The child's pid (0 before it was spawned)."""
        return int(self._slot.pid)

    @property
    def pidfd(self) -> int:
        """The child's pidfd (readable once it exits); -1 once :meth:`wait` returned."""
        return int(self._slot.pidfd)

    @property
    def owned_here(self) -> bool:
        """Whether this process spawned the child (False in a forked child process)."""
        return bool(self._slot.owner == os.getpid())

    @property
    def returncode(self) -> int | None:
        """Exit status, ``-N`` if killed by signal N, None while running."""
        if not self._slot.exited:
            return None
        return os.waitstatus_to_exitcode(self._slot.status)

    def fd(self, name: SlotFd) -> int:
        """The parent's end of what the spawn made (``ready_fd``, ``log_fd``, ``out_fd``),
        the file :meth:`lock` holds (``lock_fd``), or the pidfd; -1 if none or closed."""
        return int(getattr(self._slot, name))

    def close_fd(self, name: SlotFd) -> None:
        """Close one of the fds the spawn made for this child; the pidfd only once the
        child has been reaped (it has nothing more to tell then)."""
        lib.pyslirp_slot_close(self._slot, ffi.addressof(self._slot, name))

    def track(self, pid: int) -> None:
        """Hold a pidfd of ``pid``, a process the child started, so that its owner can
        wait for it too (:meth:`tracked_pidfds`); ProcessLookupError if it is gone."""
        if lib.pyslirp_slot_add_pidfd(self._slot, pid) < 0:
            raise OSError(ffi.errno, os.strerror(ffi.errno))

    def tracked_pidfds(self) -> list[int]:
        """The pidfds :meth:`track` holds."""
        return [fd for fd in self._slot.extra_pidfds if fd >= 0]

    def ready(self, timeout: float | None = 0.0, grace: float = 0.0) -> int:
        """Whether the child has written its ready byte: ``lib.PYSLIRP_READY_OK``,
        ``_EXITED`` (reaped without writing one), ``_CLOSED`` (its ready pipe at EOF, the
        child not yet reaped) or ``_PENDING``, after waiting up to ``timeout`` seconds
        (None: for ever) with the GIL released; ``_PENDING`` too when a signal came (its
        handler runs on return). At EOF, the exit is waited for up to ``grace`` seconds
        more, within ``timeout``. See ``pyslirp_ready`` in ``csrc/spawn.h``."""
        ms = -1 if timeout is None else math.ceil(max(timeout, 0.0) * 1000)
        state = int(lib.pyslirp_ready(self._slot, ms, math.ceil(grace * 1000)))
        if state < 0:
            if ffi.errno != errno.EINTR:
                raise OSError(ffi.errno, os.strerror(ffi.errno))
            return int(lib.PYSLIRP_READY_PENDING)
        return state

    def release(self) -> None:
        """Close every fd made for the child (a held sysctl put back first), and the
        pidfd too once the child has been reaped; the child itself is left alone."""
        lib.pyslirp_slot_release(self._slot)

    def lock(self, path: str) -> None:
        """Take an exclusive lock on the file ``path`` (created if missing) for as long as
        this handle lives; BlockingIOError if someone else holds it."""
        err = lib.pyslirp_slot_lock(self._slot, os.fsencode(path))
        if err:
            raise OSError(err, os.strerror(err), path)

    def detach(self) -> None:
        """Give up ownership: dropping the handle no longer kills the child."""
        self._slot.detached = 1

    def poll(self) -> int | None:
        """Return the exit status if the child has exited, else None."""
        lib.pyslirp_reap(self._slot)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit and return its status.

        Raises :class:`subprocess.TimeoutExpired` when ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        ms = -1
        while True:
            if deadline is not None:
                ms = math.ceil(max(0, deadline - time.monotonic()) * 1000)
            done = lib.pyslirp_wait(self._slot, ms)  # reaped: its pidfd closed
            if done == 1:
                return os.waitstatus_to_exitcode(self._slot.status)
            if done < 0 and ffi.errno != errno.EINTR:
                raise OSError(ffi.errno, os.strerror(ffi.errno))
            if done == 0 and deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)

    def send_signal(self, sig: int, *, group: bool = False) -> None:
        """Send ``sig`` to the child, and to its process group with ``group``; nothing
        happens once it has exited (its pid cannot have been reused before)."""
        err = lib.pyslirp_signal(self._slot, sig, int(group))
        if err:
            raise OSError(err, os.strerror(err))

    def terminate(self) -> None:
        """Send SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL."""
        self.send_signal(signal.SIGKILL)

    def stop(self, timeout: float) -> int:
        """SIGTERM, then SIGKILL if still running after ``timeout`` s; return the status.

        A child leading a process group gets them with its whole group: a helper killed
        while its own forked child is blocked (slirp4netns's, in ``open()`` of a FIFO
        netns path) would otherwise leave that child running, orphaned.
        """
        group = bool(self._slot.leads_group)
        self.send_signal(signal.SIGTERM, group=group)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL, group=group)
            return self.wait()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wait()

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} returncode={self.returncode} args={self.args!r}>"


SlotFd = Literal["ready_fd", "log_fd", "out_fd", "lock_fd", "pidfd"]


class _LongLivedThread:
    """Runs calls on one thread that lives as long as the process.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that cloned the child exits, so a child
    spawned from a short-lived thread would be killed with it. Children with a death
    signal are therefore cloned here (or on the main thread, which lives as long).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], list[Any], threading.Event]]
        self._queue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def call(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is threading.main_thread():
            return fn()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="pyslirp-spawner", daemon=True
                )
                self._thread.start()
        box: list[T] = []
        done = threading.Event()
        self._queue.put((fn, box, done))
        try:
            done.wait()
        finally:
            done.wait()  # interrupted or not, what fn makes is the caller's to own
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def _serve(self) -> None:
        block_in_this_thread()
        while True:
            fn, box, done = self._queue.get()
            try:
                box.append(fn())
            except BaseException as exc:  # the caller raises it; this thread lives on
                box.append(exc)
            done.set()


_SPAWNER = _LongLivedThread()


def _new_spawner_after_fork() -> None:
    global _SPAWNER
    _SPAWNER = _LongLivedThread()  # a forked child has no spawner thread


os.register_at_fork(after_in_child=_new_spawner_after_fork)


def _fileno(name: str, value: FdLike) -> int:
    if type(value) is int and value >= 0:
        return value
    fd = value if isinstance(value, int) else getattr(value, "fileno", lambda: None)()
    if not isinstance(fd, int) or isinstance(fd, bool):
        raise TypeError(f"{name} must be an fd or have fileno(), not {value!r}")
    if fd < 0:
        raise ValueError(f"{name} must be a non-negative fd, not {fd}")
    return fd


def _arg_bytes(name: str, value: object) -> bytes:
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} must be str, bytes or a path, not {value!r}")
    data = os.fsencode(value)
    if b"\0" in data:
        raise ValueError(f"{name} contains a NUL byte: {value!r}")
    return data


_FS_ENCODING = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def _path_bytes(name: str, value: object) -> bytes:
    """:func:`_arg_bytes`, for a plain str without the Python frames of os.fsencode."""
    if type(value) is str and "\0" not in value:
        return value.encode(*_FS_ENCODING)
    return _arg_bytes(name, value)


def _c_strings(items: Sequence[bytes], keep: list[Any]) -> Any:
    strings = [ffi.new("char[]", item) for item in items]
    keep.extend(strings)
    return ffi.new("char *[]", [*strings, ffi.NULL])


def _source(target: int, value: FdLike | None) -> int:
    """The parent fd behind child fd ``target``: -1 for one given later, PYSLIRP_DEVNULL."""
    if value is None:
        return -1
    if value is DEVNULL:
        return int(lib.PYSLIRP_DEVNULL)
    return _fileno(f"parent fd for child fd {target}", value)


def _child_fd(name: str, value: int | None) -> int:
    if value is None:
        return -1
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative child fd, not {value!r}")
    return value


def spawn(
    argv: Sequence[StrPath],
    *,
    executable: StrPath | None = None,
    fds: Mapping[int, FdLike] | None = None,
    stdin: FdLike | None = None,
    stdout: FdLike | None = None,
    stderr: FdLike | None = None,
    env: Mapping[str, str] | None = None,
    setpgid: bool = True,
    new_netns: bool = False,
    new_userns: bool = False,
    pdeathsig: int = 0,
    private_mounts: bool = False,
    netns: StrPath | int | None = None,
    userns: StrPath | int | None = None,
    mount_ns: FdLike | None = None,
    pass_netns: int | None = None,
    pass_userns: int | None = None,
    ready_fd: int | None = None,
    exit_fd: int | None = None,
    log: bool = False,
    capture_stdout: bool = False,
    input: bytes | None = None,
    umask: int | None = None,
    hold_sysctl: tuple[str, str, str] | None = None,
    child: Child | None = None,
) -> Child:
    """Start ``argv`` with exactly the given fds, namespaces and signal state.

    ``fds`` maps child fd numbers to parent fds (ints or objects with ``fileno()``); only
    those and 0-2 reach the child. ``stdin``/``stdout``/``stderr`` are None (inherit), an
    fd, a file object or :data:`DEVNULL`. ``new_userns``/``new_netns`` give the child new
    namespaces of its own (the user namespace owning the network one; its id maps are the
    caller's to write). ``netns``/``userns`` are a path or an open fd of a namespace to
    join (the user namespace first); with ``pass_netns``/``pass_userns`` (a child fd) it is
    opened (non-blocking) and handed to the child at that fd instead, for it to name
    as ``/proc/self/fd/N``. ``mount_ns`` is an open fd of a mount namespace to
    join next (the cwd is kept; the root becomes that namespace's). ``private_mounts``
    gives the child its own mount namespace with ``/`` recursively private. ``pdeathsig``
    is the signal the child gets when this *process* dies (such children are cloned on a
    long-lived thread, so the spawning thread may exit). ``umask`` is set in the child before exec.
    The child starts with an empty signal mask and with its caught signals, and SIGHUP,
    SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGCHLD and SIGXFSZ, at their default; any other
    signal the caller ignores stays ignored, as exec keeps it.

    Made in C for the child, their parent ends owned by the returned :class:`Child` from
    the moment it exists (see :meth:`Child.fd`): ``ready_fd``, the child fd of a new
    pipe's write end (see :meth:`Child.ready`); ``exit_fd``, the child fd of the read end
    of this process's owner pipe, whose write end pyslirp holds until the process dies:
    the child sees EOF there when its owner is gone, however it went; ``log``, stdout
    (unless captured) and stderr into a memfd; ``capture_stdout``, stdout into a memfd of
    its own; ``input``, bytes stdin reads from a memfd. ``hold_sysctl`` is (netns, sysctl
    path, value): set there before the clone, best effort, until :meth:`Child.ready`
    answers or :meth:`Child.release` (or the handle's end) puts the old value back. Pass
    ``child`` (a new, unspawned :class:`Child`) to own the process through a handle made
    beforehand.

    A name without a slash is looked up with :func:`~pyslirp.lookpath.look_path`. Errors
    are :class:`OSError` subclasses with a ``step`` attribute naming the step that failed.
    """
    options: dict[str, Any] = {  # all but argv, fds, env and child
        "executable": executable,
        "stdin": stdin,
        "stdout": stdout,
        "stderr": stderr,
        "setpgid": setpgid,
        "new_netns": new_netns,
        "new_userns": new_userns,
        "pdeathsig": pdeathsig,
        "private_mounts": private_mounts,
        "netns": netns,
        "userns": userns,
        "mount_ns": mount_ns,
        "pass_netns": pass_netns,
        "pass_userns": pass_userns,
        "ready_fd": ready_fd,
        "exit_fd": exit_fd,
        "log": log,
        "capture_stdout": capture_stdout,
        "input": input,
        "umask": umask,
        "hold_sysctl": hold_sysctl,
    }
    key = (tuple(argv), tuple(fds.items()) if fds else (), *options.values())
    keep = env is None and input is None  # a kept plan would keep its input too
    try:
        plan = _spawn_plans.get(key) if keep else None
    except TypeError:  # an unhashable value: checked, and refused, below
        plan, keep = None, False
    if plan is None:
        plan = SpawnPlan(argv, fds=fds, env=env, **options)
        streams = (stdin, stdout, stderr, mount_ns, *(fds or {}).values())
        if keep and not plan.looked_up and _all_ints(streams):
            if len(_spawn_plans) >= _SPAWN_PLANS_KEPT:
                _spawn_plans.pop(next(iter(_spawn_plans)), None)  # the oldest
            _spawn_plans[key] = plan
    return plan.spawn(child)


# spawn()'s plans, kept by its arguments: only for an executable given by path (no
# $PATH lookup to go stale), fds given as ints (a kept file object would stay open), and
# neither env nor input.
_SPAWN_PLANS_KEPT = 64
_spawn_plans: dict[tuple[object, ...], SpawnPlan] = {}


def _all_ints(values: Iterable[object]) -> bool:
    return all(value is None or type(value) is int for value in values)


class SpawnPlan:
    """:func:`spawn`'s arguments, checked and turned into C data once, for many children
    that differ only in some argv items, in the parent fds behind the child fds that
    ``fds`` maps to None, and in the network namespace of ``hold_sysctl`` (each given to
    :meth:`spawn`). Takes :func:`spawn`'s arguments but ``child``, and
    ``check_exit_fd``: a child fd of ``fds`` whose parent fd the spawn call checks first
    is an exit pipe a child can use (open, its write end not closed; else an OSError
    with ``step`` "check the exit pipe" and ``filename`` that parent fd). A plan that
    hands its netns over (``pass_netns``) or joins a mount namespace may be given
    another of each per spawn."""

    def __init__(
        self,
        argv: Sequence[StrPath],
        *,
        executable: StrPath | None = None,
        fds: Mapping[int, FdLike | None] | None = None,
        stdin: FdLike | None = None,
        stdout: FdLike | None = None,
        stderr: FdLike | None = None,
        env: Mapping[str, str] | None = None,
        setpgid: bool = True,
        new_netns: bool = False,
        new_userns: bool = False,
        pdeathsig: int = 0,
        private_mounts: bool = False,
        netns: StrPath | int | None = None,
        userns: StrPath | int | None = None,
        ready_fd: int | None = None,
        exit_fd: int | None = None,
        log: bool = False,
        capture_stdout: bool = False,
        input: bytes | None = None,
        umask: int | None = None,
        hold_sysctl: tuple[str, str, str] | None = None,
        check_exit_fd: int | None = None,
        mount_ns: FdLike | None = None,
        pass_netns: int | None = None,
        pass_userns: int | None = None,
        template_paths: MountPaths | None = None,
    ) -> None:
        if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence) or not argv:
            raise TypeError(f"argv must be a non-empty sequence of strings, not {argv!r}")
        args = [_arg_bytes("argv item", a) for a in argv]
        exe = _arg_bytes("executable", executable if executable is not None else argv[0])
        envp = None if env is None else [_arg_bytes("env item", f"{k}={v}") for k, v in env.items()]
        if not isinstance(pdeathsig, int) or not 0 <= pdeathsig < signal.NSIG:
            raise ValueError(f"pdeathsig must be 0 or a signal number, not {pdeathsig!r}")
        if umask is not None and (not isinstance(umask, int) or not 0 <= umask <= 0o777):
            raise ValueError(f"umask must be 0 to 0o777, not {umask!r}")
        if input is not None and not isinstance(input, bytes):
            raise TypeError(f"input must be bytes, not {input!r}")
        if mount_ns is not None and private_mounts:
            raise ValueError("mount_ns and private_mounts exclude each other")
        mntns_fd = -1 if mount_ns is None else _fileno("mount_ns", mount_ns)
        made = {
            "ready_fd": _child_fd("ready_fd", ready_fd),
            "exit_fd": _child_fd("exit_fd", exit_fd),
            "netns_to_fd": _child_fd("pass_netns", pass_netns),
            "userns_to_fd": _child_fd("pass_userns", pass_userns),
        }
        for name, ns, given in (("netns", netns, pass_netns), ("userns", userns, pass_userns)):
            if given is not None and ns is None:
                raise ValueError(f"pass_{name} needs {name}: a namespace to hand over")

        mapping: dict[int, FdLike | None] = {}
        for target, source in (fds or {}).items():
            if not isinstance(target, int) or isinstance(target, bool) or target < 0:
                raise ValueError(f"child fd must be a non-negative int, not {target!r}")
            mapping[target] = source
        for target, stream in enumerate((stdin, stdout, stderr)):
            if stream is None:
                continue
            if target in mapping:
                raise ValueError(f"child fd {target} is given twice (fds and a std stream)")
            mapping[target] = stream
        claims = [*mapping, *(fd for fd in made.values() if fd >= 0)]
        claims += [0] if input is not None else []
        claims += [1] if capture_stdout or log else []
        claims += [2] if log else []
        if len(claims) != len(set(claims)):
            raise ValueError(f"a child fd is given twice: {sorted(claims)}")

        path = exe
        self.looked_up = b"/" not in exe  # in $PATH
        if self.looked_up:
            found = look_path(os.fsdecode(exe), env)
            if found is None:
                error = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fsdecode(exe))
                raise _with_step(error, lib.PYSLIRP_STEP_EXEC)
            path = os.fsencode(found)

        targets = sorted(mapping)
        # Child fds mapped to None get their parent fd from each spawn() call.
        self._later = dict.fromkeys(target for target in targets if mapping[target] is None)
        sources = [_source(target, mapping[target]) for target in targets]
        ns_fds, ns_paths = [], []
        for name, ns in (("netns", netns), ("userns", userns)):
            if ns is None or isinstance(ns, int):
                ns_fds.append(-1 if ns is None else _fileno(name, ns))
                ns_paths.append(ffi.NULL)
            else:
                ns_fds.append(-1)  # opened in the child: nothing of ours to leak here
                ns_paths.append(ffi.new("char[]", _arg_bytes(name, ns)))
        if hold_sysctl is not None:
            sysctl = [ffi.new("char[]", _arg_bytes("sysctl", item)) for item in hold_sysctl]
        else:
            sysctl = [ffi.NULL] * 3

        # cdata arrays are freed with their Python objects: the plan holds them all.
        keep: list[Any] = [*ns_paths, *sysctl]
        self.args = args
        self._names = [os.fsdecode(a) for a in args]
        self._path = path
        self._netns, self._userns = netns, userns
        self._pdeathsig = pdeathsig
        self._private_mounts = private_mounts
        self._argv_items = [ffi.new("char[]", item) for item in args]
        self._fd_src = sources
        self._check_exit_fd = check_exit_fd
        self._targets = targets
        c_path = ffi.new("char[]", path)
        c_envp = ffi.NULL if envp is None else _c_strings(envp, keep)
        c_input = ffi.new("char[]", input) if input is not None else ffi.NULL
        fd_src = ffi.new("int[]", sources)
        fd_dst = ffi.new("int[]", targets)
        c_argv = ffi.new("char *[]", [*self._argv_items, ffi.NULL])
        keep += [c_path, c_envp, c_input, fd_src, fd_dst, c_argv]
        self._keep = keep
        self._c_args = ffi.new(
            "struct pyslirp_spawn_args *",
            {
                "path": c_path,
                "argv": c_argv,
                "envp": c_envp,
                "fd_src": fd_src,
                "fd_dst": fd_dst,
                "nfds": len(targets),
                "ready_fd": made["ready_fd"],
                "exit_fd": made["exit_fd"],
                "check_exit_fd": _child_fd("check_exit_fd", check_exit_fd),
                "log_fds": (0 if not log else 2 if capture_stdout else 3),
                "capture_stdout": bool(capture_stdout),
                "stdin_data": c_input,
                "stdin_len": len(input) if input is not None else 0,
                "setpgid": bool(setpgid),
                "new_namespaces": (lib.CLONE_NEWUSER if new_userns else 0)
                | (lib.CLONE_NEWNET if new_netns else 0),
                "pdeathsig": pdeathsig,
                "private_mounts": bool(private_mounts),
                "umask": -1 if umask is None else umask,
                "netns_fd": ns_fds[0],
                "userns_fd": ns_fds[1],
                "mntns_fd": mntns_fd,
                "netns_to_fd": made["netns_to_fd"],
                "userns_to_fd": made["userns_to_fd"],
                "netns_path": ns_paths[0],
                "userns_path": ns_paths[1],
                "sysctl_netns": sysctl[0],
                "sysctl_path": sysctl[1],
                "sysctl_value": sysctl[2],
                "template_paths": ffi.NULL if template_paths is None else template_paths.c_paths,
            },
        )
        self._template_paths = template_paths  # (its C data lives as long)

    def spawn(
        self,
        child: Child | None = None,
        *,
        argv: Mapping[int, StrPath] | None = None,
        fds: Mapping[int, FdLike] | None = None,
        sysctl_netns: StrPath | None = None,
        input: bytes | None = None,
        netns: StrPath | None = None,
        mount_ns: MountTemplate | None = None,
        exe_id: Any = None,
    ) -> Child:
        """Start one child (into ``child``, a new, unspawned :class:`Child`, if given),
        with ``argv``'s items (index: value) and ``fds``'s parent fds (for the child fds
        the plan left to None) in place, ``hold_sysctl`` in ``sysctl_netns``,
        ``input`` for the plan's (when it was made with some), and ``netns`` (a path)
        and ``mount_ns`` (a template to join) for the plan's.

        Before the clone, the spawn call checks that ``mount_ns`` has the mounts of the
        plan's ``template_paths``, and that the executable is still ``exe_id`` (from
        :func:`file_id`), if given: else nothing is spawned and the OSError (ESTALE) has
        ``step`` "check the template's mounts" or "check the executable"."""
        if child is None:
            child = Child(self._names)
        elif child._slot.pid:
            raise ValueError(f"{child!r} was spawned already")
        c_args = self._c_args
        if argv or input is not None:
            c_args, _keep = self._with(argv, input)  # (alive until the call returned)
        later = self._later_sources(fds) if fds or self._later else ffi.NULL
        if mount_ns is not None and self._private_mounts:
            raise ValueError("mount_ns and private_mounts exclude each other")
        slot = child._slot
        each = (
            c_args,
            slot,
            ffi.NULL if netns is None else _path_bytes("netns", netns),
            later,
            ffi.NULL if sysctl_netns is None else _path_bytes("sysctl", sysctl_netns),
            ffi.NULL if mount_ns is None else mount_ns.c_template,
            ffi.NULL if exe_id is None else exe_id,
        )
        if self._pdeathsig:
            status = _SPAWNER.call(lambda: lib.pyslirp_spawn_each(*each))
        else:
            status = lib.pyslirp_spawn_each(*each)
        if status != 0:
            raise self._error(slot.step, slot.err, fds, netns)
        return child

    def _with(self, argv: Mapping[int, StrPath] | None, input: bytes | None) -> tuple[Any, Any]:
        """A copy of the plan's C arguments with ``argv``'s items and ``input`` in place,
        and what keeps its new C data alive."""
        c_args = ffi.new("struct pyslirp_spawn_args *", self._c_args[0])
        keep: list[Any] = []
        if input is not None:
            if c_args.stdin_data == ffi.NULL or not isinstance(input, bytes):
                raise ValueError("input must be bytes, for a plan made with input")
            c_args.stdin_data = input_c = ffi.new("char[]", input)
            c_args.stdin_len = len(input)
            keep.append(input_c)
        if argv:
            items = self._argv_items.copy()
            for index, value in argv.items():
                items[index] = ffi.new("char[]", _arg_bytes("argv item", value))
            c_args.argv = argv_c = ffi.new("char *[]", [*items, ffi.NULL])
            keep += [items, argv_c]
        return c_args, keep

    def _later_sources(self, fds: Mapping[int, FdLike] | None) -> list[int]:
        """The parent fds ``fds`` gives for the child fds the plan left to None."""
        if fds is None or fds.keys() != self._later.keys():
            raise ValueError(f"fds must give child fds {sorted(self._later)}, not {fds!r}")
        return [  # a plain fd as it is, with no name made for an error
            fd
            if type(fd := fds[target]) is int and fd >= 0
            else _fileno(f"parent fd for child fd {target}", fd)
            for target in self._later
        ]

    def _error(
        self, step: int, err: int, fds: Mapping[int, FdLike] | None, netns: StrPath | None
    ) -> OSError:
        """The OSError for a spawn that failed at ``step`` with ``err``."""
        exit_fd = self._check_exit_fd
        if step == lib.PYSLIRP_STEP_EXIT_PIPE and exit_fd is not None:
            given = (fds or {}).get(exit_fd)
            source = self._fd_src[self._targets.index(exit_fd)] if given is None else given
            return _spawn_error(step, err, _fileno("exit pipe", source))
        filename = {
            lib.PYSLIRP_STEP_EXEC: os.fsdecode(self._path),
            lib.PYSLIRP_STEP_SETNS_NET: self._netns if netns is None else netns,
            lib.PYSLIRP_STEP_SETNS_USER: self._userns,
        }.get(step)
        return _spawn_error(step, err, filename)


def file_id(path: StrPath) -> Any:
    """What the file at ``path`` is now (device, inode, mtime), as C data: a spawn given
    it as ``exe_id`` (and :func:`same_file`) can tell the file was replaced since. For a
    path that cannot be looked at, zeros: what no file is."""
    made = ffi.new("struct pyslirp_file_id *")
    lib.pyslirp_file_id(os.fsencode(path), made)
    return made


def same_file(path: StrPath, made: Any) -> bool:
    """Whether the file at ``path`` is still the one :func:`file_id` found."""
    return bool(lib.pyslirp_same_file(os.fsencode(path), made))


def _spawn_error(step: int, err: int, filename: object) -> OSError:
    if isinstance(filename, (bytes, os.PathLike)):
        filename = os.fsdecode(filename)
    error = (
        OSError(err, os.strerror(err), filename)
        if filename is not None
        else OSError(err, os.strerror(err))
    )
    return _with_step(error, step)


def _with_step(error: OSError, step: int) -> OSError:
    step_name = STEPS.get(step, f"step {step}")
    setattr(error, "step", step_name)  # noqa: B010 - OSError subclasses have no such slot
    error.add_note(f"pyslirp.spawn failed at: {step_name}")
    return error
