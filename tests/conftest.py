"""Shared fixtures: real network namespaces made with ``ip netns``, and hygiene checks.

Tests that need root (real namespaces, real helpers) say so with ``@pytest.mark.root`` or
by using a namespace fixture; without root they are skipped, so the rest runs anywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pyslirp
from pyslirp import config as pyslirp_config
from pyslirp import features as pyslirp_features
from pyslirp import slirp4netns as pyslirp_slirp4netns

from support.fakes import fake_rootlessport as _fake_rootlessport
from support.fakes import fake_slirp4netns as _fake_slirp4netns
from support.leftovers import Leftovers
from support.processes import RUN_MARKER

NEEDS_ROOT = "needs root: makes real namespaces or runs the real helpers"


def skip_unless_root() -> None:
    """Skip the running test, saying why, when this process is not root."""
    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"root: {NEEDS_ROOT}; skipped without root")
    # Every process this run starts inherits it: leftover checks see this run's only.
    os.environ.setdefault(RUN_MARKER, uuid.uuid4().hex)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None:
        skip_unless_root()


@pytest.fixture(autouse=True)
def _forget_caches() -> None:
    """No test sees what another test's lookup, feature probe or setup plan remembered."""
    pyslirp_config.clear_helper_cache()
    pyslirp_features.clear_cache()
    pyslirp_slirp4netns.forget_plans()


@pytest.fixture
def make_netns() -> Iterator[Callable[[], str]]:
    """Makes fresh named network namespaces (``/run/netns`` paths), deleted afterwards."""
    skip_unless_root()
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
def short_tmp() -> Iterator[Path]:
    """A fresh directory with a short path: rootlessport's sockets go below tmp_dir, and
    a unix socket address holds 107 bytes (pytest's tmp_path is too deep for that)."""
    path = Path(tempfile.mkdtemp(prefix="pyslirp-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config(short_tmp: Path) -> pyslirp.Config:
    """podman's defaults, with a tmp_dir of the test's own (not yet created)."""
    return pyslirp.Config(tmp_dir=str(short_tmp / "run"))


@pytest.fixture
def hygiene() -> Iterator[None]:
    """Fail the test if it leaks an fd, leaves a zombie or a child, or a helper running."""
    probe = Leftovers()
    yield
    probe.assert_clean(None)


@pytest.fixture
def fake_slirp4netns(short_tmp: Path) -> Callable[[str], pyslirp.Config]:
    """A Config whose slirp4netns is a shell script: ``--help`` as 1.2.0's, then ``body``
    (see :func:`support.fakes.fake_slirp4netns`)."""

    def make(body: str) -> pyslirp.Config:
        fake = _fake_slirp4netns(short_tmp / "fakes", body)
        return pyslirp.Config(tmp_dir=str(short_tmp / "run"), network_cmd_path=str(fake))

    return make


@pytest.fixture
def fake_rootlessport(short_tmp: Path) -> Callable[[str], pyslirp.Config]:
    """A Config whose rootlessport is a shell script running ``body``; slirp4netns is the
    real one (see :func:`support.fakes.fake_rootlessport`)."""

    def make(body: str) -> pyslirp.Config:
        helpers = _fake_rootlessport(short_tmp / "helpers", body).parent
        return pyslirp.Config(tmp_dir=str(short_tmp / "run"), helper_binaries_dir=(str(helpers),))

    return make
