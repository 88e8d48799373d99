"""Summaries of timing samples and the one table run.py prints."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """min, median and p95 of one case's kept samples, in milliseconds."""

    n: int
    min: float
    median: float
    p95: float

    @classmethod
    def of(cls, ns: Sequence[int]) -> Summary:
        ms = sorted(t / 1e6 for t in ns)
        if not ms:
            return cls(0, math.nan, math.nan, math.nan)
        # Nearest rank: a p95 that is one of the samples, never interpolated past them.
        p95 = ms[min(len(ms) - 1, math.ceil(0.95 * len(ms)) - 1)]
        return cls(len(ms), ms[0], statistics.median(ms), p95)


def paired_ratio(case: Sequence[Sequence[int]], floor: Sequence[Sequence[int]]) -> float:
    """The median over rounds of a case's median over its floor's in the same round: each
    pair measured minutes apart at most, so drift of the machine between rounds cancels."""
    pairs = [
        statistics.median(mine) / statistics.median(theirs)
        for mine, theirs in zip(case, floor, strict=True)
        if mine and theirs
    ]
    return statistics.median(pairs) if pairs else math.nan


@dataclass(frozen=True)
class Row:
    """One line of the table; ``ratio`` is None where a case has no floor."""

    case: str
    summary: Summary
    ratio: float | None
    floor: str
    note: str = ""


def table(rows: Sequence[Row]) -> str:
    """A fixed-width table: case, n, min, median, p95 (ms), ratio to floor, floor, note."""
    header = ("case", "n", "min", "median", "p95", "ratio", "floor", "note")
    lines = [
        (
            r.case,
            str(r.summary.n),
            f"{r.summary.min:.3f}",
            f"{r.summary.median:.3f}",
            f"{r.summary.p95:.3f}",
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.floor or "-",
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    right = {1, 2, 3, 4, 5}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, lines)])
