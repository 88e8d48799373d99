"""``pyslirp run`` as a sandbox: its own PID, mount and network view, an init, signals."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

import pytest

from pyslirp.sandbox import hosts_file, resolv_conf

from support.processes import (
    HELPER_NAMES,
    TESTS,
    children,
    descendants,
    pids_of,
    poll_until,
    probe_helpers,
    processes,
    pyslirp,
    wait_gone,
)

pytestmark = pytest.mark.root  # real helpers in real namespaces

COUNTER = str(TESTS / "signal_counter.py")
HOST_FILES = ("/etc/resolv.conf", "/etc/hosts")


def run_popen(*args: str, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pyslirp", "run", *args],
        stdout=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_resolv_conf_names_the_given_servers_and_keeps_search_and_options():
    host = "# stub\nnameserver 127.0.0.53\nsearch a.test b.test\noptions edns0\ndomain c.test\n"
    assert resolv_conf(host, ["10.0.2.3", "fd00::3"]) == (
        "nameserver 10.0.2.3\nnameserver fd00::3\n"
        "search a.test b.test\noptions edns0\ndomain c.test\n"
    )


def test_hosts_file_adds_host_containers_internal_at_the_gateway():
    assert hosts_file("127.0.0.1 localhost", "10.0.2.2") == (
        "127.0.0.1 localhost\n10.0.2.2\thost.containers.internal\n"
    )


def run_and_keep_host_files(*args: str) -> str:
    """``pyslirp run ARGS``: it succeeds, and the host's resolv.conf and hosts are
    byte-identical after; its stdout."""
    before = {path: Path(path).read_bytes() for path in HOST_FILES}
    out = pyslirp("run", *args)
    assert out.returncode == 0, out.stderr
    assert {path: Path(path).read_bytes() for path in HOST_FILES} == before
    return out.stdout


def test_cmd_sees_its_own_interfaces_in_sys_and_the_subnet_dns_first():
    stdout = run_and_keep_host_files(
        "-o", "cidr=10.77.0.0/24", "--",
        "sh", "-c", "ls /sys/class/net; cat /sys/class/net/tap0/mtu; cat /etc/resolv.conf",
    )  # fmt: skip
    lines = stdout.splitlines()
    assert lines[:3] == ["lo", "tap0", "65520"]
    assert lines[3:5] == ["nameserver 10.77.0.3", "nameserver fd00::3"]


def test_dns_overrides_and_host_loopback_adds_host_containers_internal():
    stdout = run_and_keep_host_files(
        "--dns", "192.0.2.53", "--dns", "2001:db8::53",
        "-o", "allow_host_loopback=true", "--",
        "sh", "-c", "grep nameserver /etc/resolv.conf; tail -n 1 /etc/hosts",
    )  # fmt: skip
    assert stdout.splitlines() == [
        "nameserver 192.0.2.53",
        "nameserver 2001:db8::53",
        "10.0.2.2\thost.containers.internal",
    ]


def test_bad_dns_exits_125_naming_it():
    out = pyslirp("run", "--dns", "not-an-ip", "--", "true")
    assert out.returncode == 125
    assert out.stderr.splitlines() == ['pyslirp: invalid dns server "not-an-ip"']


def test_a_symlinked_resolv_conf_is_followed_and_left_alone(tmp_path):
    out = subprocess.run(
        [sys.executable, str(TESTS / "etc_symlink.py"), str(tmp_path),
         sys.executable, "-m", "pyslirp", "run", "--", "cat", "/etc/resolv.conf"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "nameserver 10.0.2.3",
        "nameserver fd00::3",
        "search example.test",
        "options edns0 trust-ad",
        "stub unchanged",
    ]


@pytest.fixture
def host_loopback_service():
    """A listener on the host's 127.0.0.1 only: CMD must not reach it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_root_cmd_cannot_see_or_reach_the_helpers(host_loopback_service):
    report = probe_helpers([sys.executable, "-m", "pyslirp", "run"], host_loopback_service)
    assert report["comms"] == ["pyslirp-init", "python3"]  # PID 1 and the probe
    assert report["mem_opened"] == []
    assert not any(name in HELPER_NAMES for name in report["comms_after_umount"])
    assert report.get("mem_opened_nested", []) == []
    assert report["host_loopback"] is False


def test_nothing_cmd_started_outlives_run():
    marker = f"300.{uuid.uuid4().int % 10**9}"
    out = pyslirp("run", "--", "sh", "-c", f"sleep {marker} >/dev/null 2>&1 &")
    assert out.returncode == 0, out.stderr
    assert not [pid for pid, comm, *_ in processes() if comm == "sleep" and marker in _cmdline(pid)]


def test_sigkill_of_run_takes_cmd_its_children_and_the_helpers_with_it():
    runner = run_popen("--", "sh", "-c", "sleep 300 & echo ready; wait")
    try:
        assert runner.stdout is not None
        assert runner.stdout.readline() == "ready\n"
        doomed = descendants(runner.pid)  # the init, sh, its child (sleep), slirp4netns
        assert len(doomed) == 4, doomed
    finally:
        runner.kill()
        runner.wait()
    assert all(wait_gone(pid, timeout=5) for pid in doomed)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


@pytest.mark.parametrize(
    ("script", "status"),
    [("exit 0", 0), ("exit 7", 7), ("kill -KILL $$", 137), ("kill -TERM $$", 143)],
)
def test_cmd_status_passes_through(script, status):
    assert pyslirp("run", "--", "sh", "-c", script).returncode == status


def expect_one_sigint_then_term(runner: subprocess.Popen[str]) -> None:
    """After one SIGINT line, SIGTERM ``run``: relayed after any second SIGINT, so the
    rest of CMD's output shows whether the SIGINT came twice."""
    assert runner.stdout is not None
    assert runner.stdout.readline() == "SIGINT\n"
    runner.send_signal(signal.SIGTERM)
    assert runner.stdout.read() == "SIGTERM\n"
    assert runner.wait(timeout=30) == 0


def test_a_group_sigint_reaches_cmd_once():
    runner = run_popen("--", sys.executable, COUNTER, start_new_session=True)
    try:
        assert runner.stdout is not None
        assert runner.stdout.readline() == "ready\n"
        os.killpg(runner.pid, signal.SIGINT)
        expect_one_sigint_then_term(runner)
    finally:
        runner.kill()
        runner.wait()


def test_ctrl_c_at_a_terminal_reaches_cmd_once():
    master, slave = pty.openpty()

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        runner = run_popen(
            "--", sys.executable, COUNTER,
            stdin=slave, start_new_session=True, preexec_fn=controlling_terminal,
        )  # fmt: skip
        try:
            assert runner.stdout is not None
            assert runner.stdout.readline() == "ready\n"
            os.write(master, b"\x03")  # the line discipline signals the foreground group
            expect_one_sigint_then_term(runner)
        finally:
            runner.kill()
            runner.wait()
    finally:
        os.close(slave)
        os.close(master)


class Terminal:
    """An interactive bash on a pseudo-terminal, typed at as a person would."""

    def __init__(self) -> None:
        self.master, slave = pty.openpty()

        def controlling_terminal() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.bash = subprocess.Popen(
            ["bash", "--norc", "--noprofile", "-i"],
            stdin=slave, stdout=slave, stderr=slave,
            start_new_session=True, preexec_fn=controlling_terminal,
            env={**os.environ, "PS1": "$ "},
        )  # fmt: skip
        os.close(slave)
        self.seen = b""

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def expect(self, token: str, timeout: float = 30) -> None:
        """Wait until ``token`` appears on the terminal after what was expected before."""
        deadline = time.monotonic() + timeout
        while token.encode() not in self.seen:
            ready, _, _ = select.select([self.master], [], [], deadline - time.monotonic())
            assert ready, f"{token!r} never came: {self.seen[-300:]!r}"
            self.seen += os.read(self.master, 4096)
        self.seen = self.seen[self.seen.index(token.encode()) + len(token) :]

    def close(self) -> None:
        self.bash.kill()
        self.bash.wait()
        os.close(self.master)


def test_ctrl_z_stops_the_job_and_fg_continues_cmd_with_the_terminal():
    terminal = Terminal()
    try:
        terminal.type(f"{sys.executable} -m pyslirp run -- {sys.executable} {COUNTER}\n".encode())
        terminal.expect("ready")
        terminal.type(b"\x1a")  # Ctrl-Z
        terminal.expect("Stopped")  # the shell saw its job stop and has the terminal back
        terminal.type(b"fg\n")
        terminal.expect("SIGCONT")  # CMD continues once it has the terminal again
        terminal.type(b"\x03")
        terminal.expect("SIGINT")
        terminal.type(b"\x1a")
        terminal.expect("Stopped")
        terminal.type(b"fg\n")
        terminal.expect("SIGCONT")
        (run,) = children(terminal.bash.pid)
        os.kill(run, signal.SIGTERM)
        terminal.expect("SIGTERM")
        terminal.type(b"echo status=$?.\n")
        terminal.expect("status=0.")
    finally:
        terminal.close()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR1, signal.SIGWINCH])
def test_signals_sent_to_run_reach_cmd(sig):
    runner = run_popen("--", sys.executable, COUNTER)
    try:
        assert runner.stdout is not None
        assert runner.stdout.readline() == "ready\n"
        runner.send_signal(sig)
        assert runner.stdout.readline() == f"{signal.Signals(sig).name}\n"
        runner.send_signal(signal.SIGTERM)
        assert runner.stdout.read() == "SIGTERM\n"
        assert runner.wait(timeout=30) == 0
    finally:
        runner.kill()
        runner.wait()


@pytest.mark.parametrize(
    ("command", "status", "message"),
    [
        ("pyslirp-no-such-command", 127, "executable file not found in $PATH"),
        ("/etc/passwd", 126, "permission denied"),
        ("/etc", 126, "permission denied"),
    ],
)
def test_cmd_that_cannot_run_exits_as_podman_run_does(command, status, message):
    out = pyslirp("run", "--", command)
    assert out.returncode == status
    assert out.stderr.splitlines() == [f'pyslirp: exec: "{command}": {message}']


def test_exec_failures_of_cmd_map_to_podman_statuses(tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    out = pyslirp("run", "--", str(script))
    assert out.returncode == 127
    assert out.stderr.splitlines() == [f'pyslirp: exec: "{script}": no such file or directory']
    script.write_bytes(b"\x7fELF garbage")
    out = pyslirp("run", "--", str(script))
    assert out.returncode == 126
    assert out.stderr.splitlines() == [f'pyslirp: exec: "{script}": exec format error']


def test_pasta_gives_cmd_slirp4netns_s_addresses_and_dns():
    stdout = run_and_keep_host_files(
        "--network", "pasta", "--",
        "sh", "-c", "cat /etc/resolv.conf; ip -4 -o addr show scope global; ip -4 route",
    )  # fmt: skip
    assert stdout.splitlines()[0] == "nameserver 10.0.2.3"
    assert " inet 10.0.2.100/24 " in stdout
    assert "default via 10.0.2.2 " in stdout
    assert poll_until(lambda: not pids_of("pasta"), 5)  # SIGKILLed as run exits


def test_pasta_publishes_a_port_and_cmd_cannot_see_it(host_loopback_service):
    report = probe_helpers(
        [sys.executable, "-m", "pyslirp", "run", "--network", "pasta"],
        host_loopback_service,
        helpers_expected=1,
    )
    assert report["comms"] == ["pyslirp-init", "python3"]
    assert report["mem_opened"] == []


def test_an_unknown_network_is_one_line_and_125():
    out = pyslirp("run", "--network", "vde", "--", "true")
    assert out.returncode == 125
    assert out.stderr == 'pyslirp: unknown network "vde": use slirp4netns or pasta\n'
