"""Fake helpers, only for faults the real binaries cannot produce (a death at a chosen
moment, never getting ready, a slow start): shell scripts in a directory of the test's."""

from __future__ import annotations

from pathlib import Path

# What slirp4netns 1.2.0's --help mentions: the flags pyslirp probes for.
SLIRP4NETNS_HELP = (
    "--disable-host-loopback --mtu --enable-sandbox --enable-seccomp --cidr --enable-ipv6 "
    "--outbound-addr --userns-path --netns-type --api-socket"
)


def script(path: Path, body: str) -> Path:
    """An executable shell script at ``path`` running ``body``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def fake_slirp4netns(directory: Path, body: str) -> Path:
    """``directory/slirp4netns``: ``--help`` as 1.2.0's, else ``body`` (its argv is "$@";
    fd 3 is the ready fd, fd 4 the exit fd)."""
    help_part = f'if [ "$1" = --help ]; then echo "{SLIRP4NETNS_HELP}"; exit 0; fi'
    return script(directory / "slirp4netns", f"{help_part}\n{body}")


def fake_rootlessport(directory: Path, body: str) -> Path:
    """``directory/rootlessport`` running ``body`` (the config on stdin, the exit fd 3,
    the ready fd 4); ``directory`` is then a helper_binaries_dir."""
    return script(directory / "rootlessport", body)
