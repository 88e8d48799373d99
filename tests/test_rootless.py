"""Rootless: an unprivileged caller sets up a netns it made with ``unshare -Urn``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from support.netns import PROGRAMS
from support.ports import free_port
from support.processes import (
    AS_NOBODY,
    as_nobody,
    mounted,
    pids_of,
    poll_until,
    probe_helpers,
)

pytestmark = pytest.mark.root

NOBODY = 65534


@pytest.fixture
def tun_for_everyone():
    mode = stat.S_IMODE(os.stat("/dev/net/tun").st_mode)
    if mode & 0o006 != 0o006:
        os.chmod("/dev/net/tun", 0o666)  # as .ci/run does: rootless slirp4netns opens it


@pytest.fixture
def nobody_dir():
    """A tmp_dir the unprivileged user owns (pytest's own tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="pyslirp-rootless-"))
    os.chown(path, NOBODY, NOBODY)
    yield path
    shutil.rmtree(path)


def test_unprivileged_user_publishes_a_port_through_userns_path(
    nobody_dir, tun_for_everyone, make_netns
):
    """Rootless, slirp4netns starts in a copy of the mount namespace made inside its user
    namespace (no template: a less privileged copy, whose copies of the host's shared
    mounts are slaves), so its sandbox's pivot_root unmounts nothing of the host's."""
    named = [make_netns() for _ in range(3)]
    program = str(PROGRAMS / "rootless_publish.py")
    out = subprocess.run(
        [sys.executable, program, str(nobody_dir), str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "reply": "hi 10.0.2.100",
        "uid": NOBODY,
        "slirp4netns_uid": NOBODY,
        "rootlessport": True,
    }
    assert pids_of("slirp4netns") == set()
    assert pids_of("rootlessport") == set()
    assert [p.name for p in nobody_dir.iterdir()] in ([], ["rp"])
    assert [path for path in named if not mounted(path)] == []


SYSTEM_PYTHON = "/usr/bin/python3"  # runnable by nobody, unlike a root-only pyenv


@pytest.fixture
def bare_session(tun_for_everyone):
    """nobody's environment in a bare session: no XDG_RUNTIME_DIR, no /run/user/UID, a
    HOME it cannot write; TMPDIR is a sticky directory of the test's, like /tmp."""
    if os.path.exists(f"/run/user/{NOBODY}"):
        pytest.skip(f"/run/user/{NOBODY} exists on this machine")
    tmp = Path(tempfile.mkdtemp(prefix="pyslirp-bare-"))
    tmp.chmod(0o1777)
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env.update(HOME="/nonexistent", TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    yield env
    shutil.rmtree(tmp)


def serve_http_as_nobody(env: dict[str, str], *network: str) -> None:
    """``pyslirp run [NETWORK...] -p PORT:8080 -- python3 -m http.server 8080`` as nobody:
    the page answers through the published port, and SIGTERM ends run with CMD's 143."""
    port = free_port()
    command = [SYSTEM_PYTHON, "-m", "http.server", "8080"]
    runner = as_nobody(env, "run", *network, "-p", f"{port}:8080", "--", *command)
    try:
        assert runner.stdout is not None
        banner = runner.stdout.readline()
        assert banner.startswith("Serving HTTP"), banner + runner.communicate()[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
            assert "Directory listing for /" in reply.read().decode()
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        runner.kill()
        runner.communicate()


def test_bare_session_runs_and_publishes_a_port(bare_session):
    serve_http_as_nobody(bare_session)
    runtime_dir = Path(bare_session["TMPDIR"]) / f"podman-run-{NOBODY}"
    assert runtime_dir.stat().st_uid == NOBODY
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
    tmp_dir = runtime_dir / "libpod" / "tmp"
    assert list(tmp_dir.iterdir()) == []


def test_a_planted_runtime_dir_is_neither_used_nor_written(bare_session):
    planted = Path(bare_session["TMPDIR"]) / f"podman-run-{NOBODY}"
    planted.mkdir()
    planted.chmod(0o777)  # owned by root, open to all: anyone could have made it
    before = planted.stat()
    _, stderr = as_nobody(bare_session, "run", "--", "true").communicate(timeout=60)
    assert stderr.count("\n") == 1 and stderr.startswith("pyslirp: no usable runtime directory")
    assert f"{planted} (owned by uid 0)" in stderr
    assert list(planted.iterdir()) == []
    assert planted.stat().st_mtime_ns == before.st_mtime_ns


def test_rootless_ipv6_is_usable_when_cmd_starts(bare_session):
    runner = as_nobody(
        bare_session, "run", "--", "sh", "-c", "ip -6 -o addr show dev tap0 scope global"
    )
    stdout, stderr = runner.communicate(timeout=60)
    assert runner.returncode == 0, stderr
    assert " inet6 fd00::" in stdout
    assert "tentative" not in stdout


def test_rootless_cmd_cannot_see_or_reach_the_helpers(bare_session):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        report = probe_helpers(
            [sys.executable, AS_NOBODY, "run"],
            listener.getsockname()[1],
            python=SYSTEM_PYTHON,
            env=bare_session,
        )
    assert report["comms"] == ["pyslirp-init", "python3"]
    assert report["umount"] is False  # no CAP_SYS_ADMIN: the host's /proc stays covered
    assert report["comms_after_umount"] == report["comms"]
    assert report["mem_opened"] == []
    assert report["nested_umount"] is False  # locked in a nested user namespace
    assert report["comms_nested"] == report["comms"]
    assert report["host_loopback"] is False


def test_bare_session_runs_pasta_and_publishes_a_port(bare_session):
    serve_http_as_nobody(bare_session, "--network", "pasta")
    assert poll_until(lambda: not pids_of("pasta"), 5)  # SIGKILLed as run exits
