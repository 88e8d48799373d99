"""Fuzzing with hypothesis: bad replies get a documented exception, nothing hangs.

Target: the replies of a fake slirp4netns API socket server (garbage, truncated ANY_JSON,
huge, slow or missing) against :func:`pyslirp.apisocket.request`. Examples:
``PYSLIRP_FUZZ_EXAMPLES`` (CI: 150). The pure parsers' fuzz tests live beside their
other tests (test_options.py, test_ports.py, test_netstatus.py).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyslirp
from pyslirp.apisocket import MAX_REPLY, request

from support.processes import ANY_JSON, env_count

pytestmark = pytest.mark.stress

EXAMPLES = env_count("PYSLIRP_FUZZ_EXAMPLES", 150)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # no per-example timing: the load of a shared machine varies
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- the slirp4netns API socket -------------------------------------------------------------


class FakeApi:
    """A Unix socket server that answers one request with ``reply`` bytes, then closes
    (``hold``: keeps the connection open, unanswered, until :meth:`done`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.release = threading.Event()
        self.thread: threading.Thread | None = None
        self.received = b""

    def serve(self, reply: bytes, *, read_request: bool, hold: bool) -> None:
        self.release.clear()
        self.received = b""
        self.thread = threading.Thread(target=self._one, args=(reply, read_request, hold))
        self.thread.start()

    def _one(self, reply: bytes, read_request: bool, hold: bool) -> None:
        conn, _ = self.listener.accept()
        with conn:
            if read_request:
                while chunk := conn.recv(65536):
                    self.received += chunk
            try:
                conn.sendall(reply)
            except OSError:  # the client gave up first (a huge reply): fine
                pass
            if hold:
                self.release.wait()

    def done(self) -> None:
        self.release.set()
        assert self.thread is not None
        self.thread.join()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    directory = tempfile.mkdtemp(prefix="pyslirp-api-")  # short: sun_path is 108 bytes
    server = FakeApi(os.path.join(directory, "api.sock"))
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(directory)


VALID = st.fixed_dictionaries(
    {},
    optional={
        "return": ANY_JSON,
        "error": st.one_of(ANY_JSON, st.fixed_dictionaries({}, optional={"desc": ANY_JSON})),
    },
).map(lambda d: json.dumps(d).encode())
REPLIES = st.one_of(
    st.binary(max_size=200),
    VALID,
    ANY_JSON.map(lambda j: json.dumps(j).encode()),
    st.builds(lambda b, cut: b[: max(0, len(b) - cut)], VALID, st.integers(1, 20)),  # truncated
    st.integers(1, 100_000).map(lambda n: b"[" * n),  # deeply nested
    st.integers(MAX_REPLY - 2, MAX_REPLY + 4096).map(
        lambda n: b'{"return": "' + b"x" * n + b'"}'
    ),  # huge
    st.text(max_size=50).map(lambda t: t.encode("utf-16")),
)
DEADLINE = 0.25  # seconds the client gives a server that never answers
HANG_MARGIN = 10.0  # a call still running this long after its deadline is a hang


@FUZZ
@given(reply=REPLIES, read_request=st.booleans(), hold=st.booleans())
def test_fuzz_api_socket_replies_give_a_value_or_port_forward_error(
    leftovers, fake_api, reply, read_request, hold
):
    fake_api.serve(reply, read_request=read_request, hold=hold)
    outcome: dict[str, Any] = {}
    deadline = time.monotonic() + DEADLINE

    def call() -> None:
        try:
            outcome["value"] = request(fake_api.path, "add_hostfwd", {"host_port": 1}, deadline)
        except BaseException as exc:
            outcome["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    caller.join(DEADLINE + HANG_MARGIN)
    hung = caller.is_alive()
    fake_api.done()
    caller.join()
    assert not hung, f"request() still running {HANG_MARGIN} s past its deadline"
    if "error" in outcome:
        assert isinstance(outcome["error"], pyslirp.PortForwardError), outcome["error"]
        return
    decoded = json.loads(reply)
    assert isinstance(decoded, dict) and "error" not in decoded
    assert outcome["value"] == decoded.get("return")
    if read_request:
        assert json.loads(fake_api.received) == {
            "execute": "add_hostfwd",
            "arguments": {"host_port": 1},
        }
