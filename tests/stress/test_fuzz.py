"""Fuzzing with hypothesis: bad input gets a documented exception, nothing hangs.

Targets: network option strings, PortMapping values, podman ``-p`` specs, net_status
JSON, and the replies of a fake slirp4netns API socket server (garbage, truncated JSON,
huge, slow or missing) against :func:`pyslirp.apisocket.request`. Examples per test:
``PYSLIRP_FUZZ_EXAMPLES`` (CI: 150; by hand, 2000 gives 10,000 over the five tests).
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
from ipaddress import ip_address
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyslirp
from pyslirp.apisocket import MAX_REPLY, request
from pyslirp.netstatus import StatusBlock
from pyslirp.options import OPTION_KEYS
from pyslirp.ports import slirp4netns_hostfwd_args

from helpers import env_count

pytestmark = pytest.mark.stress

EXAMPLES = env_count("PYSLIRP_FUZZ_EXAMPLES", 150)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # no per-example timing: the load of a shared machine varies
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- network options ------------------------------------------------------------------------

VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "true",
            "false",
            "rootlesskit",
            "slirp4netns",
            "lo",
            "::1",
            "fd00::1",
            "10.0.2.0/24",
            "10.0.2.0/25",
            "0.0.0.0/0",
            "1.2.3.4",
            "+1500",
            "-1",
            "65520",
            "65521",
            "68",
            "67",
            "٣٣",
            "1e3",
            "10.0.2.0/024",
        ]
    ),
    st.integers(-(2**70), 2**70).map(str),
    st.ip_addresses().map(str),
    st.builds(lambda ip, n: f"{ip}/{n}", st.ip_addresses(v=4), st.integers(-1, 40)),
)
OPTION = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(OPTION_KEYS), VALUES),
    st.text(max_size=40),
)


@FUZZ
@given(config=st.lists(OPTION, max_size=4), extra=st.lists(OPTION, max_size=4))
def test_fuzz_option_strings_parse_or_raise_option_error(leftovers, config, extra):
    try:
        options = pyslirp.parse_options(config, extra)
    except pyslirp.OptionError:
        return
    assert isinstance(options, pyslirp.NetworkOptions)
    assert 68 <= options.mtu <= 65521


# --- port mappings --------------------------------------------------------------------------

ANY_VALUE = st.one_of(
    st.integers(-70000, 140000),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.none(),
    st.binary(max_size=4),
)
PORTS = st.one_of(st.integers(-2, 65537), ANY_VALUE)
PROTOCOLS = st.one_of(
    st.lists(
        st.sampled_from(["tcp", "udp", "sctp", "TCP", "", "icmp"]), min_size=1, max_size=4
    ).map(",".join),
    ANY_VALUE,
)
HOST_IPS = st.one_of(
    st.just(""),
    st.ip_addresses().map(str),
    ANY_VALUE,
    st.sampled_from(["fe80::1%eth0", "::ffff:1.2.3.4", "localhost"]),
)


@FUZZ
@given(
    container_port=PORTS,
    host_port=PORTS,
    host_ip=HOST_IPS,
    range_=st.one_of(st.integers(-1, 70000), ANY_VALUE),
    protocol=PROTOCOLS,
)
def test_fuzz_port_mapping_values_build_or_raise_port_mapping_error(
    leftovers, container_port, host_port, host_ip, range_, protocol
):
    try:
        mapping = pyslirp.PortMapping(
            container_port=container_port,
            host_port=host_port,
            host_ip=host_ip,
            range=range_,
            protocol=protocol,
        )
    except pyslirp.PortMappingError:
        return
    assert 1 <= mapping.host_port <= mapping.host_port + mapping.range - 1 <= 65535
    assert 1 <= mapping.container_port <= mapping.container_port + mapping.range - 1 <= 65535
    json.dumps(mapping.to_json())
    try:
        forwards = slirp4netns_hostfwd_args(mapping)
    except pyslirp.PortMappingError:
        assert "sctp" in mapping.protocols
        return
    assert len(forwards) == mapping.range * len(mapping.protocols)


# --- podman -p specs ------------------------------------------------------------------------

SPEC_PIECES = st.sampled_from(
    [
        "8080",
        "80",
        "0",
        "65535",
        "65536",
        "-",
        ":",
        "::",
        "/",
        "[",
        "]",
        "::1",
        "[::1]",
        "127.0.0.1",
        "0.0.0.0",
        "tcp",
        "udp",
        "sctp",
        "TCP",
        ",",
        "1-2",
        "+1",
        "٣",
        " ",
        "",
    ]
)
SPECS = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789:-/[].,abcdefptuTCPUDP ", max_size=30),
    st.lists(SPEC_PIECES, max_size=8).map("".join),
)


@FUZZ
@given(spec=SPECS)
def test_fuzz_publish_specs_parse_or_raise_port_mapping_error(leftovers, spec):
    try:
        mapping = pyslirp.parse_publish(spec)
    except pyslirp.PortMappingError as exc:
        assert str(exc).startswith("invalid port mapping ")
        return
    assert isinstance(mapping, pyslirp.PortMapping)
    # What parses is a valid mapping, and parses back to itself from its own spelling.
    host_ip = f"[{mapping.host_ip}]" if ":" in mapping.host_ip else mapping.host_ip
    ranges = [
        f"{p}-{p + mapping.range - 1}" if mapping.range > 1 else str(p)
        for p in (mapping.host_port, mapping.container_port)
    ]
    again = f"{host_ip}:{ranges[0]}:{ranges[1]}/{mapping.protocol}".lstrip(":")
    assert pyslirp.parse_publish(again) == mapping


# --- net_status JSON ------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
ADDRESS = st.one_of(
    st.builds(lambda ip, n: f"{ip}/{n}", st.ip_addresses(), st.integers(-1, 130)),
    st.ip_addresses().map(str),
    JSON,
)
SUBNET = st.fixed_dictionaries({"ipnet": ADDRESS}, optional={"gateway": ADDRESS})
INTERFACE = st.fixed_dictionaries(
    {},
    optional={
        "subnets": st.one_of(st.lists(SUBNET, max_size=3), JSON),
        "mac_address": st.one_of(st.text(max_size=17), JSON),
    },
)
BLOCK = st.one_of(
    st.fixed_dictionaries(
        {"interfaces": st.dictionaries(st.text(max_size=6), INTERFACE, max_size=3)}
    ),
    st.fixed_dictionaries({"interfaces": JSON}),
    JSON,
)


@FUZZ
@given(net_status=st.dictionaries(st.text(max_size=6), BLOCK, max_size=3))
def test_fuzz_net_status_json_gives_an_ip_or_value_error(leftovers, net_status):
    """Through a JSON round trip, as podman's netavark output arrives."""
    net_status = json.loads(json.dumps(net_status))
    try:
        child_ip = pyslirp.get_rootless_port_child_ip(None, net_status)
    except ValueError:
        child_ip = None
    if child_ip:
        assert ip_address(child_ip).version in (4, 6)
    for block in net_status.values():
        try:
            status = StatusBlock.from_json(block)
        except ValueError:
            continue
        assert all(isinstance(name, str) for name in status.interfaces)


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
        "return": JSON,
        "error": st.one_of(JSON, st.fixed_dictionaries({}, optional={"desc": JSON})),
    },
).map(lambda d: json.dumps(d).encode())
REPLIES = st.one_of(
    st.binary(max_size=200),
    VALID,
    JSON.map(lambda j: json.dumps(j).encode()),
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
