"""Sequences that wait on fds, written once and driven two ways (sans-I/O, as h11 does).

A step sequence is a generator that yields :class:`Wait` ("until one of these fds is
readable, or this deadline") and is sent back the fds that became readable (empty at the
deadline). :func:`drive` runs one with ``poll()``, blocking the calling thread;
:mod:`pyslirp.aio` runs the same generator on an asyncio event loop. The setup sequence,
its validation and its cleanup exist once.
"""

from __future__ import annotations

import math
import select
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Wait:
    """Wait until one of ``fds`` is readable, or until ``deadline`` (a
    :func:`time.monotonic` value; None: no deadline)."""

    fds: tuple[int, ...]
    deadline: float | None


Steps: TypeAlias = Generator[Wait, frozenset[int], T]


class Runner(Generic[T]):
    """One step sequence under a driver: the wait it is at (None once it has ended), and
    an exception thrown into it (Ctrl-C, a cancellation), which goes on once the steps
    have cleaned up. An exception the steps raise comes out of :meth:`send`/:meth:`throw`.
    """

    def __init__(self, steps: Steps[T], first: Wait | None = None) -> None:
        """Start ``steps``, unless the caller did and they are at ``first``."""
        self._steps = steps
        self._pending: BaseException | None = None
        self._value: T | None = None
        self.wait = first
        if first is None:
            self._resume(lambda: next(steps))

    def send(self, ready: frozenset[int]) -> None:
        """Tell the steps which fds of their wait are readable (none: its deadline)."""
        self._resume(lambda: self._steps.send(ready))

    def throw(self, exc: BaseException) -> None:
        """Throw ``exc`` into the steps; they may go on waiting while they clean up."""
        self._pending = self._pending or exc
        self._resume(lambda: self._steps.throw(exc))

    def result(self) -> T:
        """What the ended steps returned, or the exception thrown into them."""
        if self._pending is not None:
            raise self._pending
        return self._value  # type: ignore[return-value]

    def _resume(self, step: Callable[[], Wait]) -> None:
        try:
            self.wait = step()
        except StopIteration as done:
            self.wait, self._value = None, done.value
        except BaseException:
            self.wait = None
            raise


def drive(steps: Steps[T]) -> T:
    """Run ``steps`` to its end in this thread, answering each wait with ``poll()``.

    An exception raised while waiting (Ctrl-C) is thrown into the steps, which may still
    wait while they clean up; it goes on once they end. Steps are never left half run.
    """
    try:
        first = next(steps)
    except StopIteration as done:  # no wait at all (a helper gone already): no runner
        value: T = done.value
        return value
    return _finish(Runner(steps, first))


def _finish(runner: Runner[T]) -> T:
    while runner.wait is not None:
        try:
            ready = _poll(runner.wait)
        except BaseException as exc:  # thrown into the steps, not swallowed
            runner.throw(exc)
            continue
        runner.send(ready)
    return runner.result()


def drive_all(many: Iterable[Steps[object]]) -> None:
    """Run many step sequences at once in this thread: each is resumed when one of the
    fds it waits on is readable or its deadline comes, so their waits overlap. The first
    error is raised once all have ended; Ctrl-C is thrown into every one still running."""
    runners: list[Runner[object]] = []
    errors: list[BaseException] = []
    for steps in many:
        try:
            runners.append(Runner(steps))
        except BaseException as exc:  # the others still run: raised after
            errors.append(exc)
    while live := [runner for runner in runners if runner.wait is not None]:
        waits = [runner.wait for runner in live if runner.wait is not None]
        deadlines = [wait.deadline for wait in waits if wait.deadline is not None]
        union = tuple({fd for wait in waits for fd in wait.fds})
        try:
            ready = _poll(Wait(union, min(deadlines, default=None)))
        except BaseException as exc:  # Ctrl-C: each cleans up as drive() lets it, alone
            for runner in live:
                try:
                    runner.throw(exc)
                    _finish(runner)
                except BaseException as error:
                    errors.append(error)
            raise
        now = time.monotonic()
        for runner, wait in zip(live, waits, strict=True):
            mine = ready.intersection(wait.fds)
            if mine or (wait.deadline is not None and now >= wait.deadline):
                try:
                    runner.send(mine)
                except BaseException as exc:
                    errors.append(exc)
    if errors:
        raise errors[0]


def _poll(wait: Wait) -> frozenset[int]:
    poller = select.poll()  # not select(): a daemon's fds run past FD_SETSIZE (1024)
    for fd in wait.fds:
        poller.register(fd, select.POLLIN)
    while True:
        if wait.deadline is None:
            timeout_ms = None
        else:
            timeout_ms = max(0, math.ceil((wait.deadline - time.monotonic()) * 1000))
        ready = frozenset(fd for fd, _ in poller.poll(timeout_ms))
        if ready or (wait.deadline is not None and time.monotonic() >= wait.deadline):
            return ready
