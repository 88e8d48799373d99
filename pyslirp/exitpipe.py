"""The caller's exit pipes: a helper exits at EOF on its exit fd, so check one first."""

from __future__ import annotations

import errno
import select

from .errors import StartError
from .process import FdLike


def check_exit_pipe(helper: str, pipe_r: FdLike) -> None:
    """Raise :class:`~pyslirp.StartError` if ``pipe_r`` is not an open fd, or its write
    end is already closed: ``helper`` would start, get ready and exit at once. (A spawn
    with ``check_exit_fd`` makes the same check in C.)"""
    fd = pipe_r if isinstance(pipe_r, int) else pipe_r.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    events = dict(poller.poll(0)).get(fd, 0)
    if events & select.POLLNVAL:
        raise exit_pipe_error(helper, fd, errno.EBADF)
    if events & select.POLLHUP:
        raise exit_pipe_error(helper, fd, errno.EPIPE)


def exit_pipe_error(helper: str, fd: int, err: int) -> StartError:
    """What is wrong with ``helper``'s exit pipe ``fd``: not open (EBADF), or its write
    end closed (EPIPE)."""
    if err == errno.EPIPE:
        return StartError(
            f"cannot start {helper}: the write end of its exit pipe (fd {fd}) is already "
            "closed, so it would exit as soon as it started"
        )
    return StartError(f"cannot start {helper}: its exit pipe fd {fd} is not open")
