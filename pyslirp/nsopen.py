"""Namespaces handed to a helper by fd, as ``/proc/self/fd/N``.

A path the helper could not open itself (a process's namespace once it dropped its
capabilities, or any netns path from inside slirp4netns's template mount namespace) is
opened here and mapped onto a fixed fd of the helper's.
"""

from __future__ import annotations

import errno
import os
from typing import BinaryIO

from .errors import StartError
from .helper import start_error

__all__ = ["fd_path", "open_namespace"]


def fd_path(fd: int) -> str:
    """How a helper names the namespace it has at its fd ``fd``."""
    return f"/proc/self/fd/{fd}"


def open_namespace(path: str, what: str) -> BinaryIO:
    """Open the namespace at ``path`` (a file object: a Ctrl-C between the open and its
    owner leaves nothing); :class:`~pyslirp.StartError` naming it when it cannot be (and
    saying so plainly when this process is out of fds).

    Non-blocking: a FIFO given as the path must not hang us here; the helper, opening it
    again through the fd, blocks as it would have on the path, until its deadline.
    """
    try:
        return open(path, "rb", buffering=0, opener=_nonblocking)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise start_error(f"cannot open {what} {path}", exc) from exc
        raise StartError(
            f"Couldn't open {what} {path}: {exc.strerror} "
            f"(netns must be the path of a network namespace (/run/netns/NAME, "
            f"/proc/PID/ns/net))"
        ) from exc


def _nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)
