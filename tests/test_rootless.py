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

pytestmark = pytest.mark.root

NOBODY = 65534

# Runs as root only long enough to import (the interpreter may live under a root-only
# home), then drops to nobody for good before touching any namespace.
SCRIPT = r"""
import ctypes, encodings.idna, json, os, socket, subprocess, sys  # idna: loaded lazily
import pyslirp

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)

tmp_dir, port = sys.argv[1], int(sys.argv[2])
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)


def serve(userns, netns, ready_w):
    for path, kind in ((userns, CLONE_NEWUSER), (netns, CLONE_NEWNET)):
        fd = os.open(path, os.O_RDONLY)
        assert libc.setns(fd, kind) == 0
        os.close(fd)
    listener = socket.socket()
    listener.bind(("0.0.0.0", 80))  # a privileged port: we are root in the userns
    listener.listen(1)
    os.write(ready_w, b"1")
    conn, peer = listener.accept()
    conn.sendall(conn.recv(100) + f" {peer[0]}".encode())
    conn.close()


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


holder = subprocess.Popen(
    ["unshare", "-Urn", "sh", "-c", "echo ready; exec sleep 1000"], stdout=subprocess.PIPE
)
server = None
try:
    assert holder.stdout.readline() == b"ready\n"
    userns, netns = f"/proc/{holder.pid}/ns/user", f"/proc/{holder.pid}/ns/net"
    ready_r, ready_w = os.pipe()
    server = os.fork()  # still single-threaded: the child may join the user namespace
    if server == 0:
        try:
            serve(userns, netns, ready_w)
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    print(json.dumps(publish(userns, netns)))
finally:
    if server:
        os.kill(server, 9)
        os.waitpid(server, 0)
    holder.kill()
    holder.wait()
"""


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
