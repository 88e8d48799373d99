"""Process-hygiene probes the tests share: fds, children, zombies, mounts."""

from __future__ import annotations

import os
import select
import socket
import time
from pathlib import Path


def open_fds() -> dict[int, str]:
    """This process's open fds and what each points at."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:  # the fd listdir itself used
            pass
    return fds


def children(pid: int | None = None) -> dict[int, str]:
    """Direct children of ``pid`` (default: this process) with their state letter."""
    parent = os.getpid() if pid is None else pid
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            found[int(entry)] = fields[0]
    return found


def zombies() -> list[int]:
    """Children of this process that have exited and not been reaped."""
    return [pid for pid, state in children().items() if state == "Z"]


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """Wait (on a pidfd) until ``pid`` has exited; True if it did in time."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


def wait_reaped(pid: int, timeout: float = 1.0) -> bool:
    """Poll until ``/proc/pid`` is gone (reaped), for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def mounted(path: str) -> bool:
    """Whether ``path`` is a mount point in this process's mount namespace."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def pids_of(name: str) -> set[int]:
    """Live (not yet exited) processes whose command name is ``name``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            if comm == name and stat[stat.rindex(")") + 2] != "Z":
                found.add(int(entry))
    return found


def descendants(pid: int) -> dict[int, str]:
    """All live descendants of ``pid`` with their command names."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
                names[int(entry)] = stat[stat.index("(") + 1 : stat.rindex(")")]
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = names[child]
                frontier.append(child)
    return found


HELPER_NAMES = ("slirp4netns", "rootlessport", "exe")  # rootlessport-child re-execs itself


def helper_pids() -> set[int]:
    """Live slirp4netns, rootlessport and rootlessport-child processes, anyone's."""
    return {pid for name in HELPER_NAMES for pid in pids_of(name)}


def rss_kib() -> int:
    """This process's resident set size in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def wait_thread_gone(tid: int, timeout: float = 5.0) -> bool:
    """Poll until the OS thread ``tid`` of this process has exited (it outlives
    ``Thread.join()`` by a little); True if it did within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/self/task/{tid}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def wait_blocked_in_poll(tid: int, timeout: float = 5.0) -> bool:
    """Poll until thread ``tid`` of this process sleeps in poll/select/epoll; True if it
    did within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/self/task/{tid}/wchan") as f:
                if "poll" in f.read():
                    return True
        except FileNotFoundError:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A host port nothing is bound to right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("0.0.0.0", 0))
        port: int = s.getsockname()[1]
        return port


def env_count(name: str, default: int) -> int:
    """A positive count from the environment variable ``name``, else ``default``."""
    value = int(os.environ.get(name, default))
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value
