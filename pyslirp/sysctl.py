"""Read and write a network namespace's sysctls without moving the calling thread."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from ._spawn import ffi, lib
from .signals import block_in_this_thread

T = TypeVar("T")

ACCEPT_DAD = "/proc/sys/net/ipv6/conf/default/accept_dad"


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a short-lived thread that has joined the network namespace ``netns``.

    The namespace is per thread and the thread ends with the call, so no Python thread
    is ever left in another namespace.
    """
    box: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        block_in_this_thread()
        try:
            # O_NONBLOCK: a FIFO at the path would block this open (and setup) forever.
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                if lib.setns(fd, lib.CLONE_NEWNET) != 0:
                    raise OSError(ffi.errno, os.strerror(ffi.errno), netns)
            finally:
                os.close(fd)
            box.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="pyslirp-netns")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


def open_sysctl(netns: str, path: str) -> int | None:
    """Open the sysctl file ``path`` of ``netns`` read-write; None if it does not exist.

    The fd stays bound to that namespace: read and write it from any thread.
    """

    def open_it() -> int | None:
        try:
            return os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:  # e.g. IPv6 disabled in the kernel
            return None

    return in_netns(netns, open_it)
