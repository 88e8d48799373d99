"""asyncio: the setup sequence of :mod:`pyslirp.slirp4netns`, driven by the event loop.

Everything setup waits for is an fd (a ready pipe, a pidfd, the API socket), so the loop
waits on them with ``add_reader``: no thread per setup, and a wait can be cancelled at
any point. A cancellation is thrown into the step sequence, which kills and reaps what
it had started and lets the cancellation go on. Works with any asyncio loop (uvloop
too). trio and anyio programs can run the blocking :func:`~pyslirp.setup` in a worker
thread instead (see the README).
"""

from __future__ import annotations

import asyncio
import select
import time
from collections.abc import Generator
from types import TracebackType
from typing import Any, TypeVar

from .addresses import NetStatus, SubnetLike
from .helper import Helper
from .options import SetupOptions
from .rootlessport import rootless_port_mapping_steps
from .slirp4netns import SetupResult, setup_steps
from .steps import Runner, Steps, Wait

__all__ = ["asetup", "asetup_rootless_port_mapping_via_rlk", "run_steps"]

T = TypeVar("T")


class _Setup:
    """What :func:`asetup` returns: awaitable, and an async context manager."""

    def __init__(self, opts: SetupOptions) -> None:
        self._opts = opts
        self._result: SetupResult | None = None

    def __await__(self) -> Generator[Any, None, SetupResult]:
        return run_steps(setup_steps(self._opts)).__await__()

    async def __aenter__(self) -> SetupResult:
        self._result = await self
        return self._result

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._result is not None
        await self._result.aclose()


def asetup(opts: SetupOptions) -> _Setup:
    """:func:`~pyslirp.setup` on the running event loop: ``r = await asetup(opts)``, or
    ``async with asetup(opts) as r:`` (closed with :meth:`SetupResult.aclose` after).

    Same options, errors and validation as :func:`~pyslirp.setup`; cancelled at any
    await, it leaves nothing behind.
    """
    return _Setup(opts)


async def asetup_rootless_port_mapping_via_rlk(
    opts: SetupOptions, slirp_subnet: SubnetLike, net_status: NetStatus | None = None
) -> Helper:
    """:func:`~pyslirp.setup_rootless_port_mapping_via_rlk` on the running event loop."""
    return await run_steps(rootless_port_mapping_steps(opts, slirp_subnet, net_status))


async def run_steps(steps: Steps[T]) -> T:
    """Run ``steps`` (see :mod:`pyslirp.steps`) on the running event loop.

    An exception raised at a wait (a cancellation) is thrown into the steps; they may
    still wait while they clean up, and the exception goes on once they end.
    """
    loop = asyncio.get_running_loop()
    runner = Runner(steps)
    while runner.wait is not None:
        try:
            ready = await _readable(loop, runner.wait)
        except BaseException as exc:  # thrown into the steps, not swallowed
            runner.throw(exc)
            continue
        runner.send(ready)
    return runner.result()


async def _readable(loop: asyncio.AbstractEventLoop, wait: Wait) -> frozenset[int]:
    """The fds of ``wait`` readable once one is (or none, at its deadline)."""
    while True:
        await _woken(loop, wait)
        poller = select.poll()  # every fd that is readable now, as the blocking driver sees
        for fd in wait.fds:
            poller.register(fd, select.POLLIN)
        ready = frozenset(fd for fd, _ in poller.poll(0))
        if ready or wait.deadline is None or time.monotonic() >= wait.deadline:
            return ready  # (a loop's timer may fire a little early: then wait on)


async def _woken(loop: asyncio.AbstractEventLoop, wait: Wait) -> None:
    woken: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    for fd in wait.fds:
        loop.add_reader(fd, wake)
    timer = None
    if wait.deadline is not None:
        timer = loop.call_later(max(0.0, wait.deadline - time.monotonic()), wake)
    try:
        await woken
    finally:
        for fd in wait.fds:
            loop.remove_reader(fd)
        if timer is not None:
            timer.cancel()
