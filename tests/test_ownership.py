"""Helpers never outlive their owner: killed, interrupted, forked or dropped (issue 11)."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyslirp

from support.options import options
from support.ports import free_port
from support.processes import children, descendants, open_fds, pids_of, wait_gone, zombies

pytestmark = pytest.mark.root  # real helpers in real namespaces

PROGRAMS = Path(__file__).parent / "programs"
HANDLERS = ["none", "rootlesskit", "slirp4netns"]


class Owner:
    """tests/programs/owner.py: a process that owns helpers, for the test to kill."""

    def __init__(self, netns: str, tmp_dir: str, handler: str, mode: str, *pass_fds: int):
        argv = [sys.executable, str(PROGRAMS / "owner.py"), netns, tmp_dir, handler]
        argv += [str(free_port()), mode, *map(str, pass_fds)]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=pass_fds
        )
        assert self.process.stdout is not None
        self.stdin = self.process.stdin
        report = json.loads(self.process.stdout.readline())
        started: dict[str, int] = report["started"]
        self.worker: int = report["worker"]
        self.helpers = set(started.values())
        if "rootlessport" in started:  # and rootlessport-child, which it re-exec'd
            self.helpers |= set(descendants(started["rootlessport"]))

    def finish(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def owner(config, netns) -> Iterator[type[Owner]]:
    made: list[Owner] = []

    def make(handler: str, mode: str = "keep", *pass_fds: int) -> Owner:
        made.append(Owner(netns, config.tmp_dir, handler, mode, *pass_fds))
        return made[-1]

    yield make  # type: ignore[misc]
    for one in made:
        one.kill()


# --- 1. helpers die with the process that owns them -------------------------------------


@pytest.mark.parametrize("handler", HANDLERS)
def test_helpers_die_when_their_owner_is_sigkilled(owner, handler):
    running = owner(handler)
    assert len(running.helpers) == {"none": 1, "rootlesskit": 3, "slirp4netns": 1}[handler]
    running.kill()
    alive = [pid for pid in running.helpers if not wait_gone(pid, timeout=5)]
    assert alive == []


def test_a_callers_exit_pipe_alone_decides(owner):
    exit_r, exit_w = os.pipe()
    try:
        running = owner("none", "caller-pipe", exit_r)
        os.close(exit_r)
        running.kill()
        (slirp4netns,) = running.helpers
        assert not wait_gone(slirp4netns, timeout=0.2)  # podman's semantics: still up
    finally:
        os.close(exit_w)
    assert wait_gone(slirp4netns, timeout=5)


@pytest.mark.parametrize("handler", HANDLERS)
def test_detached_helpers_live_as_long_as_the_process(owner, handler):
    running = owner(handler, "detach")  # detached, its handle dropped and collected
    assert all(not wait_gone(pid, timeout=0.1) for pid in running.helpers)
    assert running.finish() == 0
    alive = [pid for pid in running.helpers if not wait_gone(pid, timeout=5)]
    assert alive == []


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_dropped_result_warns_and_its_helpers_stop(hygiene, config, netns, handler):
    result = pyslirp.setup(options(config, netns, handler))
    pids = {result.pid} | ({result.rootlessport.pid} if result.rootlessport else set())
    with pytest.warns(ResourceWarning, match="unclosed <SetupResult"):
        del result
        gc.collect()
    assert all(wait_gone(pid, timeout=5) for pid in pids)
    assert not list(Path(config.tmp_dir).glob("*")) or handler == "none"


def test_a_dropped_helper_warns_and_stops(hygiene):
    helper = pyslirp.Helper("sleep")
    helper.spawn(["sleep", "100"])
    pid = helper.pid
    with pytest.warns(ResourceWarning, match="unclosed <Helper sleep"):
        del helper
        gc.collect()
    assert wait_gone(pid, timeout=5)


# --- 3. what can fail after the clone --------------------------------------------------


def test_a_tiny_thread_stack_does_not_crash_the_spawn():
    program = PROGRAMS / "small_stack.py"
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0"]


def test_no_thread_for_the_reaper_is_a_start_error_and_nothing_runs(config, netns):
    program = PROGRAMS / "no_threads.py"
    done = subprocess.run(
        [sys.executable, str(program), netns, config.tmp_dir], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "cannot start /usr/bin/slirp4netns" in done.stdout
    assert "Resource temporarily unavailable" in done.stdout
    assert pids_of("slirp4netns") == set()


# --- 4. fork ----------------------------------------------------------------------------


@pytest.mark.parametrize("handler", HANDLERS)
def test_close_in_a_forked_child_leaves_the_parents_helpers(hygiene, config, netns, handler):
    with pyslirp.setup(options(config, netns, handler)) as result:
        pid = os.fork()
        if pid == 0:
            result.close()  # a `with` block unwinding in a pre-fork server's worker
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        assert result.returncode is None
        if result.rootlessport is not None:
            assert result.rootlessport.returncode is None
        if result.api_socket is not None:
            assert os.path.exists(result.api_socket)


@pytest.mark.parametrize("handler", ["none", "rootlesskit"])
def test_a_forked_worker_does_not_keep_its_parents_helpers_alive(owner, handler):
    """A pre-fork server's worker outlives its parent: the parent's helpers must not."""
    running = owner(handler, "fork-worker")
    assert running.stdin is not None
    running.process.kill()  # the owner; its forked worker lives on (no owner pipe in it)
    running.process.wait()
    alive = [pid for pid in running.helpers if not wait_gone(pid, timeout=5)]
    assert alive == []
    assert not wait_gone(running.worker, timeout=0)
    running.stdin.close()  # the worker's stdin too
    assert wait_gone(running.worker, timeout=5)


def test_a_probe_lock_held_at_fork_does_not_block_the_child(tmp_path):
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    slow = tmp_path / "slow-slirp4netns"
    slow.write_text(f"#!/bin/sh\nread _ < {gate}\necho --mtu\n")
    slow.chmod(0o755)
    prober = threading.Thread(target=pyslirp.probe_features, args=(str(slow),))
    prober.start()
    try:
        pid = os.fork()
        if pid == 0:
            signal.alarm(10)  # a deadlock ends the child with SIGALRM
            pyslirp.probe_features("/usr/bin/slirp4netns")
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
    finally:
        with open(gate, "w") as release:
            release.write("go\n")
        prober.join()


# --- 5. two setups, one container id ---------------------------------------------------


def test_two_setups_with_one_container_id_at_once(hygiene, config, make_netns):
    results: list[object] = []
    start = threading.Barrier(2)

    def one(netns: str) -> None:
        start.wait()
        try:
            results.append(pyslirp.setup(options(config, netns, "slirp4netns")))
        except pyslirp.StartError as exc:
            results.append(exc)

    for _ in range(10):
        threads = [threading.Thread(target=one, args=(make_netns(),)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ok = [r for r in results if isinstance(r, pyslirp.SetupResult)]
        refused = [r for r in results if isinstance(r, pyslirp.StartError)]
        assert len(ok) == 1 and len(refused) == 1, results
        assert "is in use" in str(refused[0])
        (winner,) = ok
        assert winner.api_socket is not None
        assert os.path.exists(winner.api_socket)
        winner.close()
        assert not os.path.exists(winner.api_socket)
        results.clear()


def test_close_removes_only_the_socket_it_made(hygiene, config, netns):
    result = pyslirp.setup(options(config, netns, "slirp4netns"))
    assert result.api_socket is not None
    os.unlink(result.api_socket)
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(result.api_socket)  # someone else's, at the same path
        result.close()
        assert os.path.exists(result.api_socket)
    os.unlink(result.api_socket)


def test_a_foreign_listener_with_a_full_backlog_is_refused_in_time(hygiene, config, netns):
    os.makedirs(config.tmp_dir)
    path = os.path.join(config.tmp_dir, "ctr.net")
    with socket.socket(socket.AF_UNIX) as foreign:
        foreign.bind(path)
        foreign.listen(0)
        clients = []
        try:
            for _ in range(4):  # fill the backlog: a blocking connect would now hang
                client = socket.socket(socket.AF_UNIX)
                client.setblocking(False)
                try:
                    client.connect(path)
                except BlockingIOError:
                    client.close()
                    break
                clients.append(client)
            started = time.monotonic()
            with pytest.raises(pyslirp.StartError, match="api socket"):
                pyslirp.setup(options(config, netns, "slirp4netns", ready_timeout=1.0))
            assert time.monotonic() - started < 5
        finally:
            for client in clients:
                client.close()
    os.unlink(path)


# --- 6. the API socket is private whatever the umask -----------------------------------


def test_api_socket_is_ours_alone_under_umask_000(hygiene, config, netns):
    previous = os.umask(0)
    try:
        with pyslirp.setup(options(config, netns, "slirp4netns")) as result:
            assert result.api_socket is not None
            assert os.stat(result.api_socket).st_mode & 0o077 == 0
    finally:
        os.umask(previous)


# --- 7. rootlessport cleans up ----------------------------------------------------------


def test_rootlessport_state_is_removed_with_a_callers_exit_pipe(hygiene, config, netns):
    exit_r, exit_w = os.pipe()
    try:
        opts = options(config, netns, "rootlesskit", rootless_port_exit_pipe_r=exit_r)
        with pyslirp.setup(opts) as result:
            assert result.rootlessport is not None
            assert result.rootlessport.private_dir is not None
            assert os.listdir(result.rootlessport.private_dir) != []
    finally:
        os.close(exit_r)
        os.close(exit_w)
    assert os.listdir(config.tmp_dir) == []


def test_a_killed_owners_rootlessport_state_goes_with_the_next_setup(owner, config, netns):
    running = owner("rootlesskit")
    running.kill()
    assert all(wait_gone(pid, timeout=5) for pid in running.helpers)
    assert [name for name in os.listdir(config.tmp_dir) if name.startswith("pyslirp-")]
    with pyslirp.setup(options(config, netns, "rootlesskit")):
        pass
    assert os.listdir(config.tmp_dir) == []


# --- 8. a subreaper's zombies ------------------------------------------------------------


def test_a_failing_rootlessport_leaves_no_zombie_with_a_subreaper(
    hygiene, short_tmp, fake_rootlessport, netns
):
    from support.processes import set_child_subreaper

    config = fake_rootlessport('sleep 100 &\necho $! > "$0.child"\nexit 1')
    helpers_dir = short_tmp / "helpers"
    set_child_subreaper(True)
    try:
        with pytest.raises(pyslirp.StartError, match="exited with status 1"):
            pyslirp.setup(options(config, netns, "rootlesskit"))
        orphan = int((helpers_dir / "rootlessport.child").read_text())
        assert wait_gone(orphan, timeout=5)
        assert zombies() == []
        assert children() == {}
    finally:
        set_child_subreaper(False)


# --- what a live network holds ------------------------------------------------------------


def test_a_live_network_holds_two_fds(hygiene, config, make_netns):
    pyslirp.setup(options(config, make_netns())).close()  # the owner pipe exists
    before = len(open_fds())
    results = [pyslirp.setup(options(config, make_netns(), container_id=f"c{i}")) for i in range(4)]
    try:
        assert len(open_fds()) - before == 2 * len(results)  # its pidfd and its log
    finally:
        for result in results:
            result.close()


# --- many at once (issue 16) --------------------------------------------------------------


def test_close_all_signals_every_helper_before_it_reaps_any(
    hygiene, short_tmp, fake_slirp4netns, make_netns
):
    journal = short_tmp / "journal"
    stamp = f'echo "$1 $(date +%s%N)" >> {journal}'
    config = fake_slirp4netns(
        f"stamp() {{ {stamp}; }}\n"
        "trap 'stamp term; sleep 0.2; stamp exit; exit 0' TERM\n"
        "printf 1 >&3\nwhile :; do sleep 0.05; done"
    )
    results = [pyslirp.setup(options(config, make_netns(), container_id=f"c{i}")) for i in range(6)]
    pyslirp.close_all(results)
    stamps = [line.split() for line in journal.read_text().splitlines()]
    terms = [int(t) for event, t in stamps if event == "term"]
    exits = [int(t) for event, t in stamps if event == "exit"]
    assert len(terms) == len(exits) == 6
    assert max(terms) < min(exits)  # the stops overlapped: none waited for another
    assert all(result.returncode == 0 for result in results)


@pytest.mark.parametrize("handler", HANDLERS)
def test_close_all_leaves_nothing(hygiene, config, make_netns, handler):
    results = [
        pyslirp.setup(options(config, make_netns(), handler, container_id=f"c{i}"))
        for i in range(5)
    ]
    pids = {r.pid for r in results} | {r.rootlessport.pid for r in results if r.rootlessport}
    pyslirp.close_all(results)
    assert all(wait_gone(pid, timeout=0) for pid in pids)
    assert not Path(config.tmp_dir).exists() or os.listdir(config.tmp_dir) == []


def test_ctrl_c_during_close_all_still_closes_every_network(hygiene, fake_slirp4netns, make_netns):
    config = fake_slirp4netns(
        "trap 'sleep 0.3; exit 0' TERM\nprintf 1 >&3\nwhile :; do sleep 0.05; done"
    )
    results = [pyslirp.setup(options(config, make_netns(), container_id=f"c{i}")) for i in range(4)]
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.05, signal.pthread_kill, (threading.main_thread().ident, 2))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            pyslirp.close_all(results, timeout=5)
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
    assert all(result.returncode is not None for result in results)
