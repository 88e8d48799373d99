"""The Python side of every case: each function runs one batch and returns its timings.

Only the work a case names is inside ``perf_counter_ns``; pipes, netlink watches and
teardown are outside. Every process started is stopped before a function returns.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import pyslirp
from pyslirp import features, pasta, slirp4netns

import nsutil

SLIRP4NETNS = "/usr/bin/slirp4netns"
TRUE = "/bin/true"
PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
V4 = ("enable_ipv6=false",)
V6 = ("enable_ipv6=true",)

Params = dict[str, Any]
Result = dict[str, Any]

_libc = ctypes.CDLL(None, use_errno=True)


def _timed(n: int, fn: Callable[[], object]) -> list[int]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return times


def _set_pdeathsig() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _naive_preexec() -> None:
    """What a hand-written setup does in the child: private mounts, then pdeathsig."""
    if _libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount")
    _set_pdeathsig()


def spawn_case(p: Params) -> Result:
    """Spawn ``/bin/true`` and wait, ``p["n"]`` times, the way ``p["how"]`` says."""
    r, w = os.pipe()  # above fd 4: stand-ins for setup's ready and exit pipes
    try:
        how = p["how"]
        run: Callable[[], object]
        if how == "pyslirp":
            run = lambda: pyslirp.spawn([TRUE]).wait()  # noqa: E731
        elif how == "pyslirp_full":
            run = lambda: pyslirp.spawn(  # noqa: E731
                [TRUE], fds={3: r, 4: w}, pdeathsig=signal.SIGKILL, private_mounts=True
            ).wait()
        elif how == "popen":
            run = lambda: subprocess.Popen([TRUE]).wait()  # noqa: E731
        elif how == "popen_session":
            run = lambda: subprocess.Popen(  # noqa: E731
                [TRUE], pass_fds=(r, w), start_new_session=True
            ).wait()
        elif how == "popen_preexec":
            run = lambda: subprocess.Popen([TRUE], preexec_fn=_set_pdeathsig).wait()  # noqa: E731
        elif how == "posix_spawn":
            run = lambda: os.waitpid(os.posix_spawn(TRUE, [TRUE], os.environ), 0)  # noqa: E731
        else:
            raise ValueError(f"unknown spawn variant {how!r}")
        return {"ns": _timed(p["n"], run)}
    finally:
        os.close(r)
        os.close(w)


def _options(p: Params, netns: str, **kwargs: Any) -> pyslirp.SetupOptions:
    return pyslirp.SetupOptions(
        config=pyslirp.Config(tmp_dir=p["tmp_dir"]),
        container_id=f"bench-{os.path.basename(netns)}",
        netns=netns,
        extra_options=V6 if p.get("ipv6") else V4,
        **kwargs,
    )


def setup_case(p: Params) -> Result:
    """``setup()`` to ready in each fresh netns (IPv6: until the address is usable).

    ``p["probe"]`` is ``"warm"`` (the feature cache as a long-lived process has it) or
    ``"cold"`` (emptied before each setup, with the plans setup() keeps, outside the timed
    region: as a process's first setup). With ``p["ports"]``
    one TCP port is published through rootlessport per setup. With ``p["plan"]`` each
    setup is ``plan.setup(netns)`` of one :class:`pyslirp.SetupPlan` made before the
    batch. ``cpu_ns`` is the process's CPU time (user + system, every thread) per setup.
    """
    times, cpu = [], []
    ports = p.get("ports") or [None] * len(p["netns"])
    plan = None
    if p.get("plan"):
        exit_r, exit_w = os.pipe()
        plan = pyslirp.SetupPlan(_options(p, p["netns"][0], slirp4netns_exit_pipe_r=exit_r))
        os.close(exit_r)
        os.close(exit_w)
    for netns, port in zip(p["netns"], ports, strict=True):
        with ExitStack() as stack:
            exit_r, exit_w = os.pipe()
            stack.callback(os.close, exit_w)
            stack.callback(os.close, exit_r)
            watch = nsutil.address_watch(netns) if p.get("ipv6") else None
            if watch is not None:
                stack.enter_context(watch)
            mappings = [pyslirp.PortMapping(host_port=port, container_port=80)] if port else []
            opts = _options(p, netns, ports=mappings, slirp4netns_exit_pipe_r=exit_r)
            if p.get("probe") == "cold":  # as the first setup of a process
                features.clear_cache()
                slirp4netns.forget_plans()
            c0 = time.process_time_ns()
            t0 = time.perf_counter_ns()
            if plan is not None:
                result = plan.setup(netns, slirp4netns_exit_pipe_r=exit_r)
            else:
                result = pyslirp.setup(opts)
            t1 = time.perf_counter_ns()
            cpu.append(time.process_time_ns() - c0)
            stack.callback(result.close)
            if watch is not None:
                nsutil.wait_global_v6(watch)
                t1 = time.perf_counter_ns()
            times.append(t1 - t0)
    return {"ns": times, "cpu_ns": cpu}


def pasta_case(p: Params) -> Result:
    """``pasta.setup()`` to ready (addresses read back) in each fresh netns."""
    times = []
    for netns in p["netns"]:
        opts = pasta.SetupOptions(config=pyslirp.Config(tmp_dir=p["tmp_dir"]), netns=netns)
        t0 = time.perf_counter_ns()
        result = pasta.setup(opts)
        times.append(time.perf_counter_ns() - t0)
        result.close()
    return {"ns": times}


def naive_case(p: Params) -> Result:
    """The hand-written way: ``--help`` every time, then Popen with a preexec_fn."""
    return {"ns": [_naive_once(p, netns) for netns in p["netns"]]}


def _naive_once(p: Params, netns: str) -> int:
    with ExitStack() as stack:
        exit_r, exit_w = os.pipe()
        stack.callback(os.close, exit_r)
        exit_w_open = [exit_w]

        def close_exit_w() -> None:
            if exit_w_open:
                os.close(exit_w_open.pop())

        stack.callback(close_exit_w)
        watch = nsutil.address_watch(netns) if p.get("ipv6") else None
        if watch is not None:
            stack.enter_context(watch)
        t0 = time.perf_counter_ns()
        help_text = subprocess.run([SLIRP4NETNS, "--help"], capture_output=True, check=True).stdout
        argv = [SLIRP4NETNS]
        for flag in (
            b"--disable-host-loopback",
            b"--mtu",
            b"--enable-sandbox",
            b"--enable-seccomp",
        ):
            if flag in help_text:
                argv.append(flag.decode() + ("=65520" if flag == b"--mtu" else ""))
        old_dad = None
        if p.get("ipv6"):
            argv.append("--enable-ipv6")
            old_dad = nsutil.swap_accept_dad(netns, "0")
        ready_r, ready_w = os.pipe()
        stack.callback(os.close, ready_r)
        argv += ["-c", "-r", str(ready_w), "-e", str(exit_r), "--netns-type=path", netns, "tap0"]
        log = stack.enter_context(tempfile.TemporaryFile(dir=p["tmp_dir"]))
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(ready_w, exit_r),
                preexec_fn=_naive_preexec,
            )
        finally:
            os.close(ready_w)
        stack.callback(proc.wait)
        stack.callback(close_exit_w)  # EOF on the exit pipe stops it, then wait
        if os.read(ready_r, 1) != b"1":
            raise RuntimeError(f"slirp4netns failed: {_tail(log)}")
        if old_dad is not None:
            nsutil.swap_accept_dad(netns, old_dad)
        if watch is not None:
            nsutil.wait_global_v6(watch)
        return time.perf_counter_ns() - t0


def _tail(log: Any) -> str:
    log.seek(0)
    return str(log.read()[-2000:], errors="replace")


def fail_case(p: Params) -> Result:
    """``setup()`` on a path that is not a netns: time until it raises StartError."""
    times = []
    for _ in range(p["n"]):
        opts = _options(p, p["not_netns"])  # made outside the timer, as the floor's argv
        t0 = time.perf_counter_ns()
        try:
            result = pyslirp.setup(opts)
        except pyslirp.StartError:
            times.append(time.perf_counter_ns() - t0)
        else:
            result.close()
            raise RuntimeError(f"setup on {p['not_netns']} succeeded")
    return {"ns": times}


def asetup_case(p: Params) -> Result:
    """``await asetup()`` to ready in each fresh netns, on a loop made outside the timer."""
    times = []
    loop = asyncio.new_event_loop()
    try:
        for netns in p["netns"]:
            opts = _options(p, netns)
            awaitable = pyslirp.asetup(opts)
            t0 = time.perf_counter_ns()
            result = loop.run_until_complete(awaitable)
            times.append(time.perf_counter_ns() - t0)
            loop.run_until_complete(result.aclose())
    finally:
        loop.close()
    return {"ns": times}


def scale_case(p: Params) -> Result:
    """``len(p["netns"])`` setups at once, from a thread pool of that size or, with
    ``p["how"] == "asyncio"``, with ``asyncio.gather`` on this one thread.

    Each latency runs from the common start to that setup's return, as the C floor's
    does; also returns the wall time until all were ready, and this process's RSS before
    and while all networks are live.
    """
    if p.get("how") == "asyncio":
        return _scale_asyncio(p)
    paths = p["netns"]
    live: list[pyslirp.SetupResult] = []
    made = {netns: _options(p, netns) for netns in paths}  # outside the timer
    t0 = 0

    def one(netns: str) -> int:
        live.append(pyslirp.setup(made[netns]))
        return time.perf_counter_ns() - t0

    try:
        with ThreadPoolExecutor(max_workers=len(paths)) as pool:
            # Start every pool thread before the clock does: thread creation is not setup.
            list(pool.map(time.sleep, [0.01] * len(paths)))
            rss_before = _rss_kib()
            t0 = time.perf_counter_ns()
            latencies = list(pool.map(one, paths))
            rss_live = _rss_kib()
    finally:
        for result in live:  # after the pool is shut down: no setup still in flight
            result.close()
    return {
        "ns": latencies,
        "wall_ns": max(latencies),
        "rss_before_kib": rss_before,
        "rss_live_kib": rss_live,
    }


def _scale_asyncio(p: Params) -> Result:
    """:func:`scale_case` on one event loop; also the process's threads during the burst."""
    paths = p["netns"]
    made = {netns: _options(p, netns) for netns in paths}  # outside the timer

    async def burst() -> Result:
        live: list[pyslirp.SetupResult] = []
        t0 = 0

        async def one(netns: str) -> int:
            live.append(await pyslirp.asetup(made[netns]))
            return time.perf_counter_ns() - t0

        try:
            rss_before = _rss_kib()
            threads_before = len(os.listdir("/proc/self/task"))
            t0 = time.perf_counter_ns()
            latencies = await asyncio.gather(*(one(netns) for netns in paths))
            threads_during = len(os.listdir("/proc/self/task"))
            rss_live = _rss_kib()
        finally:
            await asyncio.gather(*(result.aclose() for result in live))
        return {
            "ns": list(latencies),
            "wall_ns": max(latencies),
            "rss_before_kib": rss_before,
            "rss_live_kib": rss_live,
            "threads_added": threads_during - threads_before,
        }

    return asyncio.run(burst())


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


CASES: dict[str, Callable[[Params], Result]] = {
    "spawn": spawn_case,
    "setup": setup_case,
    "pasta": pasta_case,
    "naive": naive_case,
    "fail": fail_case,
    "scale": scale_case,
    "asetup": asetup_case,
}
