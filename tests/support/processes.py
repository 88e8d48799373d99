"""What the tests share: process-hygiene probes (fds, children, zombies, mounts), ports,
ways to run the ``pyslirp`` command (as root or as nobody), and a hypothesis strategy for
any JSON value."""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from .ports import free_port

SIOCGIFADDR = 0x8915


def open_fds() -> dict[int, str]:
    """This process's open fds and what each points at, but for pyslirp's template mount
    namespace (one per process, made anew when a newer mount is needed: see
    pyslirp.mounttemplate)."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:  # the fd listdir itself used
            continue
        if not target.startswith("mnt:["):
            fds[int(name)] = target
    return fds


def processes() -> Iterator[tuple[int, str, str, int]]:
    """Every process as (pid, command name, state letter, parent pid)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
            yield int(entry), stat[stat.index("(") + 1 : stat.rindex(")")], state, int(ppid)


def children(pid: int | None = None) -> dict[int, str]:
    """Direct children of ``pid`` (default: this process) with their state letter."""
    parent = os.getpid() if pid is None else pid
    return {child: state for child, _, state, ppid in processes() if ppid == parent}


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


def poll_until(done: Callable[[], bool], timeout: float) -> bool:
    """Check ``done`` every millisecond until it holds; False if ``timeout`` s pass first.

    Only for states no fd can announce (a /proc entry gone, a thread asleep).
    """
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def wait_reaped(pid: int, timeout: float = 1.0) -> bool:
    """Wait until ``/proc/pid`` is gone (reaped), for at most ``timeout`` seconds."""
    return poll_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout)


@contextmanager
def tmpfs(path: Path, options: str = "size=1m") -> Iterator[Path]:
    """A fresh tmpfs mounted at ``path`` (made here if missing) for the block, unmounted
    after."""
    path.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def mounted(path: str) -> bool:
    """Whether ``path`` is a mount point in this process's mount namespace."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


RUN_MARKER = "PYSLIRP_TEST_RUN"  # set by conftest.py; every process the tests start has it


def pids_of(name: str) -> set[int]:
    """Live processes of this test run whose command name is ``name``.

    They are told apart by the run's marker in their environment, which every helper
    inherits (orphaned or not); another test run's helpers have another one.
    """
    marker = f"{RUN_MARKER}={os.environ[RUN_MARKER]}".encode()
    found = set()
    for pid, comm, state, _ in processes():
        if comm == name and state != "Z":
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue  # gone, or another user's (so another run's)
            if marker in environ:
                found.add(pid)
    return found


def descendants(pid: int) -> dict[int, str]:
    """All live descendants of ``pid`` with their command names."""
    live = [(child, comm, ppid) for child, comm, state, ppid in processes() if state != "Z"]
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, comm, ppid in live:
            if ppid == parent and child not in found:
                found[child] = comm
                frontier.append(child)
    return found


# exe: rootlessport-child, which re-execs itself
HELPER_NAMES = ("slirp4netns", "rootlessport", "exe", "pasta", "passt.avx2")


def helper_pids() -> set[int]:
    """Live slirp4netns, rootlessport and rootlessport-child processes of this session."""
    return {pid for name in HELPER_NAMES for pid in pids_of(name)}


PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def set_child_subreaper(on: bool) -> None:
    """Make this process a child subreaper (or stop it being one): orphans of its
    descendants are re-parented to it instead of to init."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def rss_kib() -> int:
    """This process's resident set size in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def wait_thread_gone(tid: int, timeout: float = 5.0) -> bool:
    """Wait until the OS thread ``tid`` of this process has exited (it outlives
    ``Thread.join()`` by a little); True if it did within ``timeout`` seconds."""
    return poll_until(lambda: not os.path.exists(f"/proc/self/task/{tid}"), timeout)


def wait_asleep_in(task: str, word: str, timeout: float = 5.0) -> bool:
    """Wait until ``task`` (a /proc/... task directory) sleeps in a kernel function whose
    name has ``word`` (its wchan: ``poll``, ``nanosleep``); False if it ends first."""

    def asleep() -> bool:
        try:
            return word in Path(f"{task}/wchan").read_text()
        except FileNotFoundError:
            return True  # gone: stop waiting, the caller will see why

    return poll_until(asleep, timeout) and os.path.exists(task)


def make_executable(directory: Path, name: str, mode: int = 0o755) -> str:
    """A shell script ``directory/name`` (the directory made if need be) with ``mode``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return str(path)


def env_count(name: str, default: int) -> int:
    """A positive count from the environment variable ``name``, else ``default``."""
    value = int(os.environ.get(name, default))
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


TESTS = Path(__file__).resolve().parent.parent
AS_NOBODY = str(TESTS / "as_nobody.py")
PROBE = str(TESTS / "sandbox_probe.py")


def pyslirp(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the ``pyslirp`` command to its end, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "pyslirp", *args],
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


def as_nobody(env: Mapping[str, str], *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Start the ``pyslirp`` command as nobody, with ``env`` as its whole environment."""
    return subprocess.Popen(
        [sys.executable, AS_NOBODY, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
        cwd="/",
        **kwargs,
    )


def probe_helpers(
    run: list[str],
    loopback_port: int,
    python: str = sys.executable,
    helpers_expected: int = 3,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run ``sandbox_probe.py`` as CMD of ``run`` (the command up to ``run``) with a
    published port, so that rootlessport runs too; hand it the helpers' host pids and
    return its report, with those pids as ``helpers``."""
    runner = subprocess.Popen(
        [*run, "-p", f"{free_port()}:8080", "--", python, PROBE, str(loopback_port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
        **kwargs,
    )
    try:
        assert runner.stdin is not None and runner.stdout is not None
        assert runner.stdout.readline() == "ready\n"  # CMD starts once every helper runs
        helpers = {p for p, name in descendants(runner.pid).items() if name in HELPER_NAMES}
        runner.stdin.write(" ".join(map(str, helpers)) + "\n")
        runner.stdin.flush()
        stdout, stderr = runner.communicate(timeout=60)
    finally:
        runner.kill()
        runner.wait()
    assert runner.returncode == 0, stderr
    assert len(helpers) == helpers_expected
    report: dict[str, Any] = json.loads(stdout)
    report["helpers"] = sorted(helpers)
    return report


def host_ipv4() -> str:
    """This machine's first non-loopback IPv4 address (libslirp drops UDP replies to
    127.0.0.1 when host loopback is disabled)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in sorted(n for _, n in socket.if_nameindex()):
            try:
                packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()))
            except OSError:
                continue
            address = socket.inet_ntoa(packed[20:24])
            if not address.startswith("127."):
                return address
    pytest.skip("this machine has no non-loopback IPv4 address")


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
"""Any JSON value (hypothesis): what a peer that speaks JSON might send."""
