"""The one rule by which pyslirp finds a program named without a slash."""

from __future__ import annotations

import os
from collections.abc import Mapping


def look_path(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The first executable regular file ``name`` in the absolute directories of $PATH
    (of ``env``, else of this process), or None.

    Like Go's ``exec.LookPath``: a relative or empty $PATH entry is skipped, so a command
    never runs from whatever the current directory happens to be.
    """
    path = (os.environ if env is None else env).get("PATH", os.defpath)
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory, name)
        if os.path.isabs(directory) and is_executable(candidate):
            return candidate
    return None


def is_executable(path: str) -> bool:
    """Whether ``path`` is a regular file this process may execute."""
    return os.path.isfile(path) and os.access(path, os.X_OK)
