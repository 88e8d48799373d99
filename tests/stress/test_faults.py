"""The fault matrix: each way a helper, a path or the caller can fail, one test each.

Every test asserts the typed error (a :class:`pyslirp.SlirpError` subclass, or the
documented OSError) and then that nothing is left: no helper process, zombie, fd, socket
file or log file, and the namespace still mounted. Real slirp4netns and rootlessport in
real namespaces wherever they can produce the fault; shell-script fakes only where not.
"""

from __future__ import annotations

import os
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
