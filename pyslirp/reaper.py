"""Reap spawned children the moment they exit, through their pidfds.

One daemon thread waits on every live child's pidfd with epoll. When a child exits it
collects the status at once, so no zombie lingers whether or not anybody waits, and it
does so without a SIGCHLD handler that would fight the application's own.
"""

from __future__ import annotations

import logging
import os
import select
import threading

from .signals import block_in_this_thread

log = logging.getLogger("pyslirp")


class ChildState:
    """What the reaper knows of one child; shared with its :class:`~pyslirp.spawn.Child`."""

    __slots__ = ("lock", "pid", "pidfd", "returncode")

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.returncode: int | None = None
        self.lock = threading.Lock()

    def reap(self) -> bool:
        """Collect the exit status if the child has exited; True once it has."""
        with self.lock:
            if self.returncode is not None:
                return True
            try:
                info = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                # Someone else (an application's waitpid(-1)) took it: as subprocess does.
                self.returncode = 0
            else:
                if info is None:
                    return False
                killed = info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
                self.returncode = -info.si_status if killed else info.si_status
            os.close(self.pidfd)
            self.pidfd = -1
        return True


class Reaper:
    """The process-wide reaper thread and the children it watches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoll: select.epoll | None = None
        self._states: dict[int, ChildState] = {}

    def watch(self, state: ChildState) -> None:
        """Reap ``state``'s child as soon as it exits."""
        with self._lock, state.lock:
            if state.returncode is not None or self._states.get(state.pidfd) is state:
                return
            if self._epoll is None:
                self._epoll = select.epoll()
                threading.Thread(
                    target=self._run, args=(self._epoll,), name="pyslirp-reaper", daemon=True
                ).start()
            self._states[state.pidfd] = state
            self._epoll.register(state.pidfd, select.EPOLLIN | select.EPOLLONESHOT)

    def unwatch(self, state: ChildState) -> None:
        """Leave ``state``'s child to a waiter, who reaps it: nobody wakes this thread."""
        with self._lock, state.lock:
            if state.returncode is None and self._states.get(state.pidfd) is state:
                del self._states[state.pidfd]
                assert self._epoll is not None
                self._epoll.unregister(state.pidfd)

    def _run(self, epoll: select.epoll) -> None:
        block_in_this_thread()
        while True:
            for fd, _ in epoll.poll():
                with self._lock:
                    # A waiter may have reaped the child and its fd number gone to a new
                    # one (or to none) since this event was queued: the event is stale.
                    state = self._states.get(fd)
                    if state is None:
                        continue
                    try:
                        reaped = state.reap()
                    except OSError as exc:
                        # Someone closed our pidfd behind our back: this child is lost
                        # to us, but the thread must live on for the others.
                        log.warning("cannot reap pid %d: %s", state.pid, exc)
                        reaped = True
                    if reaped:
                        del self._states[fd]
                    else:
                        epoll.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)

    def _forget_after_fork(self) -> None:
        # A forked child has no reaper thread and none of these children.
        self._lock = threading.Lock()
        self._epoll = None
        self._states = {}


REAPER = Reaper()
os.register_at_fork(after_in_child=REAPER._forget_after_fork)
