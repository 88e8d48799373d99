"""Keep asynchronous signals (Ctrl-C above all) away from the moments they would leak."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# What a terminal, a supervisor or a timer sends; never the synchronous faults.
ASYNC_SIGNALS = frozenset(
    {
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGALRM,
        signal.SIGUSR1,
        signal.SIGUSR2,
    }
)


def block_in_this_thread() -> None:
    """Leave asynchronous signals to the application's threads: for pyslirp's own."""
    signal.pthread_sigmask(signal.SIG_BLOCK, ASYNC_SIGNALS)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold asynchronous signals back in the main thread until the block ends.

    Between a helper's spawn and the moment a handle owns it, a KeyboardInterrupt
    would leave the helper running with nobody to stop it. Python runs signal handlers
    in the main thread only, so other threads need no deferring.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = signal.pthread_sigmask(signal.SIG_BLOCK, ASYNC_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, saved)
