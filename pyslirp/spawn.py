"""Start helper programs with exactly the process state they need (see ``csrc/spawn.c``).

:func:`spawn` validates everything in Python, then makes one call into C that does
``clone(CLONE_VM|CLONE_VFORK)`` and ``execve``: the cost does not grow with the parent's
memory, and a failure comes back as an :class:`OSError` naming the step that failed.
"""

from __future__ import annotations

import os
import queue
import select
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, TypeVar

from ._spawn import ffi, lib
from .reaper import REAPER, ChildState
from .signals import block_in_this_thread

__all__ = ["DEVNULL", "Child", "spawn"]

DEVNULL = subprocess.DEVNULL
"""Connect a standard stream of the child to ``/dev/null``."""


class HasFileno(Protocol):
    def fileno(self) -> int: ...


StrPath: TypeAlias = "str | bytes | os.PathLike[str] | os.PathLike[bytes]"
FdLike: TypeAlias = "int | HasFileno"
T = TypeVar("T")

_STEPS = {
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
    lib.PYSLIRP_STEP_PIPE: "error pipe",
}
_FD_LIMIT = os.sysconf("SC_OPEN_MAX")


class Child:
    """A spawned process, signalled through its pidfd and reaped as soon as it exits."""

    def __init__(
        self, args: Sequence[str | bytes], state: ChildState, *, leads_group: bool = False
    ) -> None:
        self.args = list(args)
        self.pid = state.pid
        self.leads_group = leads_group
        self._state = state

    @property
    def pidfd(self) -> int:
        """The child's pidfd, or -1 once it has been reaped."""
        return self._state.pidfd

    def dup_pidfd(self) -> int | None:
        """A close-on-exec copy of the pidfd, or None once the child has been reaped.

        The reaper closes :attr:`pidfd` the moment the child exits; a copy stays valid
        (and readable) until the caller closes it, so it can be polled without a race.
        """
        with self._state.lock:
            if self._state.pidfd < 0:
                return None
            return os.dup(self._state.pidfd)

    @property
    def returncode(self) -> int | None:
        """Exit status, ``-N`` if killed by signal N, None while running."""
        return self._state.returncode

    def poll(self) -> int | None:
        """Return the exit status if the child has exited, else None."""
        self._state.reap()
        return self._state.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit and return its status.

        Raises :class:`subprocess.TimeoutExpired` when ``timeout`` seconds pass first.
        """
        state = self._state
        if state.returncode is None:
            # Reaped here, in the waiting thread: no hand-off, no reaper wake-up.
            REAPER.unwatch(state)
            try:
                self._reap_when_exited(timeout)
            finally:
                REAPER.watch(state)  # a no-op once reaped; else (timeout) back to it
        returncode = state.returncode
        assert returncode is not None
        return returncode

    def _reap_when_exited(self, timeout: float | None) -> None:
        pidfd = self.dup_pidfd()
        if pidfd is None:
            return  # another waiter reaped it
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if not poller.poll(None if timeout is None else timeout * 1000):
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        finally:
            os.close(pidfd)
        self._state.reap()

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child; nothing happens if it has already exited."""
        with self._state.lock:
            if self._state.returncode is not None:
                return
            try:
                signal.pidfd_send_signal(self._state.pidfd, sig)
            except ProcessLookupError:
                pass

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the child's process group (it leads one when spawned with
        ``setpgid``), so the processes it forked get it too; nothing happens if the
        child has exited or leads no group.

        Only while the child is unreaped: its pid, the group's id, cannot be reused then.
        """
        with self._state.lock:
            if self._state.returncode is not None or not self.leads_group:
                return
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass

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
        self.terminate()  # the child itself too: it may have left its group
        self.signal_group(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.signal_group(signal.SIGKILL)
            return self.wait()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wait()

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} returncode={self.returncode} args={self.args!r}>"


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
        done.wait()
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


def _candidates(executable: bytes, env: Mapping[str, str] | None) -> list[bytes]:
    """The paths exec will try, in order, as execvp would search them."""
    if b"/" in executable:
        return [executable]
    return [os.path.join(os.fsencode(d), executable) for d in os.get_exec_path(env)]


def _c_strings(items: Sequence[bytes], keep: list[Any]) -> Any:
    strings = [ffi.new("char[]", item) for item in items]
    keep.extend(strings)
    return ffi.new("char *[]", [*strings, ffi.NULL])


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
) -> Child:
    """Start ``argv`` with exactly the given fds, namespaces and signal state.

    ``fds`` maps child fd numbers to parent fds (ints or objects with ``fileno()``); only
    those and 0-2 reach the child. ``stdin``/``stdout``/``stderr`` are None (inherit), an
    fd, a file object or :data:`DEVNULL`. ``new_userns``/``new_netns`` give the child new
    namespaces of its own (the user namespace owning the network one; its id maps are the
    caller's to write). ``netns``/``userns`` are a path or an open fd of a namespace to
    join (the user namespace first). ``private_mounts`` gives the child
    its own mount namespace with ``/`` recursively private. ``pdeathsig`` is the signal
    the child gets when this *process* dies (such children are cloned on a long-lived
    thread, so the spawning thread may exit). Errors are :class:`OSError` subclasses with
    a ``step`` attribute naming the set-up step that failed.
    """
    if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence) or not argv:
        raise TypeError(f"argv must be a non-empty sequence of strings, not {argv!r}")
    args = [_arg_bytes("argv item", a) for a in argv]
    exe = _arg_bytes("executable", executable if executable is not None else argv[0])
    envp = None if env is None else [_arg_bytes("env item", f"{k}={v}") for k, v in env.items()]
    if not isinstance(pdeathsig, int) or not 0 <= pdeathsig < signal.NSIG:
        raise ValueError(f"pdeathsig must be 0 or a signal number, not {pdeathsig!r}")

    mapping: dict[int, FdLike] = {}
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

    opened: list[int] = []
    try:
        targets = sorted(mapping)
        sources = []
        for target in targets:
            source = mapping[target]
            if source is DEVNULL:
                opened.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
                sources.append(opened[-1])
            else:
                sources.append(_fileno(f"parent fd for child fd {target}", source))
        ns_fds = []
        for name, ns in (("netns", netns), ("userns", userns)):
            if ns is None or isinstance(ns, int):
                ns_fds.append(-1 if ns is None else _fileno(name, ns))
            else:
                opened.append(os.open(_arg_bytes(name, ns), os.O_RDONLY | os.O_CLOEXEC))
                ns_fds.append(opened[-1])

        # cdata arrays are freed with their Python objects: hold them all until the call.
        keep: list[Any] = []
        candidates = _candidates(exe, env)
        paths = _c_strings(candidates, keep)
        c_argv = _c_strings(args, keep)
        c_envp = ffi.NULL if envp is None else _c_strings(envp, keep)
        fd_src = ffi.new("int[]", sources)
        fd_dst = ffi.new("int[]", targets)
        c_args = ffi.new(
            "struct pyslirp_spawn_args *",
            {
                "paths": paths,
                "npaths": len(candidates),
                "argv": c_argv,
                "envp": c_envp,
                "fd_src": fd_src,
                "fd_dst": fd_dst,
                "nfds": len(targets),
                "setpgid": bool(setpgid),
                "new_namespaces": (lib.CLONE_NEWUSER if new_userns else 0)
                | (lib.CLONE_NEWNET if new_netns else 0),
                "pdeathsig": pdeathsig,
                "private_mounts": bool(private_mounts),
                "netns_fd": ns_fds[0],
                "userns_fd": ns_fds[1],
                "fd_limit": _FD_LIMIT,
            },
        )
        result = ffi.new("struct pyslirp_spawn_result *")
        if pdeathsig:
            status = _SPAWNER.call(lambda: lib.pyslirp_spawn(c_args, result))
        else:
            status = lib.pyslirp_spawn(c_args, result)
    finally:
        for fd in opened:
            os.close(fd)

    if status != 0:
        raise _spawn_error(result.step, result.err, exe, netns, userns)
    if result.pidfd < 0:
        # Without a pidfd there is no race-free way to signal or reap it: refuse.
        os.kill(result.pid, signal.SIGKILL)
        os.waitpid(result.pid, 0)
        raise OSError(0, "this kernel gives no pidfd (Linux >= 5.3 needed)")
    state = ChildState(result.pid, result.pidfd)
    REAPER.watch(state)
    return Child([os.fsdecode(a) for a in args], state, leads_group=bool(setpgid))


def _spawn_error(step: int, err: int, exe: bytes, netns: object, userns: object) -> OSError:
    filename: object = {
        lib.PYSLIRP_STEP_EXEC: os.fsdecode(exe),
        lib.PYSLIRP_STEP_SETNS_NET: netns,
        lib.PYSLIRP_STEP_SETNS_USER: userns,
    }.get(step)
    if isinstance(filename, (bytes, os.PathLike)):
        filename = os.fsdecode(filename)
    error = (
        OSError(err, os.strerror(err), filename)
        if filename is not None
        else OSError(err, os.strerror(err))
    )
    step_name = _STEPS.get(step, f"step {step}")
    setattr(error, "step", step_name)  # noqa: B010 - OSError subclasses have no such slot
    error.add_note(f"pyslirp.spawn failed at: {step_name}")
    return error
