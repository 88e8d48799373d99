"""Mutation testing of the pure modules: how many deliberate bugs the fast tests catch.

mutmut (configured in pyproject.toml's ``[tool.mutmut]``, forkserver isolation) mutates
the code inside functions. It leaves module- and class-level statements alone, so a second,
small pass here mutates those: every literal outside a function (numbers + 1, strings
wrapped in ``XX``, booleans flipped, each quantifier of a regex pattern), which covers the
constants, the regexes, the dataclass defaults and the ``dataclass(frozen=..., kw_only=...)``
flags. Each of those mutants runs the same tests in a scratch copy of the tree.

Mutants no test can tell from the original are listed, each with the reason, in
tests/README.md; they leave the denominator. The last line printed is the kill rate of
each module. Takes about ten minutes on two cores::

    pip install -e '.[test,mutation]'
    nice -n 15 python3 bench/mutation.py
"""

from __future__ import annotations

import ast
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
MODULES = [Path(path).stem for path in MUTMUT["only_mutate"]]
TESTS = MUTMUT["pytest_add_cli_args_test_selection"]
EQUIVALENT_LIST = ROOT / "tests" / "README.md"
LOG = ROOT / "bench" / "out" / "mutmut.log"
WORKERS = 2
TIMEOUT = 300  # seconds for one mutant's tests; the suite takes about ten

# mutmut's verdicts: a mutant "killed" or "timeout" was caught by a test.
CAUGHT = {"killed", "timeout"}


@dataclass(frozen=True)
class Mutant:
    """One change to one module: ``name`` as listed in tests/README.md."""

    module: str
    name: str
    source: str = ""


def main() -> None:
    found = run_mutmut() + run_module_level()
    equivalent = listed_equivalents()
    unknown = sorted(equivalent - {name for name, _ in found})
    if unknown:
        print(f"listed as equivalent but not generated any more: {', '.join(unknown)}")
    totals: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    for name, verdict in sorted(found):
        module = name.split(".")[1].split(":")[0]
        if name in equivalent:
            if verdict in CAUGHT:
                print(f"listed as equivalent but caught: {name}")
            continue
        totals[module] += 1
        if verdict in CAUGHT:
            caught[module] += 1
        else:
            print(f"survived ({verdict}): {name}")
    print(
        f"{len(found)} mutants, {len(equivalent)} equivalent; killed of the rest: "
        + ", ".join(
            f"{m} {100 * caught[m] / totals[m]:.1f}% ({caught[m]}/{totals[m]})" for m in MODULES
        )
    )


def run_mutmut() -> list[tuple[str, str]]:
    """mutmut's mutants of every function, from scratch: (name, verdict)."""
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    LOG.parent.mkdir(exist_ok=True)
    with LOG.open("w") as log:
        subprocess.run(
            ["mutmut", "run", "--max-children", str(WORKERS)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    results = subprocess.run(
        ["mutmut", "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        (name, verdict.strip())
        for name, verdict in (line.strip().rsplit(": ", 1) for line in results.splitlines())
    ]


def run_module_level() -> list[tuple[str, str]]:
    """The mutants of module- and class-level literals, run in scratch copies."""
    mutants = [m for module in MODULES for m in module_level_mutants(module)]
    scratch = [copy_tree() for _ in range(WORKERS)]
    free: queue.Queue[Path] = queue.Queue()
    for tree in scratch:
        free.put(tree)

    def run(mutant: Mutant) -> str:
        tree = free.get()
        try:
            return run_one(mutant, tree)
        finally:
            free.put(tree)

    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            return [(m.name, v) for m, v in zip(mutants, pool.map(run, mutants), strict=True)]
    finally:
        for tree in scratch:
            shutil.rmtree(tree)


def copy_tree() -> Path:
    tree = Path(tempfile.mkdtemp(prefix="pyslirp-mutation-"))
    for name in ("pyslirp", "tests"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    return tree


def run_one(mutant: Mutant, tree: Path) -> str:
    """Run the tests against ``mutant`` in ``tree`` (one mutant per tree at a time)."""
    path = tree / "pyslirp" / f"{mutant.module}.py"
    original = path.read_text()
    path.write_text(mutant.source)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    finally:
        path.write_text(original)
    return "survived" if done.returncode == 0 else "killed"


def module_level_mutants(module: str) -> Iterator[Mutant]:
    source = (ROOT / "pyslirp" / f"{module}.py").read_text()
    lines = source.splitlines(keepends=True)
    seen: Counter[str] = Counter()
    for node, replacement, where in _literal_sites(ast.parse(source)):
        raw = [line.encode() for line in lines]
        start, end = node.lineno - 1, node.end_lineno - 1  # type: ignore[operator]
        head = raw[start][: node.col_offset]
        tail = raw[end][node.end_col_offset :]
        raw[start : end + 1] = [head + replacement.encode() + tail]
        seen[where] += 1
        repeat = f" #{seen[where]}" if seen[where] > 1 else ""
        yield Mutant(
            module=module,
            name=f"pyslirp.{module}:{where}{repeat}",
            source=b"".join(raw).decode(),
        )


def _literal_sites(tree: ast.Module) -> Iterator[tuple[ast.expr, str, str]]:
    """(node, replacement text, where: the name it belongs to and the change) for each
    literal outside functions. Names, not line numbers, so an edit elsewhere keeps them."""
    keywords = {
        id(node.value): f"{node.arg}="
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and isinstance(node.value, ast.Constant)
    }
    for node, owner in _outside_functions(tree):
        if isinstance(node, ast.Call) and _is_re_compile(node) and node.args:
            pattern = node.args[0]
            if isinstance(pattern, ast.Constant) and isinstance(pattern.value, str):
                for mutated in _regex_mutations(pattern.value):
                    yield pattern, repr(mutated), f"{owner}:re {mutated!r}"
            continue
        if not isinstance(node, ast.Constant):
            continue
        value = node.value
        if isinstance(value, bool):
            change = f"{keywords.get(id(node), '')}{value}->{not value}"
            yield node, repr(not value), f"{owner}:{change}"
        elif isinstance(value, int | float):
            yield node, repr(value + 1), f"{owner}:{value}->{value + 1}"
        elif isinstance(value, str):
            yield node, repr(f"XX{value}XX"), f"{owner}:{value[:24]!r}->XX"


def _outside_functions(tree: ast.Module) -> Iterator[tuple[ast.AST, str]]:
    """Every node not inside a function body, an annotation or a docstring, with the name
    of the class and/or assignment it is part of."""
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, owner = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        yield node, owner
        if isinstance(node, ast.Call) and _is_re_compile(node):
            continue  # its pattern gets regex mutations instead
        if isinstance(node, ast.ClassDef):
            owner = node.name
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            name = target.id if isinstance(target, ast.Name) else ast.unparse(target)
            owner = f"{owner}.{name}" if owner else name
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.AnnAssign):
            children.remove(node.annotation)
        stack.extend((child, owner) for child in reversed(children))


def _is_re_compile(node: ast.Call) -> bool:
    func = node.func
    return isinstance(func, ast.Attribute) and func.attr == "compile"


def _regex_mutations(pattern: str) -> Iterator[str]:
    """The pattern with one quantifier changed: ``+``/``*`` swapped, ``?`` dropped, each
    bound of ``{m,n}`` moved by one, ``[0-9]`` narrowed to ``[1-9]``."""
    for match in re.finditer(r"(?<!\\)[+*?]|\{(\d+),(\d+)\}|\[0-9\]", pattern):
        start, end = match.span()
        token = match.group()
        if token == "+":
            options = ["*"]
        elif token == "*":
            options = ["+"]
        elif token == "?":
            options = [""]
        elif token == "[0-9]":
            options = ["[1-9]"]
        else:
            low, high = int(match[1]), int(match[2])
            options = [f"{{{low + 1},{high}}}", f"{{{low},{high - 1}}}", f"{{{low},{high + 1}}}"]
        for option in options:
            yield pattern[:start] + option + pattern[end:]


def listed_equivalents() -> set[str]:
    """The mutant names in tests/README.md's table of equivalent mutants."""
    return set(re.findall(r"^\| `([^`]+)` \|", EQUIVALENT_LIST.read_text(), re.MULTILINE))


if __name__ == "__main__":
    main()
