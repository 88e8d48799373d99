"""pyslirp.spawn against real processes: fds, signals, namespaces, errors, reaping."""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import pyslirp
from pyslirp.process import SpawnPlan, file_id

from support.netns import PROGRAMS
from support.processes import (
    children,
    mounted,
    open_fds,
    wait_asleep_in,
    wait_gone,
    wait_reaped,
    zombies,
)

SLEEP = ["sleep", "100"]


def child_fds(pid: int) -> dict[int, str]:
    return {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split()[1]
    raise KeyError(name)


def mount_fields(pid: int, mount_point: str) -> list[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == mount_point:
            return fields
    raise KeyError(mount_point)


def spawn_settled(argv, **kwargs) -> pyslirp.Child:
    """spawn() a ``sleep``, then wait until it sleeps, its start-up over.

    CLONE_VFORK lets us go on as soon as execve replaces the child's memory, a moment
    before the kernel closes its close-on-exec fds, and the dynamic loader opens some
    more: /proc/PID/fd read at once may list fds that are gone a moment later.
    """
    child = pyslirp.spawn(argv, **kwargs)
    assert wait_asleep_in(f"/proc/{child.pid}", "nanosleep")
    return child


@pytest.fixture
def kill_later():
    children: list[pyslirp.Child] = []
    yield children.append
    for child in children:
        child.kill()
        child.wait()


def test_child_has_only_std_fds_and_mapped_ones(hygiene, kill_later):
    stray = os.open("/dev/null", os.O_RDONLY)  # inheritable: must not leak anyway
    os.set_inheritable(stray, True)
    r, w = os.pipe()
    try:
        child = spawn_settled(SLEEP, fds={3: r, 4: w})
        kill_later(child)
        fds = child_fds(child.pid)
        assert set(fds) == {0, 1, 2, 3, 4}
        assert fds[3] == os.readlink(f"/proc/self/fd/{r}")
        assert fds[4] == os.readlink(f"/proc/self/fd/{w}")
    finally:
        for fd in (stray, r, w):
            os.close(fd)


def test_swapped_fds_land_crosswise(hygiene, kill_later):
    a = os.open("/dev/null", os.O_RDONLY)
    b = os.open("/dev/zero", os.O_RDONLY)
    try:
        os.dup2(a, 60)
        os.dup2(b, 61)
        child = spawn_settled(SLEEP, fds={60: 61, 61: 60})
        kill_later(child)
        fds = child_fds(child.pid)
        assert fds[60] == "/dev/zero"
        assert fds[61] == "/dev/null"
    finally:
        for fd in (a, b, 60, 61):
            os.close(fd)


def test_fd_already_in_place_loses_cloexec(hygiene, kill_later):
    r, w = os.pipe()  # close-on-exec, as Python makes every fd
    try:
        os.dup2(r, 70, inheritable=False)
        child = spawn_settled(SLEEP, fds={70: 70, 71: 70})
        kill_later(child)
        fds = child_fds(child.pid)
        assert fds[70] == fds[71] == os.readlink(f"/proc/self/fd/{r}")
    finally:
        for fd in (r, w, 70):
            os.close(fd)


def test_std_streams_take_files_and_devnull(tmp_path, hygiene):
    out = tmp_path / "out"
    with out.open("wb") as f:
        child = pyslirp.spawn(["sh", "-c", "cat; echo done"], stdin=pyslirp.DEVNULL, stdout=f)
        assert child.wait() == 0
    assert out.read_text() == "done\n"


def test_ignored_and_blocked_signals_are_cleared(hygiene, kill_later):
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # Python's own choice
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        child = spawn_settled(SLEEP)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
    kill_later(child)
    assert int(status_field(child.pid, "SigIgn"), 16) == 0
    assert int(status_field(child.pid, "SigBlk"), 16) == 0


@pytest.mark.parametrize("how", ["", "no-clone3"])
def test_signal_state_is_the_same_however_the_child_is_cloned(how):
    """Caught signals and the ones its owner stops it with start at their default; another
    ignored signal (SIGUSR2) stays ignored across exec, as posix_spawn keeps it. The same
    when clone3 is refused (a container runtime's seccomp filter) and spawn falls back."""
    program = PROGRAMS / "signal_state.py"
    out = subprocess.run(
        [sys.executable, str(program), *([how] if how else [])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [f"{1 << (signal.SIGUSR2 - 1):016x}", f"{0:016x}"]


def test_setpgid_makes_the_child_a_group_leader(hygiene, kill_later):
    child = pyslirp.spawn(SLEEP)
    kill_later(child)
    assert os.getpgid(child.pid) == child.pid
    shared = pyslirp.spawn(SLEEP, setpgid=False)
    kill_later(shared)
    assert os.getpgid(shared.pid) == os.getpgrp()


@pytest.mark.parametrize("by_fd", [False, True])
def test_netns_joins_the_namespace(hygiene, netns, kill_later, by_fd):
    fd = os.open(netns, os.O_RDONLY)
    try:
        child = pyslirp.spawn(SLEEP, netns=fd if by_fd else netns)
    finally:
        os.close(fd)
    kill_later(child)
    assert os.stat(f"/proc/{child.pid}/ns/net").st_ino == os.stat(netns).st_ino


def test_pass_netns_hands_the_namespace_over_at_that_fd_without_joining(hygiene, netns):
    child = pyslirp.spawn(
        ["stat", "-L", "-c", "%i", "/proc/self/fd/5", "/proc/self/ns/net"],
        netns=netns,
        pass_netns=5,
        capture_stdout=True,
    )
    assert child.wait() == 0
    handed, own = os.pread(child.fd("out_fd"), 4096, 0).decode().split()
    child.close_fd("out_fd")
    assert int(handed) == os.stat(netns).st_ino
    assert int(own) == os.stat("/proc/self/ns/net").st_ino


@pytest.mark.parametrize("handed", [False, True])
def test_a_missing_netns_path_is_file_not_found_naming_it(tmp_path, hygiene, handed):
    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError) as info:
        pyslirp.spawn(SLEEP, netns=missing, pass_netns=5 if handed else None)
    assert info.value.step == "setns(net)"
    assert info.value.filename == missing


def test_a_fifo_handed_over_as_netns_does_not_hang_the_spawn(tmp_path, hygiene):
    """It is opened without blocking; the program gets the fd and finds no namespace."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    child = pyslirp.spawn(
        ["stat", "-L", "-c", "%F", "/proc/self/fd/5"],
        netns=str(fifo),
        pass_netns=5,
        capture_stdout=True,
    )
    assert child.wait() == 0
    assert os.pread(child.fd("out_fd"), 4096, 0).decode().strip() == "fifo"
    child.close_fd("out_fd")


def test_a_fifo_as_netns_to_join_is_refused_without_hanging(tmp_path, hygiene):
    """Opened without blocking, then refused by setns: the caller waits in vfork meanwhile,
    where no signal reaches it, so a blocking open would hang it until a writer came."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def spawn() -> None:
        try:
            pyslirp.spawn(SLEEP, netns=str(fifo))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=spawn)
    thread.start()
    thread.join(timeout=10)
    hung = thread.is_alive()
    if hung:  # a writer lets the blocked open return
        os.close(os.open(fifo, os.O_WRONLY))
        thread.join()
    assert not hung
    assert isinstance(outcome[0], OSError)
    assert outcome[0].step == "setns(net)"
    assert outcome[0].filename == str(fifo)


def test_pass_netns_without_a_netns_is_a_value_error():
    with pytest.raises(ValueError, match="pass_netns needs netns"):
        pyslirp.spawn(["true"], pass_netns=5)


def test_what_a_slot_holds_for_long_sits_high_once_low_fds_are_many(hygiene, kill_later):
    """Once fds 0-63 are taken (a few dozen networks), the fds a slot holds for long go
    high, so the fds a spawn makes for a moment stay low, and its child copies only those."""
    pipes = [os.pipe() for _ in range(32)]
    try:
        child = pyslirp.spawn(SLEEP, log=True)
        kill_later(child)
        high = min(resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2, 4096)
        assert child.pidfd >= high
        assert child.fd("log_fd") >= high
        assert sorted(child_fds(child.pid)) == [0, 1, 2]
        child.close_fd("log_fd")
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


def test_private_mounts_leave_host_netns_mounted(hygiene, netns, kill_later):
    child = pyslirp.spawn(SLEEP, netns=netns, private_mounts=True)
    kill_later(child)
    assert os.stat(f"/proc/{child.pid}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino
    for mount_point in ("/", "/run/netns", netns):
        fields = mount_fields(child.pid, mount_point)
        assert not any(f.startswith("shared:") for f in fields), fields
    # Unmount in the child's namespace: nothing may propagate back to the host.
    umount = pyslirp.spawn(["umount", "-l", "/run/netns"], private_mounts=True)
    assert umount.wait() == 0
    assert mounted(netns)


def test_missing_executable_is_file_not_found(hygiene):
    with pytest.raises(FileNotFoundError) as info:
        pyslirp.spawn(["/nonexistent/slirp4netns", "--help"])
    assert info.value.filename == "/nonexistent/slirp4netns"
    assert info.value.step == "exec"


def test_missing_command_on_path_is_file_not_found(hygiene):
    with pytest.raises(FileNotFoundError) as info:
        pyslirp.spawn(["pyslirp-no-such-command"])
    assert info.value.filename == "pyslirp-no-such-command"


def test_non_executable_is_permission_error(tmp_path, hygiene):
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError) as info:
        pyslirp.spawn([str(script)])
    assert info.value.filename == str(script)


def test_netns_that_is_not_a_namespace_is_oserror(tmp_path, hygiene):
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(OSError) as info:
        pyslirp.spawn(SLEEP, netns=str(plain))
    assert info.value.step == "setns(net)"
    assert info.value.filename == str(plain)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"fds": {-1: 0}}, ValueError),
        ({"fds": {3: -5}}, ValueError),
        ({"fds": {3: "x"}}, TypeError),
        ({"fds": {0: 0}, "stdin": 0}, ValueError),
        ({"pdeathsig": 999}, ValueError),
        ({"executable": 5}, TypeError),
        ({"env": {"A": "b\0c"}}, ValueError),
    ],
)
def test_bad_arguments_raise_before_any_clone(kwargs, error, hygiene):
    before = children()
    with pytest.raises(error):
        pyslirp.spawn(SLEEP, **kwargs)
    assert children() == before


@pytest.mark.parametrize("argv", ["sleep 1", [], None, [b"ok", 3]])
def test_bad_argv_is_type_error(argv):
    with pytest.raises(TypeError):
        pyslirp.spawn(argv)


def test_env_replaces_the_environment(tmp_path):
    out = tmp_path / "env"
    with out.open("wb") as f:
        assert pyslirp.spawn(["/usr/bin/env"], env={"ONLY": "this"}, stdout=f).wait() == 0
    assert out.read_text() == "ONLY=this\n"


def test_pdeathsig_outlives_the_spawning_thread_not_the_process():
    helper = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "programs" / "pdeathsig_from_a_thread.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        sleep_pid = int(helper.stdout.readline())
        assert not wait_gone(sleep_pid, timeout=0.3), "sleep died with its spawning thread"
    finally:
        helper.kill()
        helper.wait()
    assert wait_gone(sleep_pid, timeout=10), "sleep outlived the process that spawned it"


def test_threads_spawn_concurrently_without_leaks():
    pyslirp.spawn(["true"], exit_fd=3).wait()  # the reaper and owner pipe live on
    before = open_fds()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(40):
                pyslirp.spawn(["/bin/true"], pdeathsig=signal.SIGKILL).wait()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert open_fds() == before
    assert zombies() == []


def test_dropped_child_is_reaped():
    child = pyslirp.spawn(["/bin/true"])
    pid = child.pid
    del child
    assert wait_reaped(pid), f"pid {pid} still a zombie"


def test_wait_returns_exit_status_and_signal():
    assert pyslirp.spawn(["sh", "-c", "exit 7"]).wait() == 7
    child = pyslirp.spawn(SLEEP)
    child.terminate()
    assert child.wait() == -signal.SIGTERM
    assert child.returncode == -signal.SIGTERM
    assert child.pidfd == -1
    child.kill()  # after exit: a no-op, never a stray signal to a reused pid


def test_wait_after_the_reaper_got_there_first():
    child = pyslirp.spawn(["sh", "-c", "exit 3"])
    assert wait_reaped(child.pid)
    assert child.poll() == 3
    assert child.wait() == 3


def test_wait_times_out():
    with pyslirp.spawn(SLEEP) as child:
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.01)
        child.kill()
    assert child.returncode == -signal.SIGKILL


NS_GET_USERNS = 0xB701  # ioctl: the user namespace owning a namespace


def ino(path: str) -> int:
    return os.stat(path).st_ino


def test_new_netns_is_owned_by_the_new_userns(hygiene, kill_later):
    child = pyslirp.spawn(SLEEP, new_netns=True, new_userns=True)
    kill_later(child)
    assert ino(f"/proc/{child.pid}/ns/net") != ino("/proc/self/ns/net")
    assert ino(f"/proc/{child.pid}/ns/user") != ino("/proc/self/ns/user")
    netns = os.open(f"/proc/{child.pid}/ns/net", os.O_RDONLY)
    try:
        owner = fcntl.ioctl(netns, NS_GET_USERNS)
        assert os.fstat(owner).st_ino == ino(f"/proc/{child.pid}/ns/user")
        os.close(owner)
    finally:
        os.close(netns)


def test_a_plan_spawns_nothing_once_its_executable_was_replaced(hygiene, tmp_path):
    """Given what the executable was (``exe_id``), the spawn call checks it before the
    clone: a file put in its place is refused with ESTALE, and nothing runs."""
    exe = tmp_path / "prog"
    shutil.copy("/bin/true", exe)
    plan = SpawnPlan([str(exe)])
    was = file_id(exe)
    assert plan.spawn(exe_id=was).wait() == 0
    shutil.copy("/bin/true", tmp_path / "new")
    os.replace(tmp_path / "new", exe)
    with pytest.raises(OSError) as info:
        plan.spawn(exe_id=was)
    assert (info.value.errno, getattr(info.value, "step", None)) == (
        errno.ESTALE,
        "check the executable",
    )
    assert children() == {}
    assert plan.spawn(exe_id=file_id(exe)).wait() == 0
