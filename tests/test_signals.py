"""Asynchronous signals are held back while a helper has no owner yet."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

import pyslirp
from pyslirp.signals import ASYNC_SIGNALS, signals_deferred


def blocked_mask(native_id: int) -> int:
    for line in Path(f"/proc/self/task/{native_id}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")


def test_ctrl_c_arrives_only_when_the_block_ends():
    reached = False
    with pytest.raises(KeyboardInterrupt), signals_deferred():
        signal.raise_signal(signal.SIGINT)  # to this thread: pending while blocked
        reached = True
    assert reached


def test_pyslirps_threads_leave_async_signals_to_the_application():
    pyslirp.spawn(["true"]).wait()  # starts the reaper thread
    (reaper,) = [t for t in threading.enumerate() if t.name == "pyslirp-reaper"]
    assert reaper.native_id is not None
    mask = blocked_mask(reaper.native_id)
    assert all(mask & (1 << (sig - 1)) for sig in ASYNC_SIGNALS)
