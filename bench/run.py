"""Every benchmark ratio in one table: `make bench` (quick) and `make bench-full`.

    .venv/bin/python bench/run.py --quick                   # make bench: under 5 minutes
    .venv/bin/python bench/run.py                           # make bench-full: the goals' sizes
    .venv/bin/python bench/run.py --only overhead webhooks  # some benchmarks only
    .venv/bin/python bench/run.py --json reports/bench.json --markdown

Imports each benchmark module of BENCHMARKS and calls its `measure(quick)`, which returns
Ratios (bench/ratios.py): a figure measured against a baseline in the same run, with its
goal. Prints one table (name, ratio, goal, the raw figures, pass or fail) and writes it with
the machine's facts (cores, load average before and after, Python and PostgreSQL versions,
git commit, date) to --json (default reports/bench.json).

A module that is missing or has no `measure` is "not available"; one that raises is a
failed row with the error. Exits 1 when any row fails, and in full mode also when any
benchmark is not available (a full run is the one that proves the goals); 0 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import machine_facts  # noqa: E402
from bench.ratios import Ratio  # noqa: E402

#: The quick table's budget (the README promises `make bench` under 5 minutes).
QUICK_BUDGET_SECONDS = 300
#: (short name, module, what it measures), in the table's order.
BENCHMARKS: list[tuple[str, str, str]] = [
    (
        "campaign_growth",
        "bench.campaign_growth",
        "home and campaign pages at 1,000,000 gifts / none",
    ),
    (
        "sponsor_growth",
        "bench.sponsor_growth",
        "/sponsor at 6,000 children / 60; release checks and match-me",
    ),
    (
        "overhead",
        "bench.overhead",
        "/healthz / bare Flask; /donate / bare template; donate page bytes",
    ),
    (
        "webhooks",
        "bench.webhooks",
        "webhook answered / verify-and-enqueue; applied / /healthz",
    ),
    ("reports", "bench.reports", "each staff report / its hand-written SQL"),
    ("feed_import", "bench.feed_import", "feed import without the guard / bulk insert"),
    ("guard_scan", "bench.guard_scan", "the PII guard's texts per second, now / before"),
]

PASS, FAIL, UNAVAILABLE, ERROR = "pass", "FAIL", "not available", "ERROR"


@dataclass
class Row:
    benchmark: str
    name: str
    value: float | None = None
    goal: float | None = None
    at_least: bool = True
    detail: str = ""
    correct: bool = True
    result: str = PASS
    seconds: float = 0.0

    @property
    def goal_text(self) -> str:
        if self.goal is None:
            return ""
        return f"{'≥' if self.at_least else '≤'} {self.goal:g}"

    @property
    def value_text(self) -> str:
        return "" if self.value is None else f"{self.value:.2f}"

    def as_json(self) -> dict:
        return {
            "benchmark": self.benchmark,
            "name": self.name,
            "value": self.value,
            "goal": self.goal,
            "at_least": self.at_least,
            "detail": self.detail,
            "correct": self.correct,
            "result": self.result,
            "passed": self.result == PASS,
            "seconds": round(self.seconds, 1),
        }


@dataclass
class Selection:
    chosen: list[tuple[str, str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def select(only: list[str] | None) -> Selection:
    """The benchmarks to run: all, or those named by short name or module; a dotted name
    that is not in BENCHMARKS is taken as a module path (a benchmark of your own)."""
    if not only:
        return Selection(list(BENCHMARKS))
    selection = Selection()
    for wanted in only:
        found = [b for b in BENCHMARKS if wanted in (b[0], b[1])]
        if found:
            selection.chosen += found
        elif "." in wanted:
            selection.chosen.append((wanted.rsplit(".", 1)[-1], wanted, wanted))
        else:
            selection.unknown.append(wanted)
    return selection


def load_measure(module_name: str):
    """The module's `measure`, or None when the module does not exist or has none. Any
    other import error is raised (a broken benchmark is a failure, not an absence)."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            return None
        raise
    measure = getattr(module, "measure", None)
    return measure if callable(measure) else None


def short_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    return " ".join(text.split())[:400]


@contextmanager
def output_to_stderr() -> Iterator[None]:
    """A benchmark's own output (and its subprocesses') goes to stderr, so that stdout holds
    the one table."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_benchmark(short: str, module_name: str, quick: bool) -> list[Row]:
    with output_to_stderr():
        return _run_benchmark(short, module_name, quick)


def _run_benchmark(short: str, module_name: str, quick: bool) -> list[Row]:
    started = time.monotonic()
    try:
        measure = load_measure(module_name)
    except Exception as error:  # noqa: BLE001 - reported as the benchmark's failed row
        traceback.print_exc()
        return [Row(short, short, detail=f"import failed: {short_error(error)}", result=ERROR)]
    if measure is None:
        return [
            Row(
                short,
                short,
                detail=f"{module_name} is missing or has no measure(quick)",
                result=UNAVAILABLE,
            )
        ]
    try:
        ratios = list(measure(quick))
    except Exception as error:  # noqa: BLE001 - one benchmark failing must not stop the table
        traceback.print_exc()
        return [
            Row(
                short,
                short,
                detail=short_error(error),
                result=ERROR,
                seconds=time.monotonic() - started,
            )
        ]
    seconds = time.monotonic() - started
    if not ratios:
        return [Row(short, short, detail="measure() returned no ratio", result=ERROR)]
    rows = []
    for ratio in ratios:
        if not isinstance(ratio, Ratio):
            rows.append(Row(short, short, detail=f"not a Ratio: {ratio!r}"[:400], result=ERROR))
            continue
        rows.append(
            Row(
                short,
                ratio.name,
                value=ratio.value,
                goal=ratio.goal,
                at_least=ratio.at_least,
                detail=ratio.detail,
                correct=ratio.correct,
                result=PASS if ratio.passed else FAIL,
                seconds=seconds,
            )
        )
    return rows


def failed(row: Row, quick: bool) -> bool:
    if row.result == UNAVAILABLE:
        return not quick
    return row.result != PASS


def table(rows: list[Row]) -> str:
    headers = ("name", "ratio", "goal", "detail", "result")
    cells = [
        (
            r.name,
            r.value_text,
            r.goal_text,
            r.detail + ("" if r.correct else " [WRONG FIGURES]"),
            r.result,
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    aligns = ["<", ">", "<", "<", "<"]

    def line(values) -> str:
        return "  ".join(f"{v:{a}{w}}" for v, a, w in zip(values, aligns, widths, strict=True))

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in cells]
    return "\n".join(line_.rstrip() for line_ in out)


def markdown(rows: list[Row]) -> str:
    out = ["| name | ratio | goal | detail | result |", "|---|---|---|---|---|"]
    for r in rows:
        detail = (r.detail + ("" if r.correct else " **wrong figures**")).replace("|", "\\|")
        result = r.result if r.result == PASS else f"**{r.result}**"
        out.append(f"| {r.name} | {r.value_text} | {r.goal_text} | {detail} | {result} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick sizes (make bench)")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="benchmarks to run: " + ", ".join(b[0] for b in BENCHMARKS) + ", or a module path",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "bench.json")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for short, module, what in BENCHMARKS:
            print(f"{short:<16} {module:<24} {what}")
        return 0
    selection = select(args.only)
    if selection.unknown:
        parser.error(
            f"unknown benchmark {', '.join(selection.unknown)}: choose from "
            + ", ".join(b[0] for b in BENCHMARKS)
            + " (or give a module path)"
        )

    mode = "quick" if args.quick else "full"
    facts = machine_facts()
    load_before = facts.pop("load_average")
    started = time.monotonic()
    print(
        f"bench: {mode} run of {len(selection.chosen)} benchmarks on {facts['cores']} cores, "
        f"load average {' '.join(map(str, load_before))}",
        file=sys.stderr,
        flush=True,
    )
    rows: list[Row] = []
    for short, module_name, what in selection.chosen:
        print(f"bench: {short} ({what}) ...", file=sys.stderr, flush=True)
        module_started = time.monotonic()
        found = run_benchmark(short, module_name, args.quick)
        for row in found:
            print(f"bench:   {row.name}: {row.value_text} {row.result}", file=sys.stderr)
        print(
            f"bench:   {short} took {time.monotonic() - module_started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        rows += found
    seconds = time.monotonic() - started
    load_after = [round(x, 2) for x in os.getloadavg()]

    print(table(rows))
    failures = [r for r in rows if failed(r, args.quick)]
    summary = (
        f"{sum(r.result == PASS for r in rows)} of {len(rows)} rows pass; {mode} run in "
        f"{seconds:.0f} s; load average before {' '.join(map(str, load_before))}, "
        f"after {' '.join(map(str, load_after))}"
    )
    print(summary)
    if args.markdown:
        print()
        print(markdown(rows))
        print()
        print(
            f"Machine: {facts['cores']} cores, load average before "
            f"{' '.join(map(str, load_before))}, after {' '.join(map(str, load_after))}; "
            f"PostgreSQL {facts['postgresql']}, Python {facts['python']}; commit "
            f"{facts['git_commit']}; {facts['date']}; `make bench{'' if args.quick else '-full'}` "
            f"in {seconds:.0f} s."
        )
    if args.quick and seconds > QUICK_BUDGET_SECONDS:
        print(
            f"the quick run took {seconds:.0f} s, over its {QUICK_BUDGET_SECONDS} s budget: "
            "see each benchmark's time in the JSON report",
        )

    report = {
        "mode": mode,
        "passed": not failures,
        "seconds": round(seconds, 1),
        "machine": {
            **facts,
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "rows": [r.as_json() for r in rows],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"written to {args.json}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
