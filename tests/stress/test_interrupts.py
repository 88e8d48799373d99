"""Ctrl-C and SIGKILL at random moments of setup and close leave nothing (issue 11).

Counts: ``PYSLIRP_INTERRUPTS`` SIGINTs per test (CI: 200) and ``PYSLIRP_KILLS`` SIGKILLed
owners (CI: 30); by hand, e.g. ``PYSLIRP_INTERRUPTS=2000 PYSLIRP_KILLS=200``.
"""

from __future__ import annotations

import gc
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import pyslirp

from support.options import options
from support.ports import free_port
from support.processes import env_count, helper_pids, wait_gone

pytestmark = pytest.mark.stress

INTERRUPTS = env_count("PYSLIRP_INTERRUPTS", 200)
KILLS = env_count("PYSLIRP_KILLS", 30)
PROGRAMS = Path(__file__).parent.parent / "programs"
# port handler -> about how long a cycle takes, in s (the random delay's range)
HANDLERS = {"none": 0.004, "slirp4netns": 0.006, "rootlesskit": 0.04}


@pytest.mark.parametrize("threads", ["main_only", "with_an_idle_thread"])
def test_random_ctrl_c_in_setup_and_close_leaves_nothing(leftovers, netns_pool, tmp_dir, threads):
    # Round robin: a helper SIGKILLed as it forks may leave its child a moment to die,
    # holding tap0, and the next setup on that netns would rightly say it is busy.
    namespaces = netns_pool(8)
    config = pyslirp.Config(tmp_dir=tmp_dir)
    idle_stop = threading.Event()
    idle = threading.Thread(target=idle_stop.wait)  # the kernel may pick it for SIGINT
    if threads == "with_an_idle_thread":
        idle.start()
    rng = random.Random(int(os.environ.get("PYSLIRP_SEED", "0")) or None)
    handled = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        handled.set()
        raise KeyboardInterrupt

    # A Ctrl-C that lands in a finalizer (__del__) is swallowed there by Python: count
    # those, not have pytest re-raise them after the test.
    swallowed: list[type[BaseException]] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: swallowed.append(unraisable.exc_type)
    previous = signal.signal(signal.SIGINT, on_sigint)
    interrupted = 0
    try:
        for i in range(INTERRUPTS):
            handler = list(HANDLERS)[i % len(HANDLERS)]
            netns = namespaces[i % len(namespaces)]
            opts = options(config, netns, handler, container_id=f"ctrl-c-{handler}")
            delay = rng.uniform(0, HANDLERS[handler])
            timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
            handled.clear()
            try:
                timer.start()
                with pyslirp.setup(opts):
                    pass
                # The signal still comes after the cycle: it must land inside this try.
                while not handled.is_set():
                    time.sleep(0.0005)
            except KeyboardInterrupt:
                interrupted += 1
            timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook
        idle_stop.set()
        if idle.is_alive():
            idle.join()
    gc.collect()  # results dropped halfway: their finalizers finish the job
    assert interrupted + len(swallowed) > INTERRUPTS // 4  # most landed inside a cycle
    assert set(swallowed) <= {KeyboardInterrupt}
    print(f"{INTERRUPTS} SIGINTs: {interrupted} raised, {len(swallowed)} in finalizers")
    leftovers.assert_clean(tmp_dir, namespaces)


def test_random_sigkill_of_the_owner_leaves_no_helper(leftovers, netns_pool, tmp_dir):
    (netns,) = netns_pool(1)
    rng = random.Random(int(os.environ.get("PYSLIRP_SEED", "0")) or None)
    for i in range(KILLS):
        handler = list(HANDLERS)[i % len(HANDLERS)]
        argv = [sys.executable, str(PROGRAMS / "owner.py"), netns, tmp_dir, handler]
        owner = subprocess.Popen(
            [*argv, str(free_port()), "keep"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        time.sleep(rng.uniform(0.05, 0.15))  # the interpreter starts, then setup runs
        owner.kill()
        owner.communicate()
        alive = [pid for pid in helper_pids() if not wait_gone(pid, timeout=5)]
        assert alive == [], f"owner killed in round {i}: helpers left {alive}"
    # What a killed owner leaves on disk (a stale API socket, a rootlessport directory
    # nobody holds) goes with the next setup in the same tmp_dir.
    for handler in HANDLERS:
        argv = [sys.executable, str(PROGRAMS / "owner.py"), netns, tmp_dir, handler]
        done = subprocess.run(
            [*argv, str(free_port()), "keep"], input=b"\n", stdout=subprocess.PIPE, check=True
        )
        assert json.loads(done.stdout)["started"]["slirp4netns"] > 0
    leftovers.assert_clean(tmp_dir, [netns])
