"""Run things inside a test network namespace: commands, echo servers, clients."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROGRAMS = Path(__file__).resolve().parent.parent / "programs"


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
        ["nsenter", f"--net={netns}", sys.executable, str(PROGRAMS / "echo_server.py"), proto]
        + [str(port) for port in ports],
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
