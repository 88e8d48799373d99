"""The one rule by which pyslirp finds a program named without a slash (Go's LookPath)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyslirp.lookpath import is_executable, look_path

from support.processes import make_executable


def test_the_first_executable_in_path_order_wins(tmp_path: Path) -> None:
    make_executable(tmp_path / "a", "prog", mode=0o644)
    (tmp_path / "b" / "prog").mkdir(parents=True)
    wanted = make_executable(tmp_path / "c", "prog")
    make_executable(tmp_path / "d", "prog")
    path = os.pathsep.join(str(tmp_path / d) for d in "abcd")
    assert look_path("prog", {"PATH": path}) == wanted


def test_relative_and_empty_entries_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_executable(tmp_path / "rel", "prog")
    monkeypatch.chdir(tmp_path)
    assert look_path("prog", {"PATH": "rel::."}) is None
    assert look_path("prog", {"PATH": ""}) is None


def test_the_process_path_is_used_without_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = make_executable(tmp_path / "bin", "prog")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert look_path("prog") == wanted
    assert look_path("prog", {"PATH": "/nonexistent"}) is None


def test_without_path_the_default_path_is_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATH")
    assert look_path("sh") == "/bin/sh"
    assert look_path("sh", {}) == "/bin/sh"


def test_is_executable_wants_an_executable_regular_file(tmp_path: Path) -> None:
    assert is_executable(make_executable(tmp_path, "x"))
    assert not is_executable(make_executable(tmp_path, "y", mode=0o644))
    assert not is_executable(str(tmp_path))
    assert not is_executable(str(tmp_path / "absent"))
