"""The containers.conf settings slirp4netns and pasta need, read as podman reads them."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .argv import BINARY_NAME
from .errors import BinaryNotFound, ConfigError
from .gostrconv import go_quote
from .lookpath import is_executable, look_path

SYSTEM_CONFIG = "/usr/share/containers/containers.conf"
OVERRIDE_CONFIG = "/etc/containers/containers.conf"
DEFAULT_HELPER_BINARIES_DIR = (
    "/usr/local/libexec/podman",
    "/usr/local/lib/podman",
    "/usr/libexec/podman",
    "/usr/lib/podman",
)
BINDIR_PREFIX = "$BINDIR"
PASTA_BINARY_NAME = "pasta"
_HINT = (
    "To resolve this error, set the helper_binaries_dir key in the `[engine]` section of "
    "containers.conf to the directory containing your helper binaries."
)


def _is_rootless() -> bool:
    return os.geteuid() != 0


def default_tmp_dir() -> str:
    """Podman's default ``tmp_dir``: /run/libpod for root, else under the runtime dir."""
    if not _is_rootless():
        return "/run/libpod"
    return os.path.join(runtime_dir(), "libpod", "tmp")


def runtime_dir() -> str:
    """The rootless runtime directory, found as podman finds it.

    ``$XDG_RUNTIME_DIR``, else ``/run/user/UID``, else ``$TMPDIR/podman-run-UID``, else
    ``$HOME/rundir``; each is made (mode 0700) if missing. A candidate that is not a
    directory of ours closed to others is skipped: anyone can create
    ``/tmp/podman-run-UID`` first. Raises :class:`ConfigError` naming every candidate
    skipped when none is left.
    """
    uid = os.geteuid()
    candidates = [
        os.environ.get("XDG_RUNTIME_DIR"),
        f"/run/user/{uid}",
        os.path.join(os.environ.get("TMPDIR") or "/tmp", f"podman-run-{uid}"),
    ]
    home = os.environ.get("HOME")
    if home:
        candidates.append(os.path.join(os.path.realpath(home), "rundir"))
    skipped = []
    for candidate in candidates:
        if not candidate:
            skipped.append("$XDG_RUNTIME_DIR (not set)")
            continue
        why = _not_private(candidate, uid)
        if why is None:
            return candidate
        skipped.append(f"{candidate} ({why})")
    raise ConfigError(f"no usable runtime directory for rootless use: {'; '.join(skipped)}")


def _not_private(path: str, uid: int) -> str | None:
    """Why ``path`` cannot be our runtime directory (made if missing), or None if it can."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        return f"cannot create it: {exc.strerror}"
    try:
        st = os.lstat(path)
    except OSError as exc:
        return exc.strerror
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if st.st_uid != uid:
        return f"owned by uid {st.st_uid}"
    if st.st_mode & 0o077 or st.st_mode & 0o700 != 0o700:
        return f"mode {stat.S_IMODE(st.st_mode):04o}, not 0700"
    return None


def user_config_path() -> str:
    """The per-user containers.conf (read only when rootless)."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(config_home, "containers", "containers.conf")


def config_files(bases: Iterable[str]) -> list[str]:
    """Each existing base file followed by its ``<base>.d/*.conf`` drop-ins, sorted by name."""
    files: list[str] = []
    for base in bases:
        if os.path.isfile(base):
            files.append(base)
        try:
            entries = sorted(os.scandir(base + ".d"), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise ConfigError(f"reading drop-in directory {base}.d: {exc}") from exc
        files += [e.path for e in entries if e.name.endswith(".conf") and not e.is_dir()]
    return files


def system_config_files() -> list[str]:
    """The chain podman reads: ``$CONTAINERS_CONF`` alone if set, else system, /etc, user."""
    path = os.environ.get("CONTAINERS_CONF")
    if path:
        if not os.path.exists(path):
            raise ConfigError(f"CONTAINERS_CONF file: {path}: no such file or directory")
        return [path]
    bases = [SYSTEM_CONFIG, OVERRIDE_CONFIG]
    if _is_rootless():
        bases.append(user_config_path())
    return config_files(bases)


@dataclass(frozen=True, kw_only=True)
class Config:
    """The ``[engine]`` settings of containers.conf that slirp4netns setup uses, and
    ``[network] pasta_options``.

    ``loaded_files`` lists the files :meth:`load` read, in order.
    """

    network_cmd_path: str | None = None
    network_cmd_options: tuple[str, ...] = ()
    no_pivot_root: bool = False
    tmp_dir: str = field(default_factory=default_tmp_dir)
    helper_binaries_dir: tuple[str, ...] = DEFAULT_HELPER_BINARIES_DIR
    pasta_options: tuple[str, ...] = ()
    loaded_files: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        for name in (
            "network_cmd_options",
            "helper_binaries_dir",
            "pasta_options",
            "loaded_files",
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @classmethod
    def load(cls, bases: Sequence[str] | None = None) -> Config:
        """Read the containers.conf chain; later files override earlier keys.

        Without ``bases`` this is podman's chain (see :func:`system_config_files`). With
        them, each given file (which must exist) is read, followed by its drop-ins.
        """
        if bases is None:
            files = system_config_files()
        else:
            for base in bases:
                if not os.path.isfile(base):
                    raise ConfigError(f"reading config {base}: no such file")
            files = config_files(bases)
        values: dict[str, Any] = {}
        for path in files:
            values.update(_read_engine(path))
        return cls(**values, loaded_files=tuple(files))

    def find_helper_binary(self, name: str, *, search_path: bool = False) -> str:
        """Find ``name`` in ``$CONTAINERS_HELPER_BINARY_DIR``, the helper dirs, then $PATH.

        ``$BINDIR`` at the start of a helper dir means the running program's directory.
        $PATH is searched only when ``search_path`` (podman does for slirp4netns, not for
        rootlessport). Like a shell's command hash, a path found is remembered for the
        same directories and $PATH, and searched for again once it is not executable.
        """
        dirs = list(self.helper_binaries_dir)
        env_dir = os.environ.get("CONTAINERS_HELPER_BINARY_DIR")
        if env_dir is not None:
            dirs.insert(0, env_dir)
        path = os.environ.get("PATH", "") if search_path else None
        key = (name, tuple(dirs), path, sys.argv[0] if sys.argv else "")
        found = _found.get(key)
        if found is not None and is_executable(found):
            return found
        found = _search(name, dirs, search_path)
        if found is not None:
            _found[key] = found
            return found
        searched = " or $PATH" if search_path else ""
        if not dirs:
            raise BinaryNotFound(
                f"could not find {go_quote(name)} because there are no helper binary "
                f"directories configured{searched}.  {_HINT}"
            )
        raise BinaryNotFound(
            f"could not find {go_quote(name)} in one of [{' '.join(dirs)}]{searched}.  {_HINT}"
        )

    def find_network_cmd(self) -> str:
        """The slirp4netns binary: ``network_cmd_path`` if set, else found as a helper."""
        if self.network_cmd_path and os.sep in self.network_cmd_path:
            return self.network_cmd_path
        if self.network_cmd_path:
            # A bare name is looked up in $PATH, as Go's exec.Command does.
            found = look_path(self.network_cmd_path)
            if found is None:
                raise BinaryNotFound(
                    f"exec: {go_quote(self.network_cmd_path)}: executable file not found in $PATH"
                )
            return found
        return self._find_network_helper(BINARY_NAME)

    def find_pasta(self) -> str:
        """The pasta binary, found as podman finds it: the helper dirs, then $PATH."""
        return self._find_network_helper(PASTA_BINARY_NAME)

    def _find_network_helper(self, name: str) -> str:
        try:
            return self.find_helper_binary(name, search_path=True)
        except BinaryNotFound as exc:
            raise BinaryNotFound(
                f"could not find {name}, the network namespace can't be configured: {exc}"
            ) from None


_KEYS: dict[str, tuple[type, str]] = {
    "network_cmd_path": (str, "a string"),
    "network_cmd_options": (list, "an array of strings"),
    "no_pivot_root": (bool, "a boolean"),
    "tmp_dir": (str, "a string"),
    "helper_binaries_dir": (list, "an array of strings"),
}
_NETWORK_KEYS: dict[str, tuple[type, str]] = {
    "pasta_options": (list, "an array of strings"),
}


def _read_engine(path: str) -> dict[str, Any]:
    """The ``[engine]`` (and ``[network]``) keys we use from one file, type-checked and
    ready for Config."""
    import tomllib  # only when a containers.conf exists: most runs read none

    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"reading config {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"decode configuration {path}: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"decode configuration {path}: nested too deeply") from None
    found = _read_table(path, document, "engine", _KEYS)
    found.update(_read_table(path, document, "network", _NETWORK_KEYS))
    if "network_cmd_path" in found:
        found["network_cmd_path"] = found["network_cmd_path"] or None
    return found


def _read_table(
    path: str, document: dict[str, Any], table: str, keys: dict[str, tuple[type, str]]
) -> dict[str, Any]:
    section = document.get(table, {})
    if not isinstance(section, dict):
        raise ConfigError(f"decode configuration {path}: [{table}] must be a table")
    found: dict[str, Any] = {}
    for key, (kind, description) in keys.items():
        if key not in section:
            continue
        value = section[key]
        if kind is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = tuple(value)
        elif kind is list or not isinstance(value, kind):
            raise ConfigError(
                f"decode configuration {path}: {table}.{key} must be {description}, got {value!r}"
            )
        found[key] = value
    return found


# (name, helper dirs, $PATH or None, argv[0]) -> the path found there.
_found: dict[tuple[str, tuple[str, ...], str | None, str], str] = {}


def clear_helper_cache() -> None:
    """Forget every helper path found so far, as a shell's ``hash -r`` does."""
    _found.clear()


def _search(name: str, dirs: list[str], search_path: bool) -> str | None:
    for directory in dirs:
        expanded = _expand_bindir(directory)
        if expanded is None:
            continue
        candidate = os.path.abspath(os.path.join(expanded, name))
        if is_executable(candidate):
            return candidate
    return look_path(name) if search_path else None


def _expand_bindir(directory: str) -> str | None:
    """Replace a leading ``$BINDIR`` with the running program's directory (None: unknown)."""
    if directory != BINDIR_PREFIX and not directory.startswith(BINDIR_PREFIX + os.sep):
        return directory
    program = sys.argv[0] if sys.argv else ""
    if not program or not os.path.isfile(program):
        return None
    bindir = os.path.dirname(os.path.realpath(program))
    return bindir + directory[len(BINDIR_PREFIX) :]
