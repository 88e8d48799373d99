"""The one nothing-left check of the tests: fds, zombies, children, helpers, mounts and
tmp_dir after a test, against what the process had before it."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

import pyslirp

from .processes import children, helper_pids, mounted, open_fds, wait_gone, zombies


class Leftovers:
    """What this process had when a test began, and the check that it got nothing more.

    Helper processes are this run's (see :func:`~support.processes.pids_of`) minus those
    already running when the test began.
    """

    def __init__(self) -> None:
        pyslirp.spawn(["true"], exit_fd=3).wait()  # the reaper and owner pipe live on
        self.fds = open_fds()
        self.helpers = helper_pids()

    def new_helpers(self) -> set[int]:
        return helper_pids() - self.helpers

    def assert_clean(
        self, tmp_dir: str | os.PathLike[str] | None, netns: Sequence[str] = ()
    ) -> None:
        """No new helper alive (a dying one gets 5 s), no zombie or child, the same fds,
        every netns still mounted, ``tmp_dir`` absent or empty."""
        alive = [pid for pid in self.new_helpers() if not wait_gone(pid, timeout=5)]
        assert alive == [], f"helpers left running: {alive}"
        assert zombies() == []
        assert children() == {}
        fds = open_fds()
        assert fds == self.fds, (
            f"fds changed: new {sorted(set(fds.items()) - set(self.fds.items()))}, "
            f"gone {sorted(set(self.fds.items()) - set(fds.items()))}"
        )
        unmounted = [path for path in netns if not mounted(path)]
        assert unmounted == [], f"netns no longer mounted: {unmounted}"
        if tmp_dir is not None and os.path.exists(tmp_dir):
            left = sorted(p.name for p in Path(tmp_dir).iterdir())
            assert left == [], f"left in tmp_dir: {left}"

    def kill_new_helpers(self) -> None:
        for pid in self.new_helpers():
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            finally:
                os.close(pidfd)
