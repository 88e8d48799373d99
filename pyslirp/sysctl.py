"""Read and write a network namespace's sysctls without moving a thread for longer than
an open."""

from __future__ import annotations

import errno
import os

from ._spawn import lib

ACCEPT_DAD = "/proc/sys/net/ipv6/conf/default/accept_dad"


def open_sysctl(netns: str, path: str) -> int | None:
    """Open the sysctl file ``path`` of ``netns`` read-write; None if it does not exist.

    The calling thread joins ``netns`` for the open only (``setns`` there and back, in C);
    the fd stays bound to that namespace: read and write it from any thread.
    """
    fd = int(lib.pyslirp_open_in_netns(os.fsencode(netns), os.fsencode(path), os.O_RDWR))
    if fd == -errno.ENOENT:
        return None  # e.g. IPv6 disabled in the kernel
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd), netns)
    return fd
