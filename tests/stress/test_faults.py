"""The fault matrix: each way a helper, a path or the caller can fail, one test each.

Every test asserts the typed error (a :class:`pyslirp.SlirpError` subclass, or the
documented OSError) and then that nothing is left: no helper process, zombie, fd, socket
file or log file, and the namespace still mounted. Real slirp4netns and rootlessport in
real namespaces wherever they can produce the fault; shell-script fakes only where not.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import pyslirp
from pyslirp.ready import wait_ready

pytestmark = pytest.mark.stress


def options(config: pyslirp.Config, netns: str, **kwargs: object) -> pyslirp.SetupOptions:
    return pyslirp.SetupOptions(config=config, container_id="ctr", netns=netns, **kwargs)


def test_helper_reaped_before_the_ready_wait_is_start_error(leftovers):
    ready_r, ready_w = os.pipe()
    try:
        child = pyslirp.spawn(["sh", "-c", "exit 4"], fds={3: ready_w})
    finally:
        os.close(ready_w)
    try:
        child.wait()  # the reaper has closed the child's pidfd: wait_ready must not use it
        with pytest.raises(pyslirp.StartError, match="fake exited with status 4"):
            wait_ready("fake", child, ready_r, time.monotonic() + 10, lambda: "")
    finally:
        os.close(ready_r)
    leftovers.assert_clean(None)


# --- the network namespace path ----------------------------------------------------------


def test_netns_path_missing_is_start_error(leftovers, tmp_dir, tmp_path):
    missing = str(tmp_path / "no-such-netns")
    with pytest.raises(pyslirp.StartError, match="exited with status 1"):
        pyslirp.setup(options(pyslirp.Config(tmp_dir=tmp_dir), missing))
    leftovers.assert_clean(tmp_dir)


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_netns_path_not_a_netns_is_start_error(leftovers, tmp_dir, tmp_path, kind):
    path = tmp_path / "not-a-netns"
    if kind == "file":
        path.write_text("")
    else:
        path.mkdir()
    with pytest.raises(pyslirp.StartError, match="exited with status 1"):
        pyslirp.setup(options(pyslirp.Config(tmp_dir=tmp_dir), str(path)))
    leftovers.assert_clean(tmp_dir)


def test_deleted_netns_is_start_error(leftovers, tmp_dir, netns_pool):
    (netns,) = netns_pool(1)
    subprocess.run(["ip", "netns", "delete", os.path.basename(netns)], check=True)
    with pytest.raises(pyslirp.StartError, match="exited with status 1"):
        pyslirp.setup(options(pyslirp.Config(tmp_dir=tmp_dir), netns))
    leftovers.assert_clean(tmp_dir)


def test_helper_never_ready_is_ready_timeout(leftovers, tmp_dir, tmp_path):
    """Real slirp4netns on a FIFO as netns path: its open() blocks, so it never gets
    ready. Neither may setup (its own open of the path) nor slirp4netns's forked child
    (blocked in that open when its parent is stopped) outlive the deadline."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(pyslirp.ReadyTimeout, match="did not become ready in time"):
        pyslirp.setup(options(pyslirp.Config(tmp_dir=tmp_dir), str(fifo), ready_timeout=0.5))
    leftovers.assert_clean(tmp_dir)
