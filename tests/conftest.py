"""Shared fixtures: real network namespaces made with ``ip netns``, and hygiene checks."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

import pyslirp

from helpers import open_fds, zombies


@pytest.fixture
def make_netns() -> Iterator[Callable[[], str]]:
    """Makes fresh named network namespaces (``/run/netns`` paths), deleted afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"pyslirp-test-{uuid.uuid4().hex[:10]}")
        subprocess.run(["ip", "netns", "add", names[-1]], check=True)
        return f"/run/netns/{names[-1]}"

    try:
        yield make
    finally:
        for name in names:
            if os.path.exists(f"/run/netns/{name}"):  # a test may delete one itself
                subprocess.run(["ip", "netns", "delete", name], check=True)


@pytest.fixture
def netns(make_netns: Callable[[], str]) -> str:
    """A fresh named network namespace: its ``/run/netns`` path."""
    return make_netns()


@pytest.fixture
def config(tmp_path) -> pyslirp.Config:
    """podman's defaults, with a tmp_dir of the test's own (not yet created)."""
    return pyslirp.Config(tmp_dir=str(tmp_path / "run"))


@pytest.fixture
def hygiene() -> Iterator[None]:
    """Fail the test if it leaks an fd or leaves a zombie child."""
    pyslirp.spawn(["true"]).wait()  # the reaper's epoll fd lives as long as the process
    before = open_fds()
    yield
    assert zombies() == []
    after = open_fds()
    assert after == before, f"fds leaked: {set(after) - set(before)}"


def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError("pyslirp's tests run as root (real namespaces, real helpers)")
