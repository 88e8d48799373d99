"""pyslirp's own threads leave asynchronous signals (Ctrl-C above all) to the application."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pyslirp
from pyslirp.signals import ASYNC_SIGNALS


def blocked_mask(tid: int) -> int:
    for line in Path(f"/proc/self/task/{tid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")


def test_the_reaper_thread_blocks_every_async_signal():
    before = set(os.listdir("/proc/self/task"))
    pyslirp.spawn(["true"]).wait()  # starts the reaper thread if it is not running yet
    ours = {int(tid) for tid in os.listdir("/proc/self/task")} - {
        t.native_id for t in threading.enumerate()
    }
    assert ours, f"no thread of pyslirp's own among {sorted(before)}"
    for tid in ours:
        mask = blocked_mask(tid)
        assert all(mask & (1 << (sig - 1)) for sig in ASYNC_SIGNALS), hex(mask)


def test_the_spawner_thread_blocks_every_async_signal():
    done = threading.Event()

    def spawn_with_pdeathsig() -> None:
        pyslirp.spawn(["true"], pdeathsig=9).wait()
        done.set()

    worker = threading.Thread(target=spawn_with_pdeathsig)
    worker.start()
    worker.join()
    assert done.is_set()
    (spawner,) = [t for t in threading.enumerate() if t.name == "pyslirp-spawner"]
    assert spawner.native_id is not None
    mask = blocked_mask(spawner.native_id)
    assert all(mask & (1 << (sig - 1)) for sig in ASYNC_SIGNALS)
