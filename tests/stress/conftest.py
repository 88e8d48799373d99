"""Fixtures of the reliability suite: many namespaces, fake helpers, nothing-left checks.

Counts come from the environment so CI runs a bounded subset and a person a long one:
``PYSLIRP_STRESS_N`` cycles over ``PYSLIRP_STRESS_T`` threads (and, in test_fuzz.py,
``PYSLIRP_FUZZ_EXAMPLES`` hypothesis examples per fuzz test).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

import pyslirp

from support.processes import (
    children,
    env_count,
    helper_pids,
    mounted,
    open_fds,
    set_child_subreaper,
    wait_gone,
    zombies,
)

STRESS_N = env_count("PYSLIRP_STRESS_N", 200)
STRESS_T = env_count("PYSLIRP_STRESS_T", 8)


@pytest.fixture
def stress_counts() -> tuple[int, int]:
    """(cycles, threads) of a load test: ``PYSLIRP_STRESS_N`` and ``PYSLIRP_STRESS_T``."""
    return STRESS_N, min(STRESS_T, STRESS_N)


class Leftovers:
    """What this process had when a test began, and the check that it got nothing more.

    Helper processes are told apart by name (slirp4netns, rootlessport, its re-exec'd
    child ``exe``) minus those already running, so run the suite alone on a machine.
    """

    def __init__(self) -> None:
        pyslirp.spawn(["true"], exit_fd=3).wait()  # the reaper and owner pipe live on
        self.fds = open_fds()
        self.helpers = helper_pids()

    def new_helpers(self) -> set[int]:
        return helper_pids() - self.helpers

    def assert_clean(
        self, tmp_dir: str | os.PathLike[str] | None, netns: Sequence[str] = ()
    ) -> None:
        """No new helper alive (a dying one gets 5 s), no zombie or child, the same fds,
        every netns still mounted, ``tmp_dir`` absent or empty."""
        alive = [pid for pid in self.new_helpers() if not wait_gone(pid, timeout=5)]
        assert alive == [], f"helpers left running: {alive}"
        assert zombies() == []
        assert children() == {}
        fds = open_fds()
        assert fds == self.fds, (
            f"fds changed: new {sorted(set(fds.items()) - set(self.fds.items()))}, "
            f"gone {sorted(set(self.fds.items()) - set(fds.items()))}"
        )
        unmounted = [path for path in netns if not mounted(path)]
        assert unmounted == [], f"netns no longer mounted: {unmounted}"
        if tmp_dir is not None and os.path.exists(tmp_dir):
            left = sorted(p.name for p in Path(tmp_dir).iterdir())
            assert left == [], f"left in tmp_dir: {left}"

    def kill_new_helpers(self) -> None:
        for pid in self.new_helpers():
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            finally:
                os.close(pidfd)


@pytest.fixture
def leftovers() -> Iterator[Leftovers]:
    """A :class:`Leftovers` snapshot; whatever the test leaves running is killed after."""
    probe = Leftovers()
    try:
        yield probe
    finally:
        probe.kill_new_helpers()


@pytest.fixture
def subreaper(leftovers: Leftovers) -> Iterator[None]:
    """Make this process a child subreaper, as a daemon that is PID 1 of a container is:
    processes the helpers leave orphaned come to it, and must not stay its zombies."""
    set_child_subreaper(True)
    try:
        yield
    finally:
        set_child_subreaper(False)
        for pid in zombies():  # after a failure: keep it from failing the next tests
            os.waitpid(pid, os.WNOHANG)


@pytest.fixture
def netns_pool(make_netns: Callable[[], str]) -> Callable[[int], list[str]]:
    """Make ``count`` named network namespaces; all are deleted after the test."""
    return lambda count: [make_netns() for _ in range(count)]


@pytest.fixture
def tmp_dir(short_tmp: Path) -> str:
    """The ``tmp_dir`` given to setup (made by setup itself), short enough for
    rootlessport's sockets under it."""
    return str(short_tmp / "run")
