"""The asynchronous signals pyslirp's own threads leave to the application's."""

from __future__ import annotations

import signal

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
