"""asyncio: asetup() and aclose() on the event loop, no thread per setup (issue 13)."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

import pyslirp
from pyslirp._spawn import lib

from support.netns import addresses
from support.options import options
from support.ports import free_ports
from support.processes import children, open_fds, pids_of, zombies

pytestmark = pytest.mark.root  # real helpers in real namespaces

HANDLERS = ["none", "rootlesskit", "slirp4netns"]


def assert_nothing_left(config) -> None:
    assert pids_of("slirp4netns") == pids_of("rootlessport") == set()
    assert zombies() == []
    assert children() == {}
    tmp_dir = Path(config.tmp_dir)
    assert not tmp_dir.exists() or list(tmp_dir.iterdir()) == []


@contextmanager
def tcp_listener_in(netns: str, port: int) -> Iterator[socket.socket]:
    """A TCP listener on ``port`` inside ``netns``, made from this thread (in C)."""
    fd = lib.pyslirp_socket_in_netns(os.fsencode(netns), socket.AF_INET, socket.SOCK_STREAM, 0)
    assert fd >= 0, os.strerror(-fd)
    with socket.socket(fileno=fd) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(64)
        listener.setblocking(False)
        yield listener


async def echo_once(listener: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    conn, _ = await loop.sock_accept(listener)
    with conn:
        await loop.sock_sendall(conn, await loop.sock_recv(conn, 100))


async def ask(port: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    writer.write(b"hi")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(100), 10)
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.mark.parametrize("handler", HANDLERS)
def test_async_with_asetup_configures_tap0_and_leaves_nothing(hygiene, config, netns, handler):
    async def main() -> int:
        async with pyslirp.asetup(options(config, netns, handler)) as result:
            assert result.returncode is None
            assert [a["local"] for a in addresses(netns)] == ["10.0.2.100"]
            return result.pid

    asyncio.run(main())
    assert_nothing_left(config)


def test_await_asetup_then_aclose(hygiene, config, netns):
    async def main() -> None:
        result = await pyslirp.asetup(options(config, netns, "slirp4netns"))
        assert result.api_socket is not None and os.path.exists(result.api_socket)
        await result.aclose()
        assert result.returncode is not None

    asyncio.run(main())
    assert_nothing_left(config)


def test_a_netns_that_is_a_regular_file_fails_at_once(hygiene, config, tmp_path):
    plain = tmp_path / "not-a-netns"
    plain.write_text("")

    async def main() -> None:
        with pytest.raises(pyslirp.StartError, match="exited with status 1"):
            await pyslirp.asetup(options(config, str(plain)))

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 5  # far below ready_timeout: noticed, not timed out
    assert_nothing_left(config)


def test_the_loop_keeps_running_while_a_slow_helper_starts(hygiene, short_tmp, netns):
    slow = short_tmp / "slirp4netns"
    slow.write_text('#!/bin/sh\n[ "$1" = --help ] || sleep 0.5\nexec /usr/bin/slirp4netns "$@"\n')
    slow.chmod(0o755)
    config = pyslirp.Config(tmp_dir=str(short_tmp / "run"), network_cmd_path=str(slow))
    pyslirp.probe_features(str(slow))  # the first probe of a binary runs --help: not this

    async def main() -> float:
        gaps: list[float] = []
        done = asyncio.Event()

        async def tick() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        async with pyslirp.asetup(options(config, netns)):
            pass
        done.set()
        await ticker
        assert sum(gaps) > 0.45  # it did wait for the slow start meanwhile
        return max(gaps)

    assert asyncio.run(main()) < 0.1
    assert_nothing_left(config)


@pytest.mark.parametrize("handler", ["rootlesskit", "slirp4netns"])
def test_32_setups_at_once_on_one_thread(hygiene, short_tmp, make_netns, handler):
    count = 32
    config = pyslirp.Config(tmp_dir=str(short_tmp / "run"))
    namespaces = [make_netns() for _ in range(count)]
    ports = free_ports(count)
    pyslirp.spawn(["true"]).wait()  # the reaper thread exists before the burst
    threads_before = threading.active_count()
    tasks_before = len(os.listdir("/proc/self/task"))

    def opts(i: int) -> pyslirp.SetupOptions:
        ports_ = [pyslirp.PortMapping(host_port=ports[i], container_port=80)]
        return pyslirp.SetupOptions(
            config=config,
            container_id=f"burst{i}",
            netns=namespaces[i],
            ports=ports_,
            extra_options=[f"port_handler={handler}"],
        )

    async def main() -> None:
        results = await asyncio.gather(*(pyslirp.asetup(opts(i)) for i in range(count)))
        try:
            assert threading.active_count() == threads_before
            assert len(os.listdir("/proc/self/task")) <= tasks_before + 1  # the spawner
            with ExitStack() as stack:
                listeners = [stack.enter_context(tcp_listener_in(n, 80)) for n in namespaces]
                servers = [asyncio.create_task(echo_once(one)) for one in listeners]
                answers = await asyncio.gather(*(ask(port) for port in ports))
                await asyncio.gather(*servers)
            assert answers == [b"hi"] * count
        finally:
            await asyncio.gather(*(result.aclose() for result in results))

    asyncio.run(main())
    assert_nothing_left(config)


CANCELS = int(os.environ.get("PYSLIRP_CANCELS", "100"))


def test_cancelling_asetup_at_a_random_moment_leaves_nothing(config, netns):
    rng = random.Random()
    pyslirp.spawn(["true"], exit_fd=3).wait()  # the reaper and owner pipe live on

    async def one(i: int) -> bool:
        handler = HANDLERS[i % 3]
        task = asyncio.ensure_future(pyslirp.asetup(options(config, netns, handler)))
        await asyncio.sleep(rng.uniform(0, 0.02))
        task.cancel()
        try:
            result = await task
        except asyncio.CancelledError:
            return True
        await result.aclose()
        return False

    async def main() -> None:
        before = open_fds()  # the loop's own fds included
        cancelled = 0
        for i in range(CANCELS):
            cancelled += await one(i)
            assert open_fds() == before, f"round {i}"
            assert pids_of("slirp4netns") == pids_of("rootlessport") == set(), f"round {i}"
        assert cancelled >= CANCELS // 10  # a fair share landed inside a setup (~20%)

    asyncio.run(main())
    assert_nothing_left(config)
