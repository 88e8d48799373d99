"""Many live networks in one process (issue 16): all set up, all usable, all closed at once
with close_all(), nothing left, and the host's /run/netns mounts intact.

``PYSLIRP_SCALE_N`` networks (CI: 60; by hand: ``PYSLIRP_SCALE_N=1000``). With the default
soft RLIMIT_NOFILE of 1,024 a process holds ~500 (two fds each): the test raises the soft
limit to the hard one for larger counts.
"""

from __future__ import annotations

import resource
import subprocess
import time

import pytest

import pyslirp

from support.options import options
from support.processes import env_count, mounted, pids_of

pytestmark = [pytest.mark.stress, pytest.mark.root]

SCALE_N = env_count("PYSLIRP_SCALE_N", 60)
SAMPLE = 50  # networks whose gateway is pinged from inside


def test_many_live_networks_answer_and_close_all_leaves_nothing(leftovers, netns_pool, tmp_dir):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * SCALE_N + 256)), hard))
    try:
        namespaces = netns_pool(SCALE_N)
        config = pyslirp.Config(tmp_dir=tmp_dir)
        results: list[pyslirp.SetupResult] = []
        started = time.monotonic()
        try:
            for i, netns in enumerate(namespaces):
                opts = options(config, netns, container_id=f"scale{i}", ready_timeout=60)
                results.append(pyslirp.setup(opts))
            set_up = time.monotonic() - started
            assert len(pids_of("slirp4netns")) == SCALE_N
            step = max(1, SCALE_N // SAMPLE)
            for netns in namespaces[::step]:
                ping = ["nsenter", f"--net={netns}", "ping", "-c", "1", "-W", "2", "10.0.2.2"]
                assert subprocess.run(ping, capture_output=True).returncode == 0, netns
        finally:
            closing = time.monotonic()
            pyslirp.close_all(results)
            closed = time.monotonic() - closing
        print(f"{SCALE_N} networks: set up in {set_up:.1f} s, closed at once in {closed:.2f} s")
        assert all(result.returncode is not None for result in results)
        assert all(mounted(netns) for netns in namespaces)  # the sandboxes took none
        leftovers.assert_clean(tmp_dir, namespaces)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
