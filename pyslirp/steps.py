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
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Wait:
    """Wait until one of ``fds`` is readable, or until ``deadline`` (a
    :func:`time.monotonic` value; None: no deadline)."""

    fds: tuple[int, ...]
    deadline: float | None


Steps: TypeAlias = Generator[Wait, frozenset[int], T]


def drive(steps: Steps[T]) -> T:
    """Run ``steps`` to its end in this thread, answering each wait with ``poll()``.

    An exception raised while waiting (Ctrl-C) is thrown into the steps, which may still
    wait while they clean up; it goes on once they end. Steps are never left half run.
    """
    pending: BaseException | None = None
    try:
        wait = next(steps)
        while True:
            try:
                ready = _poll(wait)
            except BaseException as exc:  # thrown into the steps, not swallowed
                pending = pending or exc
                wait = steps.throw(exc)
                continue
            wait = steps.send(ready)
    except StopIteration as done:
        if pending is not None:
            raise pending from None
        return done.value  # type: ignore[no-any-return]


def drive_all(many: Iterable[Steps[object]]) -> None:
    """Run many step sequences at once in this thread: each is resumed when one of the
    fds it waits on is readable or its deadline comes, so their waits overlap. The first
    error is raised once all have ended; Ctrl-C is thrown into every one still running."""
    waits: dict[Steps[object], Wait] = {}
    errors: list[BaseException] = []

    def resume(steps: Steps[object], ready: frozenset[int] | BaseException) -> None:
        try:
            if isinstance(ready, BaseException):
                waits[steps] = steps.throw(ready)
            else:
                waits[steps] = steps.send(ready) if steps in waits else next(steps)
        except StopIteration:
            waits.pop(steps, None)
        except BaseException as exc:  # the others still end: raised after
            waits.pop(steps, None)
            errors.append(exc)

    for steps in many:
        resume(steps, frozenset())
    while waits:
        deadlines = [w.deadline for w in waits.values() if w.deadline is not None]
        union = tuple({fd for w in waits.values() for fd in w.fds})
        try:
            ready = _poll(Wait(union, min(deadlines, default=None)))
        except BaseException as exc:  # Ctrl-C: each cleans up as drive() would let it
            for steps in list(waits):
                resume(steps, exc)
                if steps in waits:
                    waits.pop(steps)
                    try:
                        drive(steps)
                    except BaseException as error:
                        errors.append(error)
            raise
        now = time.monotonic()
        for steps, wait in list(waits.items()):
            mine = ready.intersection(wait.fds)
            if mine or (wait.deadline is not None and now >= wait.deadline):
                resume(steps, mine)
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
