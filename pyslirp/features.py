"""What a slirp4netns binary supports, read from its ``--help`` once per binary file."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass

from .errors import BinaryNotFound, SlirpError
from .gostrconv import go_quote

HELP_TIMEOUT = 10.0

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


# (resolved path, st_dev, st_ino, st_size, st_mtime_ns): a replaced or touched file is new.
_Key = tuple[str, int, int, int, int]

_lock = threading.Lock()
_cache: dict[_Key, Features] = {}
_key_locks: dict[_Key, threading.Lock] = {}
_probes = 0


def _new_locks_after_fork() -> None:
    # A lock another thread held at fork stays held for ever in the child.
    global _lock, _key_locks
    _lock = threading.Lock()
    _key_locks = {}


os.register_at_fork(after_in_child=_new_locks_after_fork)


def probe_count() -> int:
    """How many times ``--help`` has been run in this process (cache misses)."""
    return _probes


def probe_features(binary: str) -> Features:
    """The features of ``binary``, running its ``--help`` only if this file is new to us.

    Thread-safe: concurrent probes of one binary run it once.
    """
    key = _cache_key(binary)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        with _lock:
            cached = _cache.get(key)
        if cached is None:
            cached = _run_help(binary)
            with _lock:
                _cache[key] = cached
                _key_locks.pop(key, None)
    return cached


def _cache_key(binary: str) -> _Key:
    path = os.path.realpath(binary)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BinaryNotFound(f"checking slirp4netns binary {binary}: no such file") from None
    except OSError as exc:
        raise SlirpError(f"checking slirp4netns binary {binary}: {exc}") from exc
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _run_help(binary: str) -> Features:
    global _probes
    with _lock:
        _probes += 1
    prefix = f"checking slirp4netns binary {binary}"
    try:
        result = subprocess.run(
            [binary, "--help"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=HELP_TIMEOUT,
            close_fds=True,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = os.fsdecode(exc.output or b"")
        raise SlirpError(
            f"{prefix}: slirp4netns {go_quote(output)}: --help timed out after {HELP_TIMEOUT}s"
        ) from None
    except OSError as exc:
        raise SlirpError(f"{prefix}: {exc}") from exc
    output = os.fsdecode(result.stdout)
    if result.returncode != 0:
        status = _exit_text(result.returncode)
        raise SlirpError(f"{prefix}: slirp4netns {go_quote(output)}: {status}")
    return Features.from_help(output)


def _exit_text(returncode: int) -> str:
    """Like Go's ``*exec.ExitError`` text: ``exit status N`` or ``signal: NAME``."""
    if returncode >= 0:
        return f"exit status {returncode}"
    return f"signal: {signal.Signals(-returncode).name}"
