"""Rootless: an unprivileged caller sets up a netns it made with ``unshare -Urn``."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import free_port, pids_of
from netns_tools import ROOTLESS_PRELUDE

NOBODY = 65534

SCRIPT = (
    ROOTLESS_PRELUDE
    + r"""
tmp_dir, port = sys.argv[1], int(sys.argv[2])


def publish(userns, netns):
    opts = pyslirp.SetupOptions(
        config=pyslirp.Config(tmp_dir=tmp_dir),
        container_id="rootless",
        netns=netns,
        userns_path=userns,
        ports=[pyslirp.PortMapping(host_port=port, container_port=80)],
    )
    with pyslirp.setup(opts) as result:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"hi")
            reply = conn.recv(100).decode()
        return {
            "reply": reply,
            "uid": os.getuid(),
            "slirp4netns_uid": os.stat(f"/proc/{result.pid}").st_uid,
            "rootlessport": result.rootlessport is not None,
        }


with namespaces_with_server() as (userns, netns, _):
    print(json.dumps(publish(userns, netns)))
"""
)


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


def test_unprivileged_user_publishes_a_port_through_userns_path(nobody_dir, tun_for_everyone):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(nobody_dir), str(free_port())],
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
