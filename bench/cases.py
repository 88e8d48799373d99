"""Which cases run, where, and against which floor (issue 7's list, in table order).

A case's ``runner`` names the process that runs it: ``py30``/``py2g`` (a Python worker
at ~30 MB / ~2 GB of touched memory), ``c30``/``c2g`` (the C floor at that size) or
``driver`` (run.py itself, for start-up cases: a fresh process each time, ``python`` in
their argv being this interpreter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RSS_MIB = {"30": 30, "2g": 2048}
SIZES = ("30", "2g")
SCALES = (1, 8, 32, 64)


@dataclass(frozen=True)
class Case:
    """One row of the table; its median is divided by the ``floor`` row's median."""

    name: str
    runner: str
    kind: str  # spawn, setup, asetup, naive, fail, ports, pasta, scale, startup
    params: dict[str, Any] = field(default_factory=dict)
    floor: str = ""
    concurrency: int = 0  # scale cases: setups at once


def _at(size: str) -> str:
    return " @30MB" if size == "30" else " @2GB"


def _spawn_cases(size: str) -> list[Case]:
    py, c, at = f"py{size}", f"c{size}", _at(size)
    floor, full = f"spawn floor{at}", f"spawn floor full{at}"
    rows = [
        Case(floor, c, "spawn"),
        Case(full, c, "spawn", {"full": True}),
        Case(f"pyslirp.spawn{at}", py, "spawn", {"how": "pyslirp"}, floor),
        Case(f"pyslirp.spawn full{at}", py, "spawn", {"how": "pyslirp_full"}, full),
        Case(f"Popen{at}", py, "spawn", {"how": "popen"}, floor),
        Case(f"Popen pass_fds+new_session{at}", py, "spawn", {"how": "popen_session"}, floor),
        Case(f"Popen preexec_fn pdeathsig{at}", py, "spawn", {"how": "popen_preexec"}, floor),
        Case(f"os.posix_spawn{at}", py, "spawn", {"how": "posix_spawn"}, floor),
    ]
    if size == "30":  # issue 14: the floor as it was, each sample flushed, beside the new
        rows.append(Case(f"spawn floor, flushed each sample{at}", c, "spawn", {"flush": True}))
        rows.append(
            Case(
                f"pyslirp.spawn vs flushed floor{at}",
                py,
                "spawn",
                {"how": "pyslirp"},
                f"spawn floor, flushed each sample{at}",
            )
        )
    return rows


def _setup_cases(size: str, ipv6: bool) -> list[Case]:
    py, c, at = f"py{size}", f"c{size}", _at(size)
    v = "v6 usable" if ipv6 else "v4"
    floor = f"setup {v} floor{at}"
    rows = [
        Case(floor, c, "setup", {"ipv6": ipv6}),
        Case(f"setup() {v}{at}", py, "setup", {"ipv6": ipv6, "probe": "warm"}, floor),
    ]
    if not ipv6:  # issue 14: one SetupPlan for the batch
        rows.append(Case(f"plan.setup() {v}{at}", py, "setup", {"plan": True}, floor))
    if size == "30" and not ipv6:
        flushed = f"setup {v} floor, flushed each sample{at}"
        rows.append(Case(flushed, c, "setup", {"flush": True}))
    if size == "30" and not ipv6:
        rows.append(Case(f"setup() {v} cold probe{at}", py, "setup", {"probe": "cold"}, floor))
    rows.append(Case(f"naive Popen {v}{at}", py, "naive", {"ipv6": ipv6}, floor))
    return rows


def _fail_cases(size: str) -> list[Case]:
    py, c, at = f"py{size}", f"c{size}", _at(size)
    floor = f"failure noticed floor{at}"
    return [Case(floor, c, "fail"), Case(f"setup() failure noticed{at}", py, "fail", {}, floor)]


PORTS_FLOOR = "setup v4+rootlessport floor @30MB"
PASTA_FLOOR = "pasta floor @30MB"
SCALE_FLOOR = "setup v4 floor @30MB"
IMPORT_FLOOR = "python -c pass"
RUN_TRUE = "pyslirp run -- true"
STARTUP = {  # issue 12: import and `run` start-up against a bare interpreter and unshare
    IMPORT_FLOOR: ["python", "-c", "pass"],
    "python -c 'import pyslirp'": ["python", "-c", "import pyslirp"],
    "unshare -n true": ["unshare", "-n", "true"],
    RUN_TRUE: ["python", "-m", "pyslirp", "run", "--", "true"],
}


def _startup_case(name: str, argv: list[str]) -> Case:
    floor = "" if name == IMPORT_FLOOR else IMPORT_FLOOR
    return Case(name, "driver", "startup", {"argv": argv}, floor)


CASES: list[Case] = [
    *(case for size in SIZES for case in _spawn_cases(size)),
    *(case for ipv6 in (False, True) for size in SIZES for case in _setup_cases(size, ipv6)),
    *(case for size in SIZES for case in _fail_cases(size)),
    Case(PORTS_FLOOR, "c30", "ports"),
    Case("setup() v4+rootlessport @30MB", "py30", "ports", {}, PORTS_FLOOR),
    Case(PASTA_FLOOR, "c30", "pasta"),
    Case("pasta.setup() @30MB", "py30", "pasta", {}, PASTA_FLOOR),
    Case("asetup() v4 @30MB", "py30", "asetup", {}, "setup v4 floor @30MB"),
    *(
        case
        for n in SCALES
        for case in (
            Case(f"scale {n} at once floor @30MB", "c30", "scale", {}, "", n),
            Case(
                f"scale {n} at once @30MB", "py30", "scale", {}, f"scale {n} at once floor @30MB", n
            ),
            Case(
                f"scale {n} at once asyncio @30MB",
                "py30",
                "scale",
                {"how": "asyncio"},
                f"scale {n} at once floor @30MB",
                n,
            ),
        )
    ),
    *(_startup_case(name, argv) for name, argv in STARTUP.items()),
]
