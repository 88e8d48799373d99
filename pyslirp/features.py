"""What a slirp4netns or pasta binary supports, read from its ``--help`` once per binary file."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from .errors import BinaryNotFound, StartError
from .gostrconv import go_quote
from .process import DEVNULL, Child, spawn

HELP_TIMEOUT = 10.0
HELP_MAX = 1 << 20  # bytes of --help read, at most

_FLAGS = {
    "disable_host_loopback": "--disable-host-loopback",
    "mtu": "--mtu",
    "enable_sandbox": "--enable-sandbox",
    "enable_seccomp": "--enable-seccomp",
    "cidr": "--cidr",
    "outbound_addr": "--outbound-addr",
    "ipv6": "--enable-ipv6",
    "userns_path": "--userns-path",
    "netns_type": "--netns-type",
    "macaddress": "--macaddress",
    "disable_dns": "--disable-dns",
}


@dataclass(frozen=True, kw_only=True)
class Features:
    """Which optional flags the binary's ``--help`` mentions (as Go's checkSlirpFlags)."""

    disable_host_loopback: bool = False
    mtu: bool = False
    enable_sandbox: bool = False
    enable_seccomp: bool = False
    cidr: bool = False
    outbound_addr: bool = False
    ipv6: bool = False
    userns_path: bool = False
    netns_type: bool = False
    macaddress: bool = False
    disable_dns: bool = False

    @classmethod
    def from_help(cls, text: str) -> Features:
        """Features from the text of ``slirp4netns --help``."""
        return cls(**{name: flag in text for name, flag in _FLAGS.items()})


@dataclass(frozen=True, kw_only=True)
class PastaFeatures:
    """Which optional pasta options the binary's ``--help`` mentions.

    ``map_guest_addr``: ``--map-guest-addr`` (pasta 2024-08-14 and later), which podman
    adds by default and drops when pasta refuses it.
    """

    map_guest_addr: bool = False

    @classmethod
    def from_help(cls, text: str) -> PastaFeatures:
        """Features from the text of ``pasta --help``."""
        return cls(map_guest_addr="--map-guest-addr" in text)


F = TypeVar("F", Features, PastaFeatures)

# (kind, resolved path, st_dev, st_ino, st_size, st_mtime_ns): a replaced or touched
# file is new.
_Key = tuple[str, str, int, int, int, int]

_lock = threading.Lock()
_cache: dict[_Key, object] = {}
_key_locks: dict[_Key, threading.Lock] = {}


def clear_cache() -> None:
    """Forget every binary probed so far: the next probe of each runs ``--help`` again
    (as after an upgrade that kept the file's size and mtime)."""
    with _lock:
        _cache.clear()


def _new_locks_after_fork() -> None:
    # A lock another thread held at fork stays held for ever in the child.
    global _lock, _key_locks
    _lock = threading.Lock()
    _key_locks = {}


os.register_at_fork(after_in_child=_new_locks_after_fork)


def probe_features(binary: str) -> Features:
    """The features of ``binary``, running its ``--help`` only if this file is new to us.

    Thread-safe: concurrent probes of one binary run it once.
    """
    return _probe(binary, "slirp4netns", Features.from_help, (0,))


def probe_pasta_features(binary: str) -> PastaFeatures:
    """The features of the pasta ``binary``, probed and cached as :func:`probe_features`.

    pasta up to 2023 exits 1 after printing its ``--help``, later ones 0: both are taken.
    """
    return _probe(binary, "pasta", PastaFeatures.from_help, (0, 1))


def _probe(binary: str, kind: str, parse: Callable[[str], F], statuses: tuple[int, ...]) -> F:
    key = _cache_key(binary, kind)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            return cast(F, cached)  # the key's kind fixes the type
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        with _lock:
            cached = _cache.get(key)
        if cached is None:
            cached = parse(_run_help(binary, kind, statuses))
            with _lock:
                _cache[key] = cached
                _key_locks.pop(key, None)
    return cast(F, cached)


def _cache_key(binary: str, kind: str) -> _Key:
    path = os.path.realpath(binary)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BinaryNotFound(f"checking {kind} binary {binary}: no such file") from None
    except OSError as exc:
        raise StartError(f"checking {kind} binary {binary}: {exc}") from exc
    return (kind, path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _run_help(binary: str, kind: str, statuses: tuple[int, ...]) -> str:
    """``binary --help``'s output (stdout and stderr), run as a child pyslirp owns: a
    Ctrl-C meanwhile leaves no zombie behind (subprocess's would, until its next run)."""
    prefix = f"checking {kind} binary {binary}"
    child = Child([binary, "--help"])
    try:
        spawn([binary, "--help"], child=child, stdin=DEVNULL, log=True, setpgid=False)
    except OSError as exc:
        raise StartError(f"{prefix}: {exc}") from exc
    try:
        returncode = child.wait(HELP_TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        output = _output(child)
        raise StartError(
            f"{prefix}: {kind} {go_quote(output)}: --help timed out after {HELP_TIMEOUT}s"
        ) from None
    except BaseException:  # Ctrl-C: it goes now, not when the handle is collected
        child.kill()
        child.wait()
        raise
    output = _output(child)
    if returncode not in statuses:
        status = _exit_text(returncode)
        raise StartError(f"{prefix}: {kind} {go_quote(output)}: {status}")
    return output


def _output(child: Child) -> str:
    fd = child.fd("log_fd")
    try:
        return os.fsdecode(os.pread(fd, HELP_MAX, 0))
    finally:
        child.close_fd("log_fd")


def _exit_text(returncode: int) -> str:
    """Like Go's ``*exec.ExitError`` text: ``exit status N`` or ``signal: NAME``."""
    if returncode >= 0:
        return f"exit status {returncode}"
    return f"signal: {signal.Signals(-returncode).name}"
