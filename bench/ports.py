"""Published ports side by side: slirp4netns's API, rootlessport and pasta.

``python bench/ports.py [--mb MB] [--connects N]``, as root. For each port path: TCP
throughput host -> namespace, the source address the server sees, connect latency (connect
+ a one-byte echo) and the helpers' memory (PSS). Every packet stays in namespaces the
bench makes: a namespace plays the host (the helpers run there), a client namespace is
joined to it by a veth, and each path forwards into a target namespace of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

BENCH = Path(__file__).resolve().parent
HOST_IP, CLIENT_IP = "10.213.0.1", "10.213.0.2"
PORT, CONTAINER_PORT = 18080, 8080

# Counts the bytes of each connection; answers "PEER BYTES" at EOF. One byte: echoed.
SERVER = r"""
import socket, sys, threading
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", int(sys.argv[1])))
listener.listen(64)
def serve(conn, peer):
    total = 0
    while chunk := conn.recv(1 << 20):
        total += len(chunk)
        if total == 1:
            conn.sendall(chunk)
    conn.sendall(f"{peer[0]} {total}".encode())
    conn.close()
print("ready", flush=True)
while True:
    threading.Thread(target=serve, args=listener.accept(), daemon=True).start()
"""

CLIENT = r"""
import json, socket, statistics, sys, time
host, port, mb, connects = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
latencies = []
for _ in range(connects):
    t0 = time.perf_counter()
    with socket.create_connection((host, port)) as conn:
        conn.sendall(b"x")
        conn.recv(1)
        latencies.append(time.perf_counter() - t0)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(100)
block = b"\0" * (1 << 20)
with socket.create_connection((host, port)) as conn:
    t0 = time.perf_counter()
    for _ in range(mb):
        conn.sendall(block)
    conn.shutdown(socket.SHUT_WR)
    peer, total = conn.recv(100).decode().split()
    elapsed = time.perf_counter() - t0
assert int(total) == mb << 20, total
print(json.dumps({
    "gbit_s": (mb << 20) * 8 / elapsed / 1e9,
    "connect_ms": statistics.median(latencies) * 1e3,
    "peer": peer,
}))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def pss_kib(pid: int) -> int:
    """The proportional set size of ``pid`` and its descendants."""
    total = 0
    for task in [pid, *_descendants(pid)]:
        for line in Path(f"/proc/{task}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


def _descendants(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def start(path: str, netns: str, tmp_dir: str) -> tuple[Callable[[], None], list[int]]:
    """Publish PORT into ``netns`` through ``path``; return its close() and helper pids."""
    import pyslirp
    from pyslirp import pasta

    mapping = [pyslirp.PortMapping(host_port=PORT, container_port=CONTAINER_PORT)]
    config = pyslirp.Config(tmp_dir=tmp_dir)
    if path == "pasta":
        net = pasta.setup(pasta.SetupOptions(config=config, netns=netns, ports=mapping))
        return net.close, [net.pid]
    handler = "slirp4netns" if path == "slirp4netns API" else "rootlesskit"
    opts = pyslirp.SetupOptions(
        config=config,
        container_id=os.path.basename(netns),
        netns=netns,
        ports=mapping,
        extra_options=[f"port_handler={handler}", "enable_ipv6=false"],
    )
    result = pyslirp.setup(opts)
    helpers = [result.pid] if result.rootlessport is None else [result.pid, result.rootlessport.pid]
    return result.close, helpers


def inside(client: str, mb: int, connects: int) -> list[dict[str, object]]:
    """Runs in the namespace that plays the host: each path, one after the other."""
    rows = []
    for path in ("slirp4netns API", "rootlessport", "pasta"):
        target = f"pyslirp-bench-t{uuid.uuid4().hex[:8]}"
        ip("netns", "add", target)
        netns = f"/run/netns/{target}"
        with ExitStack() as stack:
            stack.callback(ip, "netns", "delete", target)
            server = subprocess.Popen(
                ["nsenter", f"--net={netns}", sys.executable, "-c", SERVER, str(CONTAINER_PORT)],
                stdout=subprocess.PIPE,
                text=True,
            )
            stack.callback(server.wait)
            stack.callback(server.kill)
            assert server.stdout is not None and server.stdout.readline() == "ready\n"
            tmp_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="pyslirp-bench-"))
            close, helpers = start(path, netns, tmp_dir)
            stack.callback(close)
            argv = [sys.executable, "-c", CLIENT, HOST_IP, str(PORT), str(mb), str(connects)]
            measured = subprocess.run(
                ["ip", "netns", "exec", client, *argv],
                check=True,
                capture_output=True,
                text=True,
            )
            row = {"path": path, **json.loads(measured.stdout)}
            row["pss_mib"] = sum(pss_kib(pid) for pid in helpers) / 1024
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1000, help="MiB sent per throughput run")
    parser.add_argument("--connects", type=int, default=50, help="connects timed per path")
    parser.add_argument("--inside", nargs=1, metavar="CLIENT_NETNS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(inside(args.inside[0], args.mb, args.connects)))
        return
    tag = uuid.uuid4().hex[:8]
    host, client = f"pyslirp-bench-h{tag}", f"pyslirp-bench-c{tag}"
    with ExitStack() as stack:
        for name in (host, client):
            ip("netns", "add", name)
            stack.callback(ip, "netns", "delete", name)
        ip("-n", host, "link", "add", "vh", "type", "veth", "peer", "name", "vc", "netns", client)
        ip("-n", host, "addr", "add", f"{HOST_IP}/24", "dev", "vh")
        ip("-n", client, "addr", "add", f"{CLIENT_IP}/24", "dev", "vc")
        for name, link in ((host, "vh"), (client, "vc"), (host, "lo"), (client, "lo")):
            ip("-n", name, "link", "set", link, "up")
        ip("-n", host, "route", "add", "default", "via", CLIENT_IP)  # pasta copies a route
        sizes = ["--mb", str(args.mb), "--connects", str(args.connects)]
        out = subprocess.run(
            ["ip", "netns", "exec", host, sys.executable, __file__, "--inside", client, *sizes],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
    print(f"client {CLIENT_IP} -> {HOST_IP}:{PORT} -> namespace :{CONTAINER_PORT}")
    print(f"{'path':<16} {'Gbit/s':>7} {'connect ms':>10} {'PSS MiB':>8}  source seen")
    for row in json.loads(out):
        print(
            f"{row['path']:<16} {row['gbit_s']:>7.2f} {row['connect_ms']:>10.3f}"
            f" {row['pss_mib']:>8.1f}  {row['peer']}"
        )


if __name__ == "__main__":
    main()
