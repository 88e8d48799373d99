"""Run things inside a test network namespace: commands, echo servers, clients."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

ECHO_SERVER = r"""
import socket, sys, threading
proto, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
socks = []
for port in ports:
    if proto == "tcp":
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port)); s.listen(8)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    socks.append(s)
def serve(s):
    while True:
        if proto == "tcp":
            conn, peer = s.accept()
            data = conn.recv(1024)
            conn.sendall(data + f" {peer[0]} {s.getsockname()[1]}".encode()); conn.close()
        else:
            data, peer = s.recvfrom(1024)
            s.sendto(data + f" {peer[0]} {s.getsockname()[1]}".encode(), peer)
for s in socks:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


def run_in(netns: str, *argv: str, check: bool = True) -> str:
    """Run ``argv`` in ``netns`` and return its stdout."""
    return subprocess.run(
        ["nsenter", f"--net={netns}", *argv], check=check, capture_output=True, text=True
    ).stdout


def succeeds(netns: str, *argv: str) -> bool:
    """Whether ``argv`` exits 0 in ``netns``."""
    return subprocess.run(["nsenter", f"--net={netns}", *argv]).returncode == 0


def addresses(netns: str, family: str = "-4") -> list[dict[str, object]]:
    """``ip -j addr show tap0`` inside ``netns``: the address entries."""
    (link,) = json.loads(run_in(netns, "ip", "-j", family, "addr", "show", "tap0"))
    return link["addr_info"]


def link(netns: str) -> dict[str, object]:
    (info,) = json.loads(run_in(netns, "ip", "-j", "link", "show", "tap0"))
    return info


def default_route(netns: str) -> str:
    routes = json.loads(run_in(netns, "ip", "-j", "-4", "route", "show", "default"))
    return routes[0]["gateway"]


def tcp_echo(port: int, host: str = "127.0.0.1") -> str:
    """Send ``hi`` to an echo server through a published TCP port; return its answer."""
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"hi")
        return conn.recv(1024).decode()


def udp_echo(port: int, host: str = "127.0.0.1") -> str:
    """The same over UDP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"hi", (host, port))
        return s.recv(1024).decode()


@contextmanager
def echo_server(netns: str, proto: str, *ports: int) -> Iterator[None]:
    """Echo servers in ``netns`` that answer with the data, the peer's IP and their port."""
    server = subprocess.Popen(
        ["nsenter", f"--net={netns}", sys.executable, "-c", ECHO_SERVER, proto, *map(str, ports)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == "ready\n"
        yield
    finally:
        server.kill()
        server.wait()


# The start of a script that runs as nobody: as root only long enough to import (the
# interpreter may live under a root-only home), then nobody for good before touching any
# namespace. ``namespaces_with_server()`` gives it a user and network namespace of its own
# (held by ``unshare -Urn``) with a TCP server on port 80 that answers with the data and
# the peer's address.
ROOTLESS_PRELUDE = r"""
import contextlib, ctypes, encodings.idna, json, os, socket, subprocess, sys  # idna: lazy
import tomllib  # config loads it lazily
import pyslirp

for name in pyslirp.__all__:  # pyslirp loads its modules on first use: all of them now
    getattr(pyslirp, name)

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)

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


@contextlib.contextmanager
def namespaces_with_server():
    # Yields (userns path, netns path, [holder pid, server pid]).
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
        yield userns, netns, [holder.pid, server]
    finally:
        if server:
            os.kill(server, 9)
            os.waitpid(server, 0)
        holder.kill()
        holder.wait()
"""
