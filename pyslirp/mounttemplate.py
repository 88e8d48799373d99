"""The template mount namespace slirp4netns starts in, made once per process.

slirp4netns's sandbox must start in a mount namespace other than the host's, else its
pivot_root unmounts the host's ``/run/netns/*`` (shared mounts). A private copy of the
host's namespace per spawn costs time in proportion to the host's mounts, and every
``ip netns add`` adds one. Instead, one small namespace is made once (see
``csrc/mntns.c``): a recursive slave of the host's (host mounts made later reach it; none
of its unmounts reach the host), without the netns mounts (every nsfs mount, and
``/run/netns`` with whatever is mounted there later). Helpers join it with setns; their
netns is handed to them by fd, as its path does not exist there.

A path on a mount newer than the template (a tmp_dir filesystem mounted since, or a
``/run/netns`` that ``ip netns add`` has only now made a mount) is answered with a new
template: unique mount ids only grow, so that test is one ``statx`` per path, whatever the
number of mounts. A setup's spawn call makes that test before its clone (given
:meth:`MountPaths.latest` and the plan's ``template_paths``), and the setup starts again
in a new template when it fails. Unique mount ids need Linux 6.8; before,
:func:`template_for` returns None and the caller copies the host's namespace per spawn,
as before.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterable
from typing import Any

from ._spawn import ffi, lib

__all__ = ["MountPaths", "MountTemplate", "template_for"]

NETNS_DIR = "/run/netns"  # where `ip netns add` mounts namespaces (podman's too)

_STEPS = {
    lib.PYSLIRP_TEMPLATE_STEP_CLONE: "clone",
    lib.PYSLIRP_TEMPLATE_STEP_UNSHARE: "unshare(CLONE_NEWNS)",
    lib.PYSLIRP_TEMPLATE_STEP_SLAVE: "make / a slave",
    lib.PYSLIRP_TEMPLATE_STEP_DETACH: "detach the netns mounts",
    lib.PYSLIRP_TEMPLATE_STEP_MOUNT_ID: "statx(STATX_MNT_ID_UNIQUE)",
    lib.PYSLIRP_TEMPLATE_STEP_OPEN: "open /proc/self/ns/mnt",
}


class MountTemplate:
    """One template namespace, held by :attr:`fd` until the last user drops it (a spawn
    on another thread may still be joining one that a newer template replaced). It exists
    before the namespace does: the C call writes the fd into it, so that a Ctrl-C cannot
    come between the two."""

    def __init__(self) -> None:
        self._made = ffi.new("struct pyslirp_template *", {"fd": -1})

    @property
    def fd(self) -> int:
        """The namespace's fd (close-on-exec)."""
        return int(self._made.fd)

    @property
    def c_template(self) -> Any:
        """The C struct the spawn call reads the fd and first mount id from."""
        return self._made

    @property
    def first_mount_id(self) -> int:
        """Mounts with smaller unique ids existed when it was made, and are there."""
        return int(self._made.first_mount_id)

    def __del__(self) -> None:
        made = getattr(self, "_made", None)  # (None: __init__ itself was interrupted)
        if made is not None and made.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(made.fd)

    def __repr__(self) -> str:
        return f"<MountTemplate fd={self.fd} first_mount_id={self.first_mount_id}>"


class MountPaths:
    """Paths a template must have the mounts of (and ``/run/netns``), as C data: made
    once, checked with one call per spawn (:meth:`template`)."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = [os.path.abspath(path) for path in paths]
        self._strings = [ffi.new("char[]", os.fsencode(path)) for path in [NETNS_DIR, *self.paths]]
        self.c_paths = ffi.new("char *[]", [*self._strings, ffi.NULL])  # a plan's template_paths

    def template(self) -> MountTemplate | None:
        """This process's template, made (or made anew) to have these paths' mounts; the
        current one is taken after one C call (a statx per path), without a lock."""
        current = _current
        if current is not None and self.in_template(current):
            return current
        return _template_having(self)

    def latest(self) -> MountTemplate | None:
        """This process's template as it is, unchecked (made if there is none yet): for a
        spawn call that checks it (``template_paths``)."""
        current = _current
        return current if current is not None else self.template()

    def in_template(self, template: MountTemplate) -> bool:
        """Whether these paths' mounts (and /run/netns's) are in ``template``: one C call,
        a statx per path (a missing path: its nearest existing parent's mount)."""
        return bool(lib.pyslirp_mounts_before(self.c_paths, template.first_mount_id))


_lock = threading.Lock()
_current: MountTemplate | None = None
_unsupported = False


def template_for(paths: Iterable[str]) -> MountTemplate | None:
    """This process's template, made (or made anew) so that every path in ``paths`` (and
    ``/run/netns``) is on a mount it has; None where the kernel cannot tell a mount's age.
    Hold the result for as long as its fd is used. Raises OSError (with a ``step``) when
    the template cannot be made."""
    return _template_having(MountPaths(paths))


def _template_having(paths: MountPaths) -> MountTemplate | None:
    global _current, _unsupported
    with _lock:
        if _unsupported:
            return None
        if _current is None or not paths.in_template(_current):
            try:
                _current = _make()
            except OSError as exc:
                if exc.errno != errno.EOPNOTSUPP:
                    raise
                _unsupported = True
                return None
        return _current


def _make() -> MountTemplate:
    detach = [ffi.new("char[]", os.fsencode(path)) for path in _netns_mounts()]
    c_detach = ffi.new("char *[]", [*detach, ffi.NULL])
    template = MountTemplate()
    made = template._made
    if lib.pyslirp_template_make(c_detach, made) != 0:
        step = _STEPS.get(made.step, f"step {made.step}")
        error = OSError(made.err, os.strerror(made.err))
        setattr(error, "step", step)  # noqa: B010 - OSError subclasses have no such slot
        error.add_note(f"pyslirp could not make its template mount namespace at: {step}")
        raise error
    return template


def _netns_mounts() -> list[str]:
    """The mount points the template goes without, parents first: ``/run/netns`` when it
    is a mount, and every nsfs mount (a namespace bound to a path)."""
    found = []
    with open("/proc/self/mountinfo", "rb") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            mount_point = _unescape(fields[4])
            fstype = fields[fields.index(b"-") + 1]
            if fstype == b"nsfs" or mount_point == os.fsencode(NETNS_DIR):
                found.append(mount_point)
    return [os.fsdecode(path) for path in sorted(set(found), key=len)]


def _unescape(field: bytes) -> bytes:
    r"""A mountinfo path: space, tab, newline and backslash come as ``\040`` and so on."""
    return field.decode("unicode_escape").encode("latin-1") if b"\\" in field else field


def _forget_after_fork() -> None:
    global _lock, _current
    _lock = threading.Lock()  # another thread may have held it at the fork
    _current = None  # this process's copy of the fd is closed; it makes its own


os.register_at_fork(after_in_child=_forget_after_fork)
