"""Host ports for tests and benchmarks."""

from __future__ import annotations

import collections
import random
import socket
from pathlib import Path

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10000
# Ports handed out lately: a test taking several one call at a time gets different ones.
_recent: collections.deque[int] = collections.deque(maxlen=2000)


def free_ports(count: int, kind: int = socket.SOCK_STREAM, consecutive: bool = False) -> list[int]:
    """``count`` different host ports nothing is bound to now (consecutive ones if asked),
    from below the ephemeral range: a port bind(0) hands out may be taken by anybody's
    next outgoing connection before a helper binds it."""
    low = int(EPHEMERAL.read_text().split()[0])
    for _ in range(100):
        starts = random.sample(range(LOWEST, low - count), min(4 * count + 64, low - LOWEST))
        found: list[int] = []
        for start in starts:
            candidates = range(start, start + count) if consecutive else [start]
            if any(port in _recent or port in found for port in candidates):
                continue
            if all(_free(port, kind) for port in candidates):
                found.extend(candidates)
            if len(found) >= count:
                _recent.extend(found[:count])
                return found[:count]
    raise RuntimeError(f"no {count} free host ports below {low}")


def free_port(kind: int = socket.SOCK_STREAM, count: int = 1) -> int:
    """The first of ``count`` consecutive free host ports (see :func:`free_ports`)."""
    return free_ports(count, kind, consecutive=True)[0]


def _free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
