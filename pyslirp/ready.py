"""Wait for a helper's ready byte, noticing its death at once rather than at a deadline."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Callable

from .errors import ReadyTimeout, StartError
from .spawn import Child

EXIT_GRACE = 0.1  # seconds a helper that closed its ready fd gets to exit


def wait_ready(
    name: str, child: Child, ready_fd: int, deadline: float, log: Callable[[], str]
) -> None:
    """Return once a byte arrives on ``ready_fd``; else raise with the helper's ``log()``.

    The ready pipe and the child's pidfd are polled together, so a helper that exits, is
    killed or closes the pipe without writing is reported the moment it happens.
    ``deadline`` is a :func:`time.monotonic` value; past it :class:`ReadyTimeout`.
    """
    # A copy: the reaper closes the child's own pidfd as soon as it exits, maybe already.
    pidfd = child.dup_pidfd()
    try:
        poller = select.poll()
        poller.register(ready_fd, select.POLLIN)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and pidfd is not None:
                raise ReadyTimeout(f"{name} did not become ready in time{_with_log(log())}")
            events = dict(poller.poll(remaining * 1000 if pidfd is not None else 0))
            # A helper may write its byte and exit at once: the byte wins.
            if events.get(ready_fd):
                if os.read(ready_fd, 1):
                    return
                # EOF: usually the helper is on its way out; say how it ended if it does.
                try:
                    reason = _exit_reason(child.wait(min(EXIT_GRACE, max(remaining, 0.0))))
                except subprocess.TimeoutExpired:
                    reason = "closed its ready fd without writing"
                raise StartError(f"{name} {reason}{_with_log(log())}")
            if pidfd is None or events.get(pidfd):
                raise StartError(f"{name} {_exit_reason(child.wait())}{_with_log(log())}")
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name} before it was ready"
    return f"exited with status {returncode} before it was ready"


def _with_log(text: str) -> str:
    text = text.strip()
    return f": {text}" if text else ""
