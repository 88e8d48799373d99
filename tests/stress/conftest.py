"""Fixtures of the reliability suite: many namespaces, fake helpers, nothing-left checks.

Counts come from the environment so CI runs a bounded subset and a person a long one:
``PYSLIRP_STRESS_N`` cycles over ``PYSLIRP_STRESS_T`` threads (and, in test_fuzz.py,
``PYSLIRP_FUZZ_EXAMPLES`` hypothesis examples per fuzz test).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.leftovers import Leftovers
from support.processes import (
    env_count,
    set_child_subreaper,
    zombies,
)

STRESS_N = env_count("PYSLIRP_STRESS_N", 200)
STRESS_T = env_count("PYSLIRP_STRESS_T", 8)


@pytest.fixture
def stress_counts() -> tuple[int, int]:
    """(cycles, threads) of a load test: ``PYSLIRP_STRESS_N`` and ``PYSLIRP_STRESS_T``."""
    return STRESS_N, min(STRESS_T, STRESS_N)


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
