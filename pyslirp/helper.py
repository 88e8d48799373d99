"""The owner of one running helper process (slirp4netns, rootlessport, ...).

A :class:`Helper` exists before its process does and owns, from the moment each exists,
everything made for it: the process (pid and pidfd), the parent's ends of its ready and
exit pipes, its log, the processes it starts that we wait for, and a private directory.
It has one stop policy. Its owner is the process that made it: a helper is stopped by
that process only, and exits with it however it dies (the exit pipe's write end closes).
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import select
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from typing import Any

from .errors import ReadyTimeout, StartError
from .spawn import Child, spawn

PRIVATE_DIR_PREFIX = "pyslirp-"
PRIVATE_DIR_LOCK = ".lock"
LOG_TAIL = 64 * 1024  # bytes of a helper's log kept for errors and log()
MESSAGE_LINES = 8  # lines of that log an error message quotes, at most
MESSAGE_CHARS = 2000
EXIT_GRACE = 0.1  # seconds a helper that closed its ready fd gets to exit
KILL_WAIT = 1.0  # seconds a finalizer waits for a helper it SIGKILLed

# Exit pipes of detached helpers: kept open for the life of this process, so that the
# helpers live as long as it does (and not longer).
_DETACHED_EXIT_FDS: list[int] = []


class Helper:
    """One helper process and what was made for it; see the module docstring.

    ``graceful_eof``: the helper cleans up when its exit pipe reaches EOF (rootlessport),
    so :meth:`close` gives it that chance before any signal.
    """

    def __init__(self, name: str, *, graceful_eof: bool = False, label: str | None = None) -> None:
        self.name = name
        self.label = label or name  # how errors name it: "slirp4netns for netns /run/netns/x"
        self.child = Child([name])
        self.private_dir: str | None = None
        self._graceful_eof = graceful_eof
        self._stopped = False
        self._closing = False
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

        Its name is recorded before it exists, and a lock file in it is held for as long
        as this handle lives: a directory whose lock nobody holds was left by an owner
        that was killed, and is removed here first.
        """
        self.private_dir = os.path.join(parent, PRIVATE_DIR_PREFIX + os.urandom(3).hex())
        try:
            os.makedirs(parent, mode=0o700, exist_ok=True)
            _remove_abandoned_dirs(parent)
            os.mkdir(self.private_dir, 0o700)
            self.child.lock(os.path.join(self.private_dir, PRIVATE_DIR_LOCK))
        except OSError as exc:
            raise start_error(f"cannot make a private directory for {self.name}", exc) from exc
        return self.private_dir

    def spawn(self, argv: list[str], **kwargs: Any) -> None:
        """Start the helper (see :func:`~pyslirp.spawn.spawn`) into this handle."""
        try:
            spawn(argv, child=self.child, **kwargs)
        except OSError as exc:
            raise start_error(f"cannot start {argv[0]}", exc) from exc

    def log(self) -> str:
        """What the helper wrote to its log (the last 64 KiB), or "" when it has none."""
        fd = self.child.fd("log_fd")
        return read_tail(fd) if fd >= 0 else ""

    def output(self) -> str:
        """What the helper wrote to its captured stdout, or ""."""
        fd = self.child.fd("out_fd")
        return read_tail(fd) if fd >= 0 else ""

    def wait_ready(self, deadline: float) -> None:
        """Return once the helper writes a byte to its ready pipe; raise
        :class:`StartError` the moment it exits or closes the pipe without writing, and
        :class:`ReadyTimeout` at ``deadline`` (a :func:`time.monotonic` value). The ready
        pipe is closed either way."""
        ready_fd, pidfd = self.child.fd("ready_fd"), self.child.pidfd
        try:
            poller = select.poll()
            poller.register(ready_fd, select.POLLIN)
            if pidfd >= 0:  # else it was reaped already: the ready pipe is at EOF or has data
                poller.register(pidfd, select.POLLIN)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self.error(f"{self.label} did not become ready in time", ReadyTimeout)
                events = dict(poller.poll(remaining * 1000))
                # A helper may write its byte and exit at once: the byte wins.
                if events.get(ready_fd):
                    if os.read(ready_fd, 1):
                        return
                    # EOF: usually the helper is on its way out; say how it ended if it does.
                    try:
                        reason = _exit_reason(self.child.wait(min(EXIT_GRACE, remaining)))
                    except subprocess.TimeoutExpired:
                        reason = "closed its ready fd without writing"
                    raise self.error(f"{self.label} {reason}")
                if pidfd >= 0 and events.get(pidfd):
                    raise self.error(f"{self.label} {_exit_reason(self.child.wait())}")
        finally:
            self.child.close_fd("ready_fd")

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

        The exit pipe is closed first (the helper exits at EOF); a helper without
        ``graceful_eof`` gets SIGTERM with it, one with it only after ``timeout``. Then
        its tracked children are awaited and its private directory removed. In a process
        other than its owner (after fork) this only closes that process's copies of the
        fds. ``then`` runs once the helper is gone, before its fds (and so the lock it may
        hold) are released. Safe to call more than once.
        """
        if self._stopped:
            return
        self._closing = True  # interrupted from here on, __del__ finishes the job quietly
        try:
            if self.child.owned_here and self.child.pid:
                self._stop(timeout)
        finally:
            try:
                if then is not None and self._owner == os.getpid():
                    then()
            finally:
                self.release()

    def _stop(self, timeout: float) -> None:
        child = self.child
        deadline = time.monotonic() + timeout
        self.track_children()
        graceful = self._graceful_eof and child.fd("exit_fd") >= 0
        child.close_fd("exit_fd")
        if not graceful:
            child.send_signal(signal.SIGTERM, group=True)
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL, group=True)
            child.wait()
        for pidfd in child.tracked_pidfds():
            if not _wait_pidfd(pidfd, deadline - time.monotonic()):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                _wait_pidfd(pidfd, None)
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
        :meth:`close` or when the handle is dropped. Its exit pipe stays open for the life
        of this process: a helper that must outlive it needs the caller's own exit pipe."""
        self._stopped = True
        self.child.detach()
        exit_fd = self.child.fd("exit_fd")
        if exit_fd >= 0:
            _DETACHED_EXIT_FDS.append(os.dup(exit_fd))
        self.release()
        return self.pid

    def release(self) -> None:
        """Close every fd made for the helper and remove its private directory; the
        process is left alone (stopped, detached or killed already)."""
        self._stopped = True
        self.child.restore()
        for name in ("ready_fd", "exit_fd", "log_fd", "out_fd", "lock_fd", "pidfd"):
            self.child.close_fd(name)
        self.child.close_tracked()
        if self.private_dir is not None and self._owner == os.getpid():
            shutil.rmtree(self.private_dir, ignore_errors=True)

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


def _remove_abandoned_dirs(parent: str) -> None:
    """Remove the private directories under ``parent`` whose lock nobody holds."""
    for entry in os.scandir(parent):
        if not entry.name.startswith(PRIVATE_DIR_PREFIX) or not entry.is_dir():
            continue
        try:
            with open(os.path.join(entry.path, PRIVATE_DIR_LOCK), "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(entry.path, ignore_errors=True)
        except (BlockingIOError, FileNotFoundError):
            # In use, or being made or removed right now. (A directory whose lock file
            # exists but is not locked yet may go: its setup then fails, typed.)
            continue


def read_tail(fd: int) -> str:
    """The last 64 KiB written to the file ``fd``."""
    size = os.fstat(fd).st_size
    start = max(0, size - LOG_TAIL)
    return os.pread(fd, size - start, start).decode(errors="replace")


def _last_distinct_lines(text: str, count: int) -> list[str]:
    """The last ``count`` lines of ``text``, each only at its first place (slirp4netns's
    parent and child print the same warnings)."""
    lines = list(dict.fromkeys(line for line in text.splitlines() if line.strip()))
    return lines[-count:]


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name} before it was ready"
    return f"exited with status {returncode} before it was ready"


def _children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid``, from each thread's ``children`` list
    (CONFIG_PROC_CHILDREN, which Debian's kernels have)."""
    children = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as file:
                children += [int(child) for child in file.read().split()]
    except FileNotFoundError:
        pass  # it or a thread exited meanwhile
    return children


def _reap_adopted(group: int) -> None:
    """Kill and reap the processes of the helper's process group ``group`` that were
    re-parented to us when the helper exited first (we are PID 1 of a container, or a
    child subreaper): else they would stay zombies of ours. Elsewhere init takes them.

    Only our own unreaped children are looked at: their pids cannot be reused meanwhile.
    """
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
