"""The console script's first code: a Ctrl-C while the CLI is still loading ends it with
130, as a Ctrl-C anywhere later does, never with a traceback."""

import os
import signal
import sys


def _loading_interrupted(signum: int, frame: object) -> None:
    os._exit(128 + signal.SIGINT)


def main() -> None:
    """``pyslirp``: see :mod:`pyslirp.cli`."""
    signal.signal(signal.SIGINT, _loading_interrupted)
    from .cli import main as cli_main

    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(cli_main())
