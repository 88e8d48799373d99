"""Scale: setup latency with many live networks, teardown of many, memory per network.

``python bench/scale.py [--quick] [--json FILE]``, as root (issue 16). One process holds
N = 1, 100, 500, 1000 live networks (made outside every timer); at each N, shuffled
rounds time ``setup()`` here and the C floor's (podman's way: unshare + private remount
per spawn) on fresh namespaces, side by side, the first round and the first setup of
every batch dropped as warm-up. At N = 1000 it reads the caller's RSS and fds and the
helpers' PSS. Then it times the teardown of 100 and 1000 networks: ``close()`` in a loop,
``close_all``, ``asyncio.gather(*(r.aclose() ...))`` and the floor (SIGTERM to all, then
reap all). The full run takes about 2 minutes, ``--quick`` about 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from run import Floor, _check, _git_head, _loadavg, build_floor, stop

import pyslirp
from pyslirp.argv import build_argv
from pyslirp.features import probe_features
from pyslirp.options import parse_options

import nsutil
from stats import Row, Summary, table

LEVELS = (1, 100, 500, 1000)
TEARDOWNS = (100, 1000)
CHUNK = 50  # setups at once while the live networks are made (untimed)
FLOOR_MIB = 30
GOAL_SETUP = 1.2  # setup at N = 1000 / at N = 1
GOAL_CLOSE_ALL = 1.3  # close_all of 100 / the floor's


class Plan:
    def __init__(self, quick: bool) -> None:
        self.rounds = 4 if quick else 7  # round 0 is warm-up and dropped
        self.setups = 4 if quick else 6  # per batch; the first is warm-up
        self.teardown_rounds = 2 if quick else 4  # of 100 networks; the first is warm-up


class Scale:
    def __init__(self, plan: Plan, floor: Floor, tmp_dir: str, prefix: str) -> None:
        self.plan = plan
        self.floor = floor
        self.tmp_dir = tmp_dir
        self.prefix = prefix
        self.config = pyslirp.Config(tmp_dir=tmp_dir)
        binary = self.config.find_network_cmd()
        options = parse_options([], ["enable_ipv6=false"])
        argv = build_argv(binary, options, probe_features(binary), netns="@NETNS@", exit_fd=True)
        self.floor_argv = " ".join(argv)
        self.samples: dict[str, list[int]] = defaultdict(list)
        self.live: list[pyslirp.SetupResult] = []
        self.live_names: list[str] = []
        self._counter = 0

    def names(self, n: int) -> list[str]:
        self._counter += n
        return [f"{self.prefix}{i}" for i in range(self._counter - n, self._counter)]

    def options(self, netns: str) -> pyslirp.SetupOptions:
        return pyslirp.SetupOptions(
            config=self.config,
            container_id=os.path.basename(netns),
            netns=netns,
            extra_options=["enable_ipv6=false"],
        )

    def make(self, n: int) -> tuple[list[str], list[pyslirp.SetupResult]]:
        """``n`` new namespaces, each with a live network (untimed, CHUNK at once)."""
        names = self.names(n)
        paths = nsutil.create(names)
        made = [self.options(path) for path in paths]

        async def chunks() -> list[pyslirp.SetupResult]:
            results: list[pyslirp.SetupResult] = []
            for at in range(0, len(made), CHUNK):
                results += await asyncio.gather(*map(pyslirp.asetup, made[at : at + CHUNK]))
            return results

        return names, asyncio.run(chunks())

    def grow_to(self, n: int) -> None:
        names, results = self.make(n - len(self.live))
        self.live_names += names
        self.live += results

    # --- setup latency at N live networks -----------------------------------------------

    def setup_round(self, level: int, number: int) -> None:
        cases: list[tuple[str, Callable[[list[str]], list[int]]]] = [
            (f"setup() v4, {level} live", self._pyslirp_setups),
            (f"setup v4 floor, {level} live", self._floor_setups),
        ]
        random.Random(number * 7919 + level).shuffle(cases)
        for name, run in cases:
            names = self.names(self.plan.setups)
            paths = nsutil.create(names)
            try:
                self.samples[name] += run(paths)[1:]  # the first of a batch is warm-up
            finally:
                nsutil.delete(names)

    def _pyslirp_setups(self, paths: list[str]) -> list[int]:
        times = []
        for path in paths:
            opts = self.options(path)  # outside the timer
            t0 = time.perf_counter_ns()
            result = pyslirp.setup(opts)
            times.append(time.perf_counter_ns() - t0)
            result.close()
        return times

    def _floor_setups(self, paths: list[str]) -> list[int]:
        ns: list[int] = self.floor.command(f"ready {','.join(paths)} -- {self.floor_argv}")["ns"]
        return ns

    # --- teardown -------------------------------------------------------------------------

    def teardown(self, n: int, how: str, results: list[pyslirp.SetupResult] | None) -> int:
        """Time the teardown of ``n`` networks ``how`` says (made first, untimed, unless
        ``results`` are given: they are torn down, and their namespaces deleted)."""
        names: list[str] = []
        if how == "floor":
            names = self.names(n)
            paths = nsutil.create(names)
            try:
                reply = self.floor.command(f"-a -T ready {','.join(paths)} -- {self.floor_argv}")
                (elapsed,) = reply["ns"]
                return int(elapsed)
            finally:
                nsutil.delete(names)
        if results is None:
            names, results = self.make(n)
        try:
            t0 = time.perf_counter_ns()
            if how == "close() loop":
                for result in results:
                    result.close()
            elif how == "close_all":
                pyslirp.close_all(results)
            else:
                asyncio.run(_gather_aclose(results))
            return time.perf_counter_ns() - t0
        finally:
            pyslirp.close_all(results)  # (a no-op once closed)
            nsutil.delete(names)


async def _gather_aclose(results: list[pyslirp.SetupResult]) -> None:
    await asyncio.gather(*(result.aclose() for result in results))


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss for {pid}")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle(limit: float = 30.0) -> float:
    """Wait (at most ``limit`` s) until the CPUs are less than 15% busy over half a second:
    the kernel tears deleted namespaces down in the background, for seconds after a
    thousand, and that would land in whichever case runs next. Returns the wait."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = _cpu_ticks()
        time.sleep(0.5)
        busy, total = (after - was for after, was in zip(_cpu_ticks(), before, strict=True))
        if busy < 0.15 * total:
            break
    return time.monotonic() - started


def _cpu_ticks() -> tuple[int, int]:
    """(busy, all) jiffies of all CPUs, from /proc/stat."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


TEARDOWN_METHODS = ("close() loop", "close_all", "asyncio gather aclose", "floor")


def run(plan: Plan, scale: Scale, started: float) -> dict[str, Any]:
    info: dict[str, Any] = {}
    names = scale.names(1)  # warm-up: the template mount namespace, the reaper, ...
    try:
        scale._pyslirp_setups(nsutil.create(names))
    finally:
        nsutil.delete(names)
    base = {"rss_kib": _rss_kib(), "fds": _fds()}
    for level in LEVELS:
        scale.grow_to(level)
        info.setdefault("settled_s", {})[f"N={level}"] = round(settle(), 1)
        for number in range(plan.rounds):
            if number == 0:
                before = dict(scale.samples)
            scale.setup_round(level, number)
            if number == 0:  # warm-up: forget this level's first round
                scale.samples = defaultdict(list, before)
        print(f"N={level} done, {time.monotonic() - started:.0f} s", file=sys.stderr)
    live = scale.live
    n = len(live)
    info["at_1000"] = {
        "caller_rss_kib_per_net": (_rss_kib() - base["rss_kib"]) / n,
        "caller_fds_per_net": (_fds() - base["fds"]) / n,
        "helper_pss_kib_mean": sum(_pss_kib(r.pid) for r in live) / n,
        "live": n,
    }
    teardown: dict[str, list[int]] = defaultdict(list)
    # 1000: once each, the live networks themselves first (with close_all).
    settle()
    teardown["close_all of 1000"].append(scale.teardown(n, "close_all", live))
    scale.live = []
    nsutil.delete(scale.live_names)
    for how in ("close() loop", "asyncio gather aclose", "floor"):
        settle()
        teardown[f"{how} of 1000"].append(scale.teardown(1000, how, None))
        print(f"teardown 1000 {how} done, {time.monotonic() - started:.0f} s", file=sys.stderr)
    for number in range(plan.teardown_rounds):
        order = list(TEARDOWN_METHODS)
        random.Random(number).shuffle(order)
        for how in order:
            settle()
            elapsed = scale.teardown(100, how, None)
            if number > 0:
                teardown[f"{how} of 100"].append(elapsed)
    info["teardown"] = teardown
    return info


def report(scale: Scale, info: dict[str, Any]) -> tuple[str, list[str], dict[str, Any]]:
    rows = []
    summaries = {name: Summary.of(ns) for name, ns in scale.samples.items()}
    for level in LEVELS:
        floor = f"setup v4 floor, {level} live"
        ours = f"setup() v4, {level} live"
        rows.append(Row(floor, summaries[floor], None, ""))
        ratio = summaries[ours].median / summaries[floor].median
        first = summaries["setup() v4, 1 live"].median
        note = f"{summaries[ours].median / first:.2f}x N=1's" if level > 1 else ""
        rows.append(Row(ours, summaries[ours], ratio, floor, note))
    teardown = info["teardown"]
    for count in TEARDOWNS:
        floor = f"floor of {count}"
        floor_summary = Summary.of(teardown[floor])
        rows.append(Row(f"teardown {floor}", floor_summary, None, "", "SIGTERM all, reap all"))
        for how in TEARDOWN_METHODS[:-1]:
            name = f"{how} of {count}"
            summary = Summary.of(teardown[name])
            per = f"{summary.median / count:.2f} ms/net"
            rows.append(
                Row(
                    f"teardown {name}",
                    summary,
                    summary.median / floor_summary.median,
                    f"teardown {floor}",
                    per,
                )
            )
    at = info["at_1000"]
    setup_ratio = summaries["setup() v4, 1000 live"].median / summaries["setup() v4, 1 live"].median
    close_ratio = (
        Summary.of(teardown["close_all of 100"]).median
        / Summary.of(teardown["floor of 100"]).median
    )
    goals = [
        _check("setup() at N=1000 / at N=1", setup_ratio, GOAL_SETUP),
        _check("close_all of 100 / floor of 100", close_ratio, GOAL_CLOSE_ALL),
        f"  at N={at['live']}: caller RSS {at['caller_rss_kib_per_net']:.1f} KiB/net, "
        f"caller fds {at['caller_fds_per_net']:.2f}/net, "
        f"slirp4netns PSS {at['helper_pss_kib_mean'] / 1024:.2f} MiB each",
    ]
    data = {
        "summaries": {k: vars(v) for k, v in summaries.items()},
        "teardown_ns": teardown,
        "at_1000": at,
        "goals": {"setup_ratio": setup_ratio, "close_all_ratio": close_ratio},
    }
    return table(rows), goals, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", help="also write the samples here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/scale.py needs root: it makes network namespaces")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    started = time.monotonic()
    plan = Plan(args.quick)
    prefix = f"pyslirp-scale-{os.getpid()}-"
    tmp_dir = tempfile.mkdtemp(prefix="pyslirp-scale-tmp-")
    floor = Floor(build_floor(), FLOOR_MIB)
    floor.command("spawn 1")  # answers once its memory is touched
    scale = Scale(plan, floor, tmp_dir, prefix)
    try:
        info = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "pyslirp": _git_head(),
            "loadavg": _loadavg(),
        }
        info.update(run(plan, scale, started))
        info["seconds"] = round(time.monotonic() - started)
        text, goals, data = report(scale, info)
    finally:
        pyslirp.close_all(scale.live)
        stop(floor.proc)
        nsutil.kill_prefixed(prefix)
        nsutil.delete_prefixed(prefix)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    info["loadavg_end"] = _loadavg()
    for key in ("date", "kernel", "cpus", "pyslirp", "loadavg", "loadavg_end", "seconds"):
        print(f"{key}: {info.get(key)}")
    print()
    print(text)
    print()
    print("Goals (issue 16):")
    print("\n".join(goals))
    if args.json:
        data["machine"] = {k: v for k, v in info.items() if k not in ("teardown", "at_1000")}
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
