"""Namespaces for the benchmark: made and removed in batches, entered per thread, watched
through netlink for the moment an IPv6 address becomes usable."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")

NETNS_DIR = "/run/netns"
ACCEPT_DAD = "/proc/sys/net/ipv6/conf/default/accept_dad"
CLONE_NEWNET = 0x40000000
RTMGRP_IPV6_IFADDR = 0x100
RTM_NEWADDR = 20
IFA_FLAGS = 8
IFA_F_TENTATIVE = 0x40
RT_SCOPE_UNIVERSE = 0

_libc = ctypes.CDLL(None, use_errno=True)


def create(names: Iterable[str]) -> list[str]:
    """Create the named network namespaces with one ``ip -batch``; return their paths."""
    names = list(names)
    if names:
        script = "".join(f"netns add {name}\n" for name in names)
        subprocess.run(["ip", "-batch", "-"], input=script.encode(), check=True)
    return [os.path.join(NETNS_DIR, name) for name in names]


def delete(names: Iterable[str]) -> None:
    """Delete the named network namespaces (missing ones are skipped)."""
    present = set(os.listdir(NETNS_DIR)) if os.path.isdir(NETNS_DIR) else set()
    script = "".join(f"netns delete {name}\n" for name in names if name in present)
    if script:
        subprocess.run(["ip", "-force", "-batch", "-"], input=script.encode(), check=False)


def delete_prefixed(prefix: str) -> None:
    """Delete every namespace whose name starts with ``prefix``."""
    if os.path.isdir(NETNS_DIR):
        delete(name for name in os.listdir(NETNS_DIR) if name.startswith(prefix))


def kill_prefixed(prefix: str) -> list[int]:
    """SIGKILL processes whose command line mentions ``prefix``; return their pids."""
    killed = []
    needle = prefix.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle not in f.read():
                    continue
            os.kill(int(entry), signal.SIGKILL)
            killed.append(int(entry))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return killed


def in_netns(path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a short-lived thread inside the network namespace at ``path``."""
    box: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err), path)
            finally:
                os.close(fd)
            box.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


def swap_accept_dad(path: str, value: str) -> str:
    """Set accept_dad for new interfaces in the netns at ``path``; return the old value."""

    def swap() -> str:
        with open(ACCEPT_DAD, "r+") as f:
            old = f.read().strip()
            f.seek(0)
            f.write(value)
            return old

    return in_netns(path, swap)


def address_watch(path: str) -> socket.socket:
    """A netlink socket in the netns at ``path`` that hears of IPv6 address changes."""

    def open_socket() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        sock.bind((0, RTMGRP_IPV6_IFADDR))
        return sock

    return in_netns(path, open_socket)


def wait_global_v6(sock: socket.socket, timeout: float = 10.0) -> None:
    """Block until ``sock`` reports a global IPv6 address that is not tentative.

    The same event-driven wait as the C floor's: no polling interval to add noise.
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
            raise TimeoutError("no usable global IPv6 address in time")
        data = sock.recv(65536)
        offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if length < 16:
                break
            if kind == RTM_NEWADDR and _usable_v6(data[offset + 16 : offset + length]):
                return
            offset += (length + 3) & ~3


def _usable_v6(msg: bytes) -> bool:
    family, _prefixlen, flags, scope, _index = struct.unpack_from("=BBBBI", msg)
    if family != socket.AF_INET6 or scope != RT_SCOPE_UNIVERSE:
        return False
    offset = 8
    while offset + 4 <= len(msg):
        length, kind = struct.unpack_from("=HH", msg, offset)
        if length < 4:
            break
        if kind == IFA_FLAGS:
            (flags,) = struct.unpack_from("=I", msg, offset + 4)
        offset += (length + 3) & ~3
    return not flags & IFA_F_TENTATIVE
