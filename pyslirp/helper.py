"""The owner of one running helper process (slirp4netns, rootlessport, ...).

A :class:`Helper` exists before its process does and owns, from the moment each exists,
everything made for it: the process (pid and pidfd), the parent's end of its ready pipe,
its log, the processes it starts that we wait for, and a private directory. It has one
stop policy. Its owner is the process that made it: a helper is stopped by that process
only, and exits with it however it dies (its exit fd is the process's owner pipe, see
:func:`~pyslirp.process.spawn`).
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import resource
import select
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from typing import Any

from ._spawn import lib
from .errors import ReadyTimeout, StartError
from .process import STEPS, Child, SpawnPlan
from .steps import Steps, Wait, drive

PRIVATE_DIR_PREFIX = "pyslirp-"
_serial = itertools.count(1)  # private directories made by this process
PRIVATE_DIR_LOCK = ".lock"
LOG_TAIL = 64 * 1024  # bytes of a helper's log kept for errors and log()
MESSAGE_LINES = 8  # lines of that log an error message quotes, at most
MESSAGE_CHARS = 2000
READY, CLOSED = lib.PYSLIRP_READY_OK, lib.PYSLIRP_READY_CLOSED
PENDING, EXITED = lib.PYSLIRP_READY_PENDING, lib.PYSLIRP_READY_EXITED
EXIT_PIPE = STEPS[lib.PYSLIRP_STEP_EXIT_PIPE]
EXIT_GRACE = 0.1  # seconds a helper that closed its ready fd gets to exit
KILL_WAIT = 1.0  # seconds a finalizer waits for a helper it SIGKILLed
CHILDREN_READ = 1 << 16  # bytes of a thread's /proc children list read: 9,000 pids


class Helper:
    """One helper process and what was made for it; see the module docstring."""

    private_dir: str | None = None
    _closing = False

    def __init__(self, name: str, *, label: str | None = None) -> None:
        self.name = name
        self.label = label or name  # how errors name it: "slirp4netns for netns /run/netns/x"
        self.child = Child([name])
        self._stopped = False
        self._owner = os.getpid()  # after fork, another process holds a copy of this
        self._tracked: set[int] = set()

    @property
    def pid(self) -> int:
        """The helper's pid (0 until it is spawned)."""
        return self.child.pid

    @property
    def returncode(self) -> int | None:
        """None while the helper runs (or before it started); its exit status after."""
        return self.child.poll()

    def make_private_dir(self, parent: str) -> str:
        """Make a directory of the helper's own (0700) under ``parent``, removed by
        :meth:`close` once the helper is reaped.

        Its name (with this process's pid) is recorded before it exists, and a lock file
        in it is held for as long as this handle lives: a directory whose lock nobody
        holds and whose process is gone was left by an owner that was killed, and is
        removed here first.
        """
        try:
            os.makedirs(parent, mode=0o700, exist_ok=True)
            _remove_abandoned_dirs(parent)
            while True:
                name = f"{PRIVATE_DIR_PREFIX}{os.getpid()}-{next(_serial)}"
                self.private_dir = os.path.join(parent, name)
                try:
                    os.mkdir(self.private_dir, 0o700)
                    break
                except FileExistsError:
                    continue  # left by a process that had this pid, and it still holds
            self.child.lock(os.path.join(self.private_dir, PRIVATE_DIR_LOCK))
        except OSError as exc:
            raise start_error(f"cannot make a private directory for {self.name}", exc) from exc
        return self.private_dir

    def spawn(self, argv: list[str], **kwargs: Any) -> None:
        """Start the helper (see :func:`~pyslirp.process.spawn`) into this handle."""
        try:
            plan = SpawnPlan(argv, **kwargs)
        except OSError as exc:
            raise start_error(f"cannot start {argv[0]}", exc) from exc
        self.start(plan)

    def start(self, plan: SpawnPlan, **kwargs: Any) -> None:
        """Start the helper from ``plan`` (see :meth:`~pyslirp.process.SpawnPlan.spawn`,
        which takes ``kwargs``) into this handle."""
        try:
            plan.spawn(self.child, **kwargs)
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.EPIPE) and getattr(exc, "step", "") == EXIT_PIPE:
                raise _exit_pipe_error(self.name, exc.filename, exc.errno) from None
            raise start_error(f"cannot start {plan.args[0].decode(errors='replace')}", exc) from exc

    def log(self) -> str:
        """What the helper wrote to its log (the last 64 KiB), or "" when it has none; it
        stays readable after the helper died, until the handle is closed."""
        fd = self.child.fd("log_fd")
        return read_tail(fd) if fd >= 0 else ""

    def output(self) -> str:
        """What the helper wrote to its captured stdout, or ""."""
        fd = self.child.fd("out_fd")
        return read_tail(fd) if fd >= 0 else ""

    def wait_ready(self, deadline: float) -> None:
        """Return once the helper writes a byte to its ready pipe; raise
        :class:`StartError` the moment it exits or closes the pipe without writing, and
        :class:`ReadyTimeout` at ``deadline`` (a :func:`time.monotonic` value). The wait
        is one call into C (:meth:`~pyslirp.process.Child.ready`), which also waits for
        the exit that follows a closed pipe; once it answers, the ready pipe is closed and
        a held sysctl put back."""
        child = self.child
        state = child.ready(deadline - time.monotonic(), EXIT_GRACE)
        if state == READY:
            return
        while state == PENDING and time.monotonic() < deadline:
            state = child.ready(deadline - time.monotonic(), EXIT_GRACE)  # a signal came
        if state != READY:
            raise self._not_ready(state)

    def ready_steps(self, deadline: float) -> Steps[None]:
        """:meth:`wait_ready` as steps (see :mod:`pyslirp.steps`): the same C call, asked
        without waiting each time the driver finds the ready pipe or the pidfd readable."""
        child = self.child
        ready_fd, pidfd = child.fd("ready_fd"), child.pidfd
        # Without a pidfd it was reaped already: the ready pipe is at EOF or has data.
        fds = (ready_fd, pidfd) if pidfd >= 0 else (ready_fd,)
        state = child.ready()
        while state == PENDING and time.monotonic() < deadline:
            yield Wait(fds, deadline)
            state = child.ready()
        if state == CLOSED and child.pidfd >= 0:
            # Usually the helper is on its way out: say how it ended if it does.
            yield Wait((child.pidfd,), min(deadline, time.monotonic() + EXIT_GRACE))
        if state != READY:
            raise self._not_ready(state)

    def _not_ready(self, state: int) -> StartError:
        """The error for a helper that did not get ready (``state``: what
        :meth:`~pyslirp.process.Child.ready` last said); its ready pipe is closed."""
        if state == PENDING:
            self.child.close_fd("ready_fd")  # (any other answer closed it)
            return self.error(f"{self.label} did not become ready in time", ReadyTimeout)
        returncode = self.child.returncode if state == EXITED else self.child.poll()
        if returncode is None:
            return self.error(f"{self.label} closed its ready fd without writing")
        return self.error(f"{self.label} {_exit_reason(returncode)}")

    def error(self, message: str, kind: type[StartError] = StartError) -> StartError:
        """A :class:`StartError` (or ``kind``) saying ``message`` and the last lines of the
        helper's log; the whole log is its ``log`` attribute."""
        log = self.log()
        tail = "\n".join(_last_distinct_lines(log, MESSAGE_LINES))[-MESSAGE_CHARS:]
        error = kind(f"{message}: {tail}" if tail else message)
        error.log = log
        return error

    def track_children(self) -> None:
        """Hold pidfds of the helper's current children, to wait for them in :meth:`close`
        (rootlessport re-execs itself as ``rootlessport-child``; slirp4netns forks one
        while it starts, which holds the tap device until it is gone)."""
        for pid in _children_of(self.pid):
            if pid in self._tracked:
                continue
            try:
                self.child.track(pid)
            except (ProcessLookupError, OSError):
                continue  # gone already, or no room left: it is in the helper's group
            self._tracked.add(pid)

    def close(self, timeout: float = 5.0, *, then: Callable[[], None] | None = None) -> None:
        """Stop the helper and reap it; SIGKILL once ``timeout`` seconds have passed.

        The helper and its process group get SIGTERM; then its tracked children are
        awaited (SIGKILL for them too after ``timeout``) and its private directory
        removed. In a process
        other than its owner (after fork) this only closes that process's copies of the
        fds. ``then`` runs once the helper is gone, before its fds (and so the lock it may
        hold) are released. Safe to call more than once.
        """
        drive(self.close_steps(timeout, then=then))

    def close_steps(
        self, timeout: float = 5.0, *, then: Callable[[], None] | None = None
    ) -> Steps[None]:
        """:meth:`close` as steps (see :mod:`pyslirp.steps`)."""
        if self._stopped:
            return
        self._closing = True  # interrupted from here on, __del__ finishes the job quietly
        try:
            child = self.child
            if child.owned_here and child.pid:
                if child.returncode is None or child.tracked_pidfds():
                    yield from self._stop_steps(timeout)
                else:  # it died on its own (before ready, say): nothing to stop
                    _reap_adopted(self.pid)
        finally:
            try:
                if then is not None and self._owner == os.getpid():
                    then()
            finally:
                self.release()

    def _stop_steps(self, timeout: float) -> Steps[None]:
        try:
            yield from self._graceful_stop_steps(timeout)
        except BaseException:
            self.kill()  # interrupted (Ctrl-C, a cancellation): not graceful, but sure
            raise

    def _graceful_stop_steps(self, timeout: float) -> Steps[None]:
        child = self.child
        deadline = time.monotonic() + timeout
        self.track_children()
        child.send_signal(signal.SIGTERM, group=True)
        if child.poll() is None:
            yield Wait((child.pidfd,), deadline)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL, group=True)
            yield Wait((child.pidfd,), None)
        child.wait()
        for pidfd in child.tracked_pidfds():
            if not (yield Wait((pidfd,), deadline)):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                yield Wait((pidfd,), None)
        _reap_adopted(self.pid)

    def kill(self) -> None:
        """SIGKILL the helper and its children and reap it (for finalizers): at most a
        second's wait, so that what it held (a tap device, a port) is free on return."""
        if self.child.owned_here and self.child.pid:
            self.track_children()
            self.child.send_signal(signal.SIGKILL, group=True)
            for pidfd in self.child.tracked_pidfds():
                try:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.child.wait(KILL_WAIT)
            except subprocess.TimeoutExpired:
                return  # stuck in the kernel: the reaper collects it when it goes
            for pidfd in self.child.tracked_pidfds():
                _wait_pidfd(pidfd, KILL_WAIT)

    def detach(self) -> int:
        """Give up ownership; return the pid. The helper is no longer stopped by
        :meth:`close` or when the handle is dropped; it still exits with this process (the
        owner pipe): a helper that must outlive it needs the caller's own exit pipe."""
        self._stopped = True
        self.child.detach()
        self.release()
        return self.pid

    def release(self) -> None:
        """Remove the helper's private directory and close every fd made for it; the
        process is left alone (stopped, detached or killed already). Interrupted, it is
        run again by the finalizer."""
        if self.private_dir is not None and self._owner == os.getpid():
            remove_tree(self.private_dir)  # still locked: ours alone
        self.child.release()
        self._stopped = True

    def __enter__(self) -> Helper:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_stopped", True) or not self.child.owned_here or not self.pid:
            return  # (no _stopped: __init__ itself was interrupted, before any spawn)
        if not self._closing:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=2)
        self.kill()
        self.release()

    def __repr__(self) -> str:
        return f"<Helper {self.name} pid={self.pid} returncode={self.child.returncode}>"


def start_error(what: str, exc: OSError) -> StartError:
    """``what`` failed with ``exc``, as a :class:`StartError`; running out of fds says so
    plainly, with the limit."""
    if exc.errno == errno.EMFILE:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return StartError(
            f"{what}: out of file descriptors (EMFILE: this process may open {soft}; "
            "raise RLIMIT_NOFILE or close some)"
        )
    if exc.errno == errno.ENFILE:
        return StartError(f"{what}: the system is out of file descriptors (ENFILE)")
    return StartError(f"{what}: {exc}")


def _exit_pipe_error(helper: str, fd: int, err: int) -> StartError:
    """What is wrong with ``helper``'s exit pipe ``fd``, as the spawn call found it: not
    open (EBADF), or its write end closed (EPIPE): it would exit as soon as it started."""
    if err == errno.EPIPE:
        return StartError(
            f"cannot start {helper}: the write end of its exit pipe (fd {fd}) is already "
            "closed, so it would exit as soon as it started"
        )
    return StartError(f"cannot start {helper}: its exit pipe fd {fd} is not open")


def _remove_abandoned_dirs(parent: str) -> None:
    """Remove the private directories under ``parent`` that nobody holds: their lock is
    free and the process in their name is gone (a live one may be making it now).

    One liveness check per owner, none for this process's own: with hundreds of live
    networks in one tmp_dir, a setup does not probe each of their directories.
    """
    alive = {str(os.getpid()): True}
    for entry in os.scandir(parent):
        owner = entry.name.removeprefix(PRIVATE_DIR_PREFIX).partition("-")[0]
        if entry.name == owner or not owner.isdigit():
            continue
        if owner not in alive:
            alive[owner] = _alive(int(owner))
        if alive[owner]:
            continue
        try:
            with open(os.path.join(entry.path, PRIVATE_DIR_LOCK), "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                remove_tree(entry.path)
        except FileNotFoundError:
            remove_tree(entry.path)  # its owner died before it made the lock
        except (BlockingIOError, NotADirectoryError):
            continue  # held (by a forked child of its owner), or not a directory


def remove_tree(path: str) -> None:
    """Remove the directory tree at ``path``, best effort (in C: see csrc/rmtree.c)."""
    lib.pyslirp_remove_tree(os.fsencode(path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's
    return True


def read_tail(fd: int) -> str:
    """The last 64 KiB written to the file ``fd``: one read when it holds no more."""
    data = os.pread(fd, LOG_TAIL + 1, 0)
    if len(data) > LOG_TAIL:
        data = os.pread(fd, LOG_TAIL, os.fstat(fd).st_size - LOG_TAIL)
    return data.decode(errors="replace")


def _last_distinct_lines(text: str, count: int) -> list[str]:
    """The last ``count`` lines of ``text``, each only at its first place (slirp4netns's
    parent and child print the same warnings)."""
    return list(dict.fromkeys(filter(str.strip, text.splitlines())))[-count:]


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name} before it was ready"
    return f"exited with status {returncode} before it was ready"


def _children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid``, from each thread's ``children`` list
    (CONFIG_PROC_CHILDREN, which Debian's kernels have)."""
    children: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            # Unbuffered bytes: no text decoder to make per file. (A file object, not a bare
            # fd: one Ctrl-C cannot leak.)
            with open(f"/proc/{pid}/task/{task}/children", "rb", buffering=0) as file:
                children += map(int, file.read(CHILDREN_READ).split())
    except FileNotFoundError:
        pass  # it or a thread exited meanwhile
    return children


def _reap_adopted(group: int) -> None:
    """Kill and reap the processes of the helper's process group ``group`` that were
    re-parented to us when the helper exited first (we are PID 1 of a container, or a
    child subreaper): else they would stay zombies of ours. Elsewhere init takes them.

    Only our own unreaped children are looked at: their pids cannot be reused meanwhile.
    Usually the group is empty by now (zombies would count): then our children, maybe a
    thousand other helpers, are not looked at at all.
    """
    if not lib.pyslirp_adopts_orphans():
        return
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass  # someone's process is in it: look
    for pid in _children_of(os.getpid()):
        try:
            if os.getpgid(pid) != group:
                continue
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass  # not ours after all (a thread's child), or reaped by its owner


def _wait_pidfd(pidfd: int, timeout: float | None) -> bool:
    """Wait until the process behind ``pidfd`` exits; False if ``timeout`` passes first."""
    poller = select.poll()  # not select(): a daemon's fds run past FD_SETSIZE (1024)
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(timeout, 0) * 1000))
