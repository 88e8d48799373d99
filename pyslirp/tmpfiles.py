"""Unnamed log files for helpers: nothing to race on by name, nothing left on disk."""

from __future__ import annotations

import errno
import os
import tempfile

from .errors import StartError

LOG_TAIL = 64 * 1024


def anonymous_file(directory: str) -> int:
    """An unnamed read-write file in ``directory`` (created if missing), as an fd.

    O_TMPFILE where the filesystem has it, else a file unlinked the moment it exists.
    """
    try:
        try:
            return _open_unnamed(directory)
        except FileNotFoundError:
            os.makedirs(directory, mode=0o700, exist_ok=True)  # only the first time
            return _open_unnamed(directory)
    except OSError as exc:
        raise StartError(f"cannot create a log file in tmp_dir {directory!r}: {exc}") from exc


def _open_unnamed(directory: str) -> int:
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR):
            raise
    fd, name = tempfile.mkstemp(dir=directory, prefix=".pyslirp-log-")
    os.unlink(name)
    return fd


def read_tail(fd: int) -> str:
    """The last 64 KiB written to the file ``fd``."""
    size = os.fstat(fd).st_size
    start = max(0, size - LOG_TAIL)
    return os.pread(fd, size - start, start).decode(errors="replace")
