"""Requests to slirp4netns's API socket (``--api-socket``)."""

from __future__ import annotations

import errno
import json
import socket
import time
from typing import Any

from .errors import PortForwardError
from .helper import start_error

MAX_REPLY = 64 * 1024


def request(path: str, execute: str, arguments: dict[str, Any], deadline: float) -> Any:
    """Send one request and return the ``return`` value of the reply.

    The protocol: one JSON object and a newline, the write side shut down, the reply read
    to EOF. A reply with ``error`` raises :class:`PortForwardError` with slirp4netns's
    description; so does a reply that is not JSON, too large or late.
    """
    payload = json.dumps({"execute": execute, "arguments": arguments}).encode() + b"\n"
    reply = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(path)
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(MAX_REPLY + 1 - len(reply)):
                reply += chunk
                if len(reply) > MAX_REPLY:
                    raise PortForwardError(f"slirp4netns replied with over {MAX_REPLY} bytes")
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise start_error(f"cannot talk to slirp4netns API socket {path}", exc) from exc
        raise PortForwardError(f"cannot talk to slirp4netns API socket {path}: {exc}") from exc
    try:
        decoded = json.loads(reply)
    except (ValueError, RecursionError):  # RecursionError: nested too deep, "[[[[..."
        raise PortForwardError(f"slirp4netns sent a reply that is not JSON: {reply!r}") from None
    if not isinstance(decoded, dict):
        raise PortForwardError(f"slirp4netns sent an unexpected reply: {reply!r}")
    if "error" in decoded:
        error = decoded["error"]
        desc = error.get("desc", error) if isinstance(error, dict) else error
        raise PortForwardError(f"from slirp4netns while setting up port redirection: {desc}")
    return decoded.get("return")
