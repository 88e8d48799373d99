"""The ``pyslirp`` command: real namespaces, real slirp4netns and rootlessport."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from support.ports import free_port
from support.processes import (
    HELPER_NAMES,
    as_nobody,
    descendants,
    pyslirp,
    wait_asleep_in,
    wait_gone,
)

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # runnable by nobody, unlike a root-only pyenv


@pytest.fixture
def nobody_runtime_dir():
    """XDG_RUNTIME_DIR for nobody: pyslirp's rootless tmp_dir goes below it."""
    path = Path(tempfile.mkdtemp(prefix="pyslirp-cli-"))
    os.chown(path, NOBODY, NOBODY)
    if os.stat("/dev/net/tun").st_mode & 0o006 != 0o006:
        os.chmod("/dev/net/tun", 0o666)  # as .ci/run does: rootless slirp4netns opens it
    yield path
    shutil.rmtree(path)


def nobody_using(runtime_dir: Path, *args: str) -> subprocess.Popen[str]:
    """``pyslirp`` as nobody, with ``runtime_dir`` as its XDG_RUNTIME_DIR and HOME."""
    env = {
        **os.environ,
        "HOME": str(runtime_dir),
        "XDG_RUNTIME_DIR": str(runtime_dir),
        "PYTHONUNBUFFERED": "1",
    }
    return as_nobody(env, *args)


@pytest.mark.root
def test_run_gives_the_command_slirp_networking_and_its_status():
    out = pyslirp("run", "--", "sh", "-c", "ip -4 -o addr show tap0; exit 7")
    assert out.returncode == 7, out.stderr
    assert "inet 10.0.2.100/24" in out.stdout


@pytest.mark.root
def test_run_options_set_cidr_and_mtu():
    out = pyslirp(
        "run", "-o", "cidr=10.77.0.0/24", "-o", "mtu=1500", "--",
        "sh", "-c", "ip -4 -o addr show tap0; ip -o link show tap0",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    addr, link = out.stdout.splitlines()
    assert "inet 10.77.0.100/24" in addr
    assert " mtu 1500 " in link


def serve_and_fetch(runner: subprocess.Popen[str], port: int) -> str:
    """Wait for http.server's banner (printed once it listens), then fetch /."""
    assert runner.stdout is not None
    banner = runner.stdout.readline()
    assert banner.startswith("Serving HTTP"), banner + runner.stderr.read()  # type: ignore[union-attr]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
        return reply.read().decode()


def fetch_then_terminate(runner: subprocess.Popen[str], port: int) -> None:
    """Fetch / through the published port, SIGTERM ``pyslirp run``, and check it exits
    as CMD did and takes slirp4netns, rootlessport and rootlessport-child with it."""
    try:
        assert "Directory listing for /" in serve_and_fetch(runner, port)
        helpers = {p for p, name in descendants(runner.pid).items() if name in HELPER_NAMES}
        assert len(helpers) == 3
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        runner.kill()
        runner.wait()
    assert all(wait_gone(pid, timeout=5) for pid in helpers)


@pytest.mark.root
def test_run_publishes_a_port_and_sigterm_tears_everything_down():
    port = free_port()
    runner = subprocess.Popen(
        [sys.executable, "-m", "pyslirp", "run", "-p", f"{port}:80", "--",
         sys.executable, "-m", "http.server", "80"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    mounts = Path("/proc/self/mountinfo").read_text()
    fetch_then_terminate(runner, port)
    assert Path("/proc/self/mountinfo").read_text() == mounts


@pytest.mark.root
def test_unprivileged_run_has_networking(nobody_runtime_dir):
    runner = nobody_using(
        nobody_runtime_dir, "run", "--", "sh", "-c", "id -u; ip -4 -o addr show tap0; exit 4"
    )
    stdout, stderr = runner.communicate(timeout=60)
    assert runner.returncode == 4, stderr
    uid, addr = stdout.splitlines()
    assert uid == "0"  # root in its own user namespace
    assert "inet 10.0.2.100/24" in addr


@pytest.mark.root
def test_unprivileged_run_publishes_a_port(nobody_runtime_dir):
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} is needed as a server nobody can run")
    port = free_port()
    runner = nobody_using(
        nobody_runtime_dir, "run", "-p", f"{port}:8080", "--",
        SYSTEM_PYTHON, "-m", "http.server", "8080",
    )  # fmt: skip
    fetch_then_terminate(runner, port)


def test_info_shows_slirp4netns_and_its_features():
    out = pyslirp("info")
    assert out.returncode == 0, out.stderr
    assert "slirp4netns version 1.2.0" in out.stdout
    assert "enable_sandbox" in out.stdout
    report = json.loads(pyslirp("info", "--json").stdout)
    assert report["slirp4netns"]["version"] == "slirp4netns version 1.2.0"
    assert report["slirp4netns"]["features"]["ipv6"] is True
    assert report["ip"] == "10.0.2.100"
    assert report["options"]["mtu"] == 65520


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-p", "99999:80", "--", "true"], "99999:80"),
        (["-p", "abc", "--", "true"], '"abc"'),
        (["-o", "nope=1", "--", "true"], '"nope=1"'),
        ([], "no command given"),
        (["--ready-timeout", "soon", "--", "true"], "soon"),
        (["--ready-timeout", "inf", "--", "true"], "invalid ready_timeout inf"),
        (["--ready-timeout", "nan", "--", "true"], "invalid ready_timeout nan"),
        (["--ready-timeout", "1e10", "--", "true"], "invalid ready_timeout 10000000000.0"),
        (["--ready-timeout", "0", "--", "true"], "invalid ready_timeout 0"),
    ],
)
def test_bad_input_exits_125_with_one_line_naming_it(args, named):
    out = pyslirp("run", *args)
    assert out.returncode == 125
    assert out.stdout == ""
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert named in out.stderr


def test_ctrl_c_before_cmd_runs_exits_130_without_a_traceback(tmp_path):
    """Ctrl-C while ``run`` is blocked setting up (here reading a containers.conf that is a
    FIFO nobody writes) ends it with 130 and no traceback."""
    fifo = tmp_path / "containers.conf"
    os.mkfifo(fifo)
    runner = subprocess.Popen(
        [sys.executable, "-m", "pyslirp", "run", "--", "true"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CONTAINERS_CONF": str(fifo)},
    )
    try:
        assert wait_asleep_in(f"/proc/{runner.pid}/task/{runner.pid}", "wait_for_partner")  # open()
        runner.send_signal(signal.SIGINT)
        _, stderr = runner.communicate(timeout=30)
    finally:
        runner.kill()
        runner.wait()
    assert runner.returncode == 130
    assert stderr == ""


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only pyslirp's own errors become one line: anything else is a bug and propagates."""
    import pyslirp.sandbox
    from pyslirp.cli import main

    def buggy(opts: object) -> int:
        raise ValueError("a bug")

    monkeypatch.setattr(pyslirp.sandbox, "run", buggy)
    with pytest.raises(ValueError, match="a bug"):
        main(["run", "--", "true"])


def test_ctrl_c_while_the_cli_loads_exits_130_without_a_traceback(tmp_path):
    """A SIGINT that lands while the console script is still importing (made certain
    here: a module the CLI imports first sends it) ends it with 130, no traceback."""
    (tmp_path / "argparse.py").write_text(
        "import os, signal, sys\n"
        "del sys.modules['argparse']\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "raise SystemExit('SIGINT was not delivered during the import')\n"
    )
    code = "import sys; sys.argv = ['pyslirp', 'info']; from pyslirp._entry import main; main()"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 130
    assert done.stderr == ""


def test_run_with_slirp4netns_loads_neither_pasta_nor_logging():
    """They cost 6-11 ms of every run's start-up; only ``--network pasta`` needs them."""
    code = (
        "import sys, pyslirp.cli, pyslirp.sandbox\n"
        "print(sorted({'logging', 'pyslirp.pasta'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"
