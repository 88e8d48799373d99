"""Load: N setup/close cycles over T threads, each thread on a namespace of its own.

CI runs N=200 over T=8; by hand, ``PYSLIRP_STRESS_N=1000 PYSLIRP_STRESS_T=16``. After
each run the process must be as it was: the same fds, no zombie, no helper alive, every
namespace mounted, tmp_dir empty, and RSS grown by less than RSS_GROWTH_BOUND_KIB. The
process is a child subreaper meanwhile (as a daemon that is PID 1 of a container), so
orphans the helpers leave come back to it: none may stay a zombie.
Set ``PYSLIRP_STRESS_REPORT`` to a file to get each run's figures as a JSON line.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import signal
import socket
import threading
import time

import pytest

import pyslirp

from support.ports import free_ports
from support.processes import open_fds, rss_kib

pytestmark = [pytest.mark.stress, pytest.mark.root]

# Python's allocator keeps freed arenas, and each thread's first cycles fill caches
# (features, imports): growth is measured after a warm-up round on every thread.
RSS_GROWTH_BOUND_KIB = 16 * 1024
HANDLERS = {"no_ports": None, "rootlessport": "rootlesskit", "slirp4netns": "slirp4netns"}


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def run_threads(count: int, work) -> None:
    """Run ``work(i)`` on ``count`` threads started together; re-raise the first error."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def body(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@pytest.mark.parametrize("mode", list(HANDLERS))
def test_setup_close_cycles_leave_nothing_behind(
    mode, stress_counts, leftovers, subreaper, netns_pool, tmp_dir
):
    n, t = stress_counts
    namespaces = netns_pool(t)
    ports = free_ports(t)
    config = pyslirp.Config(tmp_dir=tmp_dir)
    handler = HANDLERS[mode]

    def opts(i: int) -> pyslirp.SetupOptions:
        return pyslirp.SetupOptions(
            config=config,
            container_id=f"stress{i}",
            netns=namespaces[i],
            ports=[pyslirp.PortMapping(host_port=ports[i], container_port=80)] if handler else (),
            extra_options=[f"port_handler={handler}"] if handler else (),
            # Half the threads spawn through the long-lived spawner thread.
            pdeathsig=signal.SIGKILL if i % 2 else 0,
            ready_timeout=60.0,  # a deadline for a wedged helper, not a latency bound
        )

    def cycle(i: int) -> None:
        with pyslirp.setup(opts(i)) as result:
            assert result.returncode is None
            if handler:
                assert port_in_use(ports[i])
        if handler:
            assert not port_in_use(ports[i]), f"host port {ports[i]} still held after close"

    run_threads(t, cycle)  # warm-up
    gc.collect()
    fds_before, rss_before = open_fds(), rss_kib()
    share = [n // t + (i < n % t) for i in range(t)]
    started = time.monotonic()
    run_threads(t, lambda i: [cycle(i) for _ in range(share[i])])
    elapsed = time.monotonic() - started
    gc.collect()
    rss_after = rss_kib()

    leftovers.assert_clean(tmp_dir, namespaces)
    assert open_fds() == fds_before
    figures = {
        "mode": mode,
        "cycles": n,
        "threads": t,
        "seconds": round(elapsed, 2),
        "cycles_per_s": round(n / elapsed, 1),
        "fds_before": len(fds_before),
        "fds_after": len(open_fds()),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_growth_kib": rss_after - rss_before,
    }
    print(json.dumps(figures))
    report = os.environ.get("PYSLIRP_STRESS_REPORT")
    if report:
        with open(report, "a") as f:
            f.write(json.dumps(figures) + "\n")
    assert rss_after - rss_before < RSS_GROWTH_BOUND_KIB, figures
