"""A CMD for signal tests: prints ``ready``, then each signal's name as it arrives; exits
0 at SIGTERM."""

import signal
import sys
from types import FrameType


def received(signum: int, frame: FrameType | None) -> None:
    print(signal.Signals(signum).name, flush=True)
    if signum == signal.SIGTERM:
        sys.exit(0)


for sig in (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGWINCH,
    signal.SIGCONT,
):
    signal.signal(sig, received)
print("ready", flush=True)
while True:
    signal.pause()
