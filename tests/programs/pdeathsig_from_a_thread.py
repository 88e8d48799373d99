"""Spawn ``sleep 100`` with a death signal from a thread that then exits; once that thread
is gone, print sleep's pid and wait for EOF on stdin (the test then kills this process)."""

import os
import signal
import sys
import threading

import pyslirp

box: list = []


def start() -> None:
    box.append(threading.get_native_id())
    box.append(pyslirp.spawn(["sleep", "100"], pdeathsig=signal.SIGKILL))


thread = threading.Thread(target=start)
thread.start()
thread.join()
while os.path.exists(f"/proc/self/task/{box[0]}"):
    pass  # the OS thread outlives join() by a little: wait until it is really gone
print(box[1].pid, flush=True)
sys.stdin.read()
