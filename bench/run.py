"""Benchmark pyslirp's spawn and setup against a C floor and the usual alternatives.

``python bench/run.py [--quick] [--json FILE]``, as root. Builds the C floor, starts a
Python worker and a C floor at ~30 MB and at ~2 GB, runs every case of ``cases.py`` in
rounds (shuffled each round, so machine noise hits all alike), drops the first round and
the first iteration of every batch as warm-up, and prints one table plus the goals of
issue 7. Namespaces are made before and deleted after each round, outside every timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import IO, Any

import nsutil
from cases import (
    CASES,
    IMPORT_FLOOR,
    PASTA_FLOOR,
    PORTS_FLOOR,
    RSS_MIB,
    RUN_TRUE,
    SCALE_FLOOR,
    Case,
)
from stats import Row, Summary, paired_ratio, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import pyslirp
from pyslirp.addresses import DEFAULT_SUBNET
from pyslirp.argv import build_argv
from pyslirp.features import probe_features, probe_pasta_features
from pyslirp.options import parse_options
from pyslirp.pastaargv import child_options, create_pasta_args
from pyslirp.rootlessport import BINARY_NAME as ROOTLESSPORT
from pyslirp.rootlessport import rootlessport_config

from support.ports import free_ports

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"


class Plan:
    """Iterations per batch and rounds: ``--quick`` under 2 minutes, full under 10."""

    def __init__(self, quick: bool) -> None:
        self.rounds = 4 if quick else 21  # round 0 is warm-up and dropped
        self.spawn = 10 if quick else 30
        self.setup = 3 if quick else 6
        self.fail = 5 if quick else 12
        self.startup = 3 if quick else 5


class Floor:
    """The C floor in serve mode: one command a line, nanoseconds back."""

    def __init__(self, binary: Path, mib: int) -> None:
        self.binary = binary
        self.proc = subprocess.Popen(
            [str(binary), "-m", str(mib), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def command(self, line: str) -> dict[str, Any]:
        """Run one command; its timings as ``{"ns": [...]}``, plus ``wall_ns`` if given."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply: dict[str, Any] = {"ns": []}
        for out in self.proc.stdout:
            if out.startswith("end "):
                if out.split()[1] != "0":
                    raise RuntimeError(f"floor failed: {line}")
                return reply
            if out.startswith("wall "):
                reply["wall_ns"] = int(out.split()[1])
            elif out.startswith("cpu "):
                reply.setdefault("cpu_ns", []).append(int(out.split()[1]))
            else:
                reply["ns"].append(int(out))
        raise RuntimeError(f"floor died running: {line}")


class Worker:
    """A Python worker process (``worker.py``) at a given size."""

    def __init__(self, mib: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "worker.py"), str(mib)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.rss_kib = 0

    def started(self) -> None:
        self.rss_kib = self._reply()["rss_kib"]

    def request(self, **params: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(params) + "\n")
        self.proc.stdin.flush()
        reply = self._reply()
        if "error" in reply:
            raise RuntimeError(f"worker: {params['case']}: {reply['error']}")
        return reply

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("worker died")
        reply: dict[str, Any] = json.loads(line)
        return reply


def stop(proc: subprocess.Popen[str]) -> None:
    """EOF on stdin ends a worker or floor; kill it if it does not end in 10 s."""
    stdin: IO[str] | None = proc.stdin
    try:
        if stdin is not None:
            stdin.close()
    except BrokenPipeError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def build_floor() -> Path:
    OUT.mkdir(exist_ok=True)
    binary = OUT / "floor"
    subprocess.run(
        ["cc", "-O2", "-Wall", "-Wextra", "-o", str(binary), str(BENCH / "floor.c")], check=True
    )
    return binary


class Bench:
    """Runs the rounds and keeps every sample."""

    def __init__(self, plan: Plan, tmp_dir: str, prefix: str, cases: list[Case]) -> None:
        self.cases = cases
        self.plan = plan
        self.tmp_dir = tmp_dir
        self.prefix = prefix
        self.not_netns = os.path.join(tmp_dir, "not-a-netns")
        Path(self.not_netns).touch()
        config = pyslirp.Config(tmp_dir=tmp_dir)
        binary = config.find_network_cmd()
        self.rootlessport = config.find_helper_binary(ROOTLESSPORT)

        def argv(ipv6: bool) -> str:
            options = parse_options([], [f"enable_ipv6={str(ipv6).lower()}"])
            features = probe_features(binary)
            return " ".join(build_argv(binary, options, features, netns="@NETNS@", exit_fd=True))

        self.argv = {False: argv(False), True: argv(True)}
        # setup()'s argv, but the pid file is the floor's ready pipe: the cheapest signal.
        pasta = config.find_pasta()
        guest_addr = probe_pasta_features(pasta).map_guest_addr
        pasta_args = create_pasta_args([], [], [], "@NETNS@", map_guest_addr=guest_addr).args
        own = child_options(pasta_args, root=True, userns=None)
        self.pasta_argv = " ".join([pasta, "--pid", "/dev/fd/3", *own, *pasta_args])
        rlk = rootlessport_config(
            ports=[pyslirp.PortMapping(host_port=1, container_port=80)],
            netns="@NETNS@",
            tmp_dir=tmp_dir,
            container_id="bench",
            slirp_subnet=DEFAULT_SUBNET,
            net_status=None,
        )
        rlk["Mappings"][0]["host_port"] = "@PORT@"
        self.rlk_json = json.dumps(rlk, separators=(",", ":")).replace('"@PORT@"', "@PORT@")
        self.procs: dict[str, Worker | Floor] = {}
        self.samples: dict[str, list[int]] = defaultdict(list)
        self.batches: dict[str, list[list[int]]] = defaultdict(list)  # the samples by round
        self.scale: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.cpu: dict[str, list[int]] = defaultdict(list)  # CPU ns per setup, by case
        self._counter = 0

    def start(self, floor_bin: Path) -> None:
        for size, mib in RSS_MIB.items():
            self.procs[f"py{size}"] = Worker(mib)
            self.procs[f"c{size}"] = Floor(floor_bin, mib)
        for proc in self.procs.values():
            if isinstance(proc, Worker):
                proc.started()
            else:
                proc.command("spawn 1")  # answers once its memory is touched

    def stop(self) -> None:
        for proc in self.procs.values():
            stop(proc.proc)

    def _names(self, n: int) -> list[str]:
        self._counter += n
        return [f"{self.prefix}{i}" for i in range(self._counter - n, self._counter)]

    def _batch(self, case: Case) -> tuple[dict[str, Any], list[str]]:
        """What one batch of ``case`` needs: its request and the netns names to create."""
        plan = self.plan
        if case.kind == "scale":
            names = self._names(case.concurrency)
            return {"names": names}, names
        if case.kind in ("setup", "asetup", "naive", "ports", "pasta"):
            names = self._names(plan.setup + 1)
            request: dict[str, Any] = {"names": names}
            if case.kind == "ports":
                request["ports"] = free_ports(len(names))
            return request, names
        n = {"fail": plan.fail, "startup": plan.startup}.get(case.kind, plan.spawn) + 1
        return {"n": n}, []

    def run_batch(self, case: Case, batch: dict[str, Any]) -> None:
        paths = [os.path.join(nsutil.NETNS_DIR, name) for name in batch.get("names", [])]
        proc = self.procs.get(case.runner)
        if isinstance(proc, Floor):
            reply = proc.command(self._floor_command(case, batch, paths))
        elif isinstance(proc, Worker):
            reply = proc.request(
                **case.params,
                case="setup" if case.kind == "ports" else case.kind,
                n=batch.get("n", 0),
                netns=paths,
                ports=batch.get("ports"),
                tmp_dir=self.tmp_dir,
                not_netns=self.not_netns,
            )
        else:
            reply = {"ns": [self._start(case.params["argv"]) for _ in range(batch["n"])]}
        if case.kind == "scale":
            self.scale[case.name].append(reply)
            self.samples[case.name].extend(reply["ns"])  # no warm-up inside: round 0 is
            return
        self.samples[case.name].extend(reply["ns"][1:])  # the first of a batch is warm-up
        self.batches[case.name].append(reply["ns"][1:])
        self.cpu[case.name].extend(reply.get("cpu_ns", [])[1:])

    def _floor_command(self, case: Case, batch: dict[str, Any], paths: list[str]) -> str:
        return ("-F " if case.params.get("flush") else "") + self._floor_words(case, batch, paths)

    def _floor_words(self, case: Case, batch: dict[str, Any], paths: list[str]) -> str:
        ipv6 = bool(case.params.get("ipv6"))
        if case.kind == "spawn":
            return f"spawn {batch['n']}" + (" full" if case.params.get("full") else "")
        if case.kind == "scale":
            return f"-a ready {','.join(paths)} -- {self.argv[False]}"
        if case.kind == "fail":
            return f"-x ready {','.join([self.not_netns] * batch['n'])} -- {self.argv[False]}"
        if case.kind == "pasta":
            return f"-k ready {','.join(paths)} -- {self.pasta_argv}"
        flags = "-6 " if ipv6 else ""
        if case.kind == "ports":
            ports = ",".join(map(str, batch["ports"]))
            flags = f"-R {self.rootlessport} -J {self.rlk_json} -P {ports} "
        return f"{flags}ready {','.join(paths)} -- {self.argv[ipv6]}"

    @staticmethod
    def _start(argv: list[str]) -> int:
        argv = [sys.executable if arg == "python" else arg for arg in argv]
        t0 = time.perf_counter_ns()
        subprocess.run(argv, check=True)
        return time.perf_counter_ns() - t0

    def round(self, number: int) -> None:
        order = list(self.cases)
        random.Random(number).shuffle(order)
        for case in order:
            for attempt in (1, 2):
                try:
                    self._run_once(case)
                    break
                except RuntimeError as exc:
                    # A shared machine can take a port or a pid from under us: retry once.
                    print(f"{case.name}: {exc}", file=sys.stderr)
                    if attempt == 2:
                        raise
                    self._restart(case.runner)

    def _run_once(self, case: Case) -> None:
        # Namespaces per batch, not per round: each is a mount in /run/netns, and every
        # unshare(CLONE_NEWNS) copies the mount table, so keep it realistic.
        batch, names = self._batch(case)
        nsutil.create(names)
        try:
            self.run_batch(case, batch)
        finally:
            nsutil.delete(names)

    def _restart(self, runner: str) -> None:
        """Start a died worker or floor again (a live one keeps its state)."""
        proc = self.procs.get(runner)
        if proc is None or proc.proc.poll() is None:
            return
        mib = RSS_MIB[runner[-2:]]
        if isinstance(proc, Worker):
            self.procs[runner] = worker = Worker(mib)
            worker.started()
        else:
            self.procs[runner] = floor = Floor(proc.binary, mib)
            floor.command("spawn 1")

    def drop(self) -> None:
        """Forget everything measured so far (the warm-up round)."""
        self.samples.clear()
        self.batches.clear()
        self.scale.clear()
        self.cpu.clear()


def importtime_ms(runs: int) -> float:
    """Median of ``-X importtime``'s cumulative time for the ``pyslirp`` package."""
    values = []
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import pyslirp"],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        for line in err.splitlines():
            fields = [f.strip() for f in line.split("|")]
            if len(fields) == 3 and fields[2] == "pyslirp":
                values.append(int(fields[1]) / 1000)
    values.sort()
    return values[len(values) // 2]


def machine(bench: Bench) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), "?")
    slirp = subprocess.run(["slirp4netns", "--version"], capture_output=True, text=True).stdout
    rss = {name: p.rss_kib for name, p in bench.procs.items() if isinstance(p, Worker)}
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pyslirp": pyslirp.__name__ + " " + _git_head(),
        "slirp4netns": " ".join(slirp.split("\n")[0:3:2]),
        "loadavg": _loadavg(),
        "worker_rss_kib": rss,
        "floor_touched_mib": RSS_MIB,
    }


def _loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def _git_head() -> str:
    result = subprocess.run(
        ["git", "-C", str(BENCH), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return result.stdout.strip()


def report(bench: Bench, info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The table, the goals, and everything as JSON."""
    summaries = {case.name: Summary.of(bench.samples[case.name]) for case in bench.cases}
    cpus = os.cpu_count() or 1
    floor_rate = 1e3 / summaries[SCALE_FLOOR].median if SCALE_FLOOR in summaries else 0.0
    rows = []
    scale_info = {}
    for case in bench.cases:
        s = summaries[case.name]
        ratio = s.median / summaries[case.floor].median if case.floor else None
        note = ""
        if case.kind == "scale":
            runs = bench.scale[case.name]
            rate = statistics.median(case.concurrency / (r["wall_ns"] / 1e9) for r in runs)
            scale_info[case.name] = {"setups_per_s": rate, "runs": runs}
            note = f"{rate:.0f} setups/s = {rate / (floor_rate * cpus):.2f}x 1-at-a-time floor"
            note += f" rate x {cpus} CPUs"
            if case.floor:
                growth = statistics.median(
                    (r["rss_live_kib"] - r["rss_before_kib"]) / case.concurrency for r in runs
                )
                scale_info[case.name]["rss_kib_per_net"] = growth
                floor_rate_n = scale_info[case.floor]["setups_per_s"]
                note += f", {rate / floor_rate_n:.2f}x floor's; RSS {growth:+.0f} KiB/net"
        if bench.cpu[case.name]:
            cpu_us = statistics.median(bench.cpu[case.name]) / 1e3
            info.setdefault("cpu_us_per_setup", {})[case.name] = cpu_us
            note = f"CPU {cpu_us:.0f} us/setup (process, every thread)"
        if case.name == "python -c 'import pyslirp'":
            info["importtime_ms"] = importtime_ms(bench.plan.startup * 4)
            note = f"-X importtime: pyslirp {info['importtime_ms']:.1f} ms cumulative"
        rows.append(Row(case.name, s, ratio, case.floor, note))
    goals = []
    if bench.cases == CASES:
        goals = _goals(summaries, scale_info, floor_rate * cpus)
        cpu_us = info["cpu_us_per_setup"]
        goals += ["", "Issue 14:", *_goals_14(summaries, bench.batches, scale_info, cpu_us)]
    text = table(rows) + "\n\nGoals (issues 7 and 12, ratios from this run):\n" + "\n".join(goals)
    data = {
        "machine": info,
        "cases": {
            case.name: {
                "samples_ns": bench.samples[case.name],
                "summary_ms": vars(summaries[case.name]),
                "floor": case.floor,
            }
            for case in bench.cases
        },
        "scale": scale_info,
        "goals": goals,
    }
    return text, data


def _goals(s: dict[str, Summary], scale: dict[str, Any], goal_rate: float) -> list[str]:
    def ratio(name: str, floor: str, limit: float) -> str:
        return _check(f"{name} / {floor}", s[name].median / s[floor].median, limit)

    lines = []
    for at in (" @30MB", " @2GB"):
        lines.append(ratio(f"pyslirp.spawn{at}", f"spawn floor{at}", 1.10))
        lines.append(ratio(f"pyslirp.spawn full{at}", f"spawn floor full{at}", 1.10))
        lines.append(ratio(f"setup() v4{at}", f"setup v4 floor{at}", 1.10))
        lines.append(ratio(f"setup() failure noticed{at}", f"failure noticed floor{at}", 1.2))
        v4, v6 = s[f"setup v4 floor{at}"].median, s[f"setup v6 usable floor{at}"].median
        lines.append(
            _check(
                f"setup() v6 usable{at}, ms (1.2 x v4 floor + the floor's v6 delta)",
                s[f"setup() v6 usable{at}"].median,
                1.2 * v4 + (v6 - v4),
            )
        )
    for kind in ("spawn floor", "setup v4 floor"):
        old, new = s[f"{kind}, flushed each sample @30MB"].median, s[f"{kind} @30MB"].median
        lines.append(f"  ({kind} @30MB, buffered / flushed each sample: {new / old:.2f}, issue 14)")
    lines.append(ratio("pasta.setup() @30MB", PASTA_FLOOR, 1.10))
    lines.append(
        _check(
            f"64 at once, setups/s (0.8 x floor rate x CPUs = {goal_rate * 0.8:.0f})",
            scale["scale 64 at once @30MB"]["setups_per_s"],
            goal_rate * 0.8,
            at_most=False,
        )
    )
    floor_64 = scale["scale 64 at once floor @30MB"]["setups_per_s"]
    lines.append(f"  (the C floor itself, 64 at once: {floor_64:.0f} setups/s)")
    lines.append(ratio("asetup() v4 @30MB", "setup v4 floor @30MB", 1.10) + " (issue 13)")
    aio_64 = scale["scale 64 at once asyncio @30MB"]["setups_per_s"]
    threaded_64 = scale["scale 64 at once @30MB"]["setups_per_s"]
    lines.append(
        _check("64 at once, asyncio / 64 threads (issue 13)", aio_64 / threaded_64, 1.0, False)
    )
    lines.append(_check("64 at once, asyncio / C floor (issue 13)", aio_64 / floor_64, 0.9, False))
    added = max(r["threads_added"] for r in scale["scale 64 at once asyncio @30MB"]["runs"])
    lines.append(_check("threads added during an asyncio burst (issue 13)", added, 0))
    import_ms = s["python -c 'import pyslirp'"].median - s[IMPORT_FLOOR].median
    lines.append(_check(f"import pyslirp, ms over {IMPORT_FLOOR} (issue 12)", import_ms, 10.0))
    lines.append(ratio(RUN_TRUE, IMPORT_FLOOR, 1.6) + " (issue 12)")
    return lines


def _goals_14(
    s: dict[str, Summary],
    batches: dict[str, list[list[int]]],
    scale: dict[str, Any],
    cpu: dict[str, float],
) -> list[str]:
    """Issue 14's goals: ratios to the buffered floors, and CPU per setup. Beside each
    ratio, the same paired by round (see :func:`stats.paired_ratio`): how much of a miss
    is the machine's drift between a case's batches and its floor's."""
    lines = []
    for at in (" @30MB", " @2GB"):
        for name, floor, limit in (
            (f"pyslirp.spawn{at}", f"spawn floor{at}", 1.05),
            (f"setup() v4{at}", f"setup v4 floor{at}", 1.05),
            (f"plan.setup() v4{at}", f"setup v4 floor{at}", 1.03),
            (f"setup() failure noticed{at}", f"failure noticed floor{at}", 1.10),
            (f"setup() v6 usable{at}", f"setup v6 usable floor{at}", 1.08),
        ):
            value = s[name].median / s[floor].median
            paired = paired_ratio(batches[name], batches[floor])
            lines.append(_check(f"{name} / {floor}", value, limit) + f" (paired: {paired:.2f})")
    rate = scale["scale 64 at once @30MB"]["setups_per_s"]
    floor_rate = scale["scale 64 at once floor @30MB"]["setups_per_s"]
    lines.append(_check("64 at once, setups/s / the floor's", rate / floor_rate, 0.95, False))
    floor_cpu = cpu["setup v4 floor @30MB"]
    lines.append(_check("CPU per setup() v4 @30MB, us", cpu["setup() v4 @30MB"], 100))
    lines.append(_check("CPU per plan.setup() v4 @30MB, us", cpu["plan.setup() v4 @30MB"], 100))
    lines.append(f"  (the C floor's CPU per setup, measured alike: {floor_cpu:.0f} us)")
    ports = s["setup() v4+rootlessport @30MB"].median / s[PORTS_FLOOR].median
    paired = paired_ratio(batches["setup() v4+rootlessport @30MB"], batches[PORTS_FLOOR])
    lines.append(
        _check("setup() v4+rootlessport / its floor", ports, 1.05) + f" (paired: {paired:.2f})"
    )
    return lines


def _check(label: str, value: float, limit: float, at_most: bool = True) -> str:
    met = value <= limit if at_most else value >= limit
    sign = "<=" if at_most else ">="
    return f"  [{'met' if met else 'MISSED'}] {label}: {value:.2f} (goal {sign} {limit:.2f})"


def select(pattern: str | None) -> list[Case]:
    """The cases whose name matches ``pattern`` (all without one), with their floors."""
    if pattern is None:
        return CASES
    chosen = {case.name for case in CASES if re.search(pattern, case.name)}
    chosen |= {case.floor for case in CASES if case.name in chosen and case.floor}
    return [case for case in CASES if case.name in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds: under 2 minutes")
    parser.add_argument("--json", metavar="FILE", help="write every sample and the summary")
    parser.add_argument(
        "--only", metavar="REGEX", help="run the cases whose name matches (and their floors)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run.py needs root: it makes network namespaces and mount namespaces")
    started = time.monotonic()
    plan = Plan(args.quick)
    floor_bin = build_floor()
    prefix = f"pyslirp-bench-{os.getpid()}-"
    tmp_dir = tempfile.mkdtemp(prefix="pyslirp-bench-tmp-")
    bench = Bench(plan, tmp_dir, prefix, select(args.only))
    try:
        bench.start(floor_bin)
        info = machine(bench)
        for number in range(plan.rounds):
            bench.round(number)
            if number == 0:
                bench.drop()
            print(
                f"round {number + 1}/{plan.rounds} done, {time.monotonic() - started:.0f} s",
                file=sys.stderr,
            )
        info["loadavg_end"] = _loadavg()
        info["seconds"] = round(time.monotonic() - started)
        text, data = report(bench, info)
    finally:
        bench.stop()
        nsutil.kill_prefixed(prefix)
        nsutil.delete_prefixed(prefix)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    print("\n".join(f"{k}: {v}" for k, v in info.items()))
    print()
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
