"""Benchmark: import 100,000 feed records, against a plain bulk insert of the same rows.

    .venv/bin/python bench/feed_import.py [--records 100000] [--database URL] [--repeat N]
                                          [--profile FILE]

Default database: a scratch PostgreSQL database `donorhub_bench_feed` on 127.0.0.1 (dropped
and re-created for each phase, dropped at the end); `--database sqlite:////tmp/bench.sqlite3`
runs it on SQLite. In one run:

1. the real importer (`import_batch`, then the commit) on a fresh migrated database, with the
   time spent inside the PII guard's `scan_text` calls measured call by call during the import;
2. a plain bulk insert, on another fresh migrated database, of exactly the rows the import
   stored (children, about texts, updates, aliases, read back from the first database after
   it and not timed): one executemany per table, the child ids fetched in one query to link
   texts and updates to them, one commit; like the import, with the cycle collector paused.

The goal's ratio is (import time - time in the guard) / bulk insert time; the guard's
throughput (texts scanned per second inside the import) is printed beside it.
With `--repeat N` both phases run N times, alternating, and the best of each is kept.
`measure(quick)` (bench/ratios.py) runs it with 10,000 records, best of 2 (quick), or
100,000 records once.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("DONORHUB_ENV", "testing")

from sqlalchemy import func, insert, select  # noqa: E402

from bench.ratios import Ratio  # noqa: E402
from config import TestingConfig  # noqa: E402
from donorhub import (
    create_app,  # noqa: E402
    guard,  # noqa: E402
)
from donorhub.children.models import AliasUse, Child, ChildText, ChildUpdate  # noqa: E402
from donorhub.extensions import db  # noqa: E402
from donorhub.feed import importer  # noqa: E402
from tests.feed.builders import Batch, child, update  # noqa: E402

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
TEXTS = [
    "She finished her first full term and is proud of her maths.",
    "He helped organise the sports day and cheered for everyone.",
    "She read her first whole book in English this quarter.",
]
SCRATCH = "donorhub_bench_feed"
GOAL = 2.0
#: The tables whose rows the import stores and the bulk insert copies (feed_runs: one row).
STORED = (Child, ChildText, ChildUpdate, AliasUse)


def build_feed(records: int) -> bytes:
    """A fifth children (a quarter of them with an `about` text), the rest updates (half with
    a text), each update about one of the batch's children."""
    children = records // 5
    lines = []
    for n in range(children):
        lines.append(
            child(
                f"c-bench{n:07d}",
                age_band=["9-11", "12-14", "15-17"][n % 3],
                about=TEXTS[n % 3] if n % 4 == 0 else None,
            )
        )
    for n in range(records - children):
        lines.append(
            update(
                f"c-bench{n % children:07d}",
                uid=f"u-bench{n:07d}",
                text=TEXTS[n % 3] if n % 2 else None,
            )
        )
    return Batch(batch="bench-1").add(*lines).bytes()


def _createdb(name: str) -> None:
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)


def _dropdb(name: str) -> None:
    subprocess.run(
        ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=False
    )


def fresh_app(url: str, scratch: str | None):
    """An empty, migrated database for each phase, so neither sees the other's rows."""
    from flask_migrate import upgrade

    if scratch:
        _createdb(scratch)
    elif url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, LOG_LEVEL="WARNING")
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return app


@dataclass
class ImportRun:
    seconds: float
    guard_seconds: float
    guard_texts: int
    parse_seconds: float
    report: importer.ImportReport
    rows: dict[str, list[dict]]  # the stored rows, by table, read back after the timing

    @property
    def apart_from_guard(self) -> float:
        return self.seconds - self.guard_seconds


def stored_rows() -> dict[str, list[dict]]:
    """Every row the import stored in the tables the bulk insert copies, ids included."""
    rows = {}
    for model in STORED:
        table = model.__table__
        result = db.session.execute(select(table).order_by(table.c.id))
        rows[table.name] = [dict(row._mapping) for row in result]
    return rows


def timed_import(app, raw: bytes, profile: str | None = None) -> ImportRun:
    """The real importer and its commit; the time inside each guard call is summed as it
    happens (the wrapper's own overhead, two clock reads a call, counts as import time)."""
    spent = {"guard": 0.0, "parse": 0.0, "texts": 0}
    original_scan, original_parse = guard.scan_text, importer.parse_feed

    def scan(text_):
        started = time.perf_counter()
        try:
            return original_scan(text_)
        finally:
            spent["guard"] += time.perf_counter() - started
            spent["texts"] += 1

    def parse_(raw_, settings):
        started = time.perf_counter()
        try:
            return original_parse(raw_, settings)
        finally:
            spent["parse"] += time.perf_counter() - started

    profiler = cProfile.Profile() if profile else None
    guard.scan_text, importer.parse_feed = scan, parse_  # type: ignore[assignment]
    try:
        with app.app_context():
            original_scan("warm the word lists")
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            report = importer.import_batch(raw, source="bench", now=NOW)
            db.session.commit()
            if profiler:
                profiler.disable()
            elapsed = time.perf_counter() - started
            rows = stored_rows()
            db.session.remove()
            db.engine.dispose()
    finally:
        guard.scan_text, importer.parse_feed = original_scan, original_parse  # type: ignore[assignment]
    if profiler and profile:
        profiler.dump_stats(profile)
    return ImportRun(elapsed, spent["guard"], int(spent["texts"]), spent["parse"], report, rows)


def bulk_insert(app, rows: dict[str, list[dict]]) -> float:
    """The floor: the import's own rows, values precomputed, one executemany per table,
    child ids fetched in one query to link texts and updates to them, one commit."""
    children = [{k: v for k, v in row.items() if k != "id"} for row in rows["children"]]
    old_ids = {row["ref_hash"]: row["id"] for row in rows["children"]}
    by_old_id: dict[int, str] = {v: k for k, v in old_ids.items()}

    def linked(table: str) -> list[tuple[dict, str | None]]:
        return [
            (
                {k: v for k, v in row.items() if k not in ("id", "child_id")},
                by_old_id[row["child_id"]] if row["child_id"] is not None else None,
            )
            for row in rows[table]
        ]

    texts, updates = linked("child_texts"), linked("child_updates")
    aliases = [{k: v for k, v in row.items() if k != "id"} for row in rows["alias_uses"]]
    # The import pauses the cycle collector for its batch; so does the floor.
    with app.app_context(), importer.cycle_collector_paused():
        started = time.perf_counter()
        db.session.execute(insert(Child.__table__), children)
        ids = {ref: id_ for ref, id_ in db.session.execute(select(Child.ref_hash, Child.id))}
        db.session.execute(
            insert(ChildText.__table__), [{**row, "child_id": ids[ref]} for row, ref in texts]
        )
        db.session.execute(
            insert(ChildUpdate.__table__),
            [{**row, "child_id": ids[ref] if ref else None} for row, ref in updates],
        )
        db.session.execute(insert(AliasUse.__table__), aliases)
        db.session.commit()
        elapsed = time.perf_counter() - started
        counts = {
            model.__table__.name: db.session.scalar(select(func.count()).select_from(model))
            for model in STORED
        }
        db.session.remove()
        db.engine.dispose()
    expected = {table: len(found) for table, found in rows.items()}
    if counts != expected:
        raise AssertionError(f"the bulk insert stored {counts}, the import {expected}")
    return elapsed


@dataclass
class Result:
    records: int
    backend: str
    megabytes: float
    bulk: float
    run: ImportRun
    problems: list[str]

    @property
    def ratio(self) -> float:
        return self.run.apart_from_guard / self.bulk

    @property
    def guard_rate(self) -> float:
        return self.run.guard_texts / self.run.guard_seconds if self.run.guard_seconds else 0.0


def check(records: int, run: ImportRun) -> list[str]:
    """What a correct import of the bench feed stores; anything else makes the run wrong."""
    children = records // 5
    updates = records - children
    expected = {
        "children": children,
        "child_texts": (children + 3) // 4,
        "child_updates": updates,
        "alias_uses": children,
    }
    problems = [
        f"{table}: {len(run.rows[table])} rows, expected {count}"
        for table, count in expected.items()
        if len(run.rows[table]) != count
    ]
    report = run.report
    if report.status != "completed" or report.rejected or report.created != records:
        problems.append(f"report: {report.status}, {report.created} created, {report.rejected}")
    texts = sum(1 for row in run.rows["child_updates"] if row["original_text"])
    texts += len(run.rows["child_texts"])
    if run.guard_texts != texts:
        problems.append(f"the guard scanned {run.guard_texts} texts of {texts}")
    return problems


def run_benchmark(
    records: int, database: str = "", profile: str | None = None, repeat: int = 1
) -> Result:
    """`repeat` times each phase, alternating, on fresh databases; keeps the best import
    (least time apart from the guard) and the best bulk insert."""
    url, scratch = database, None
    if not url:
        scratch = SCRATCH
        url = f"postgresql+psycopg://postgres@127.0.0.1/{scratch}"
    raw = build_feed(records)
    runs, bulks = [], []
    try:
        for _ in range(repeat):
            runs.append(timed_import(fresh_app(url, scratch), raw, profile))
            bulks.append(bulk_insert(fresh_app(url, scratch), runs[-1].rows))
    finally:
        if scratch:
            _dropdb(scratch)
    run = min(runs, key=lambda r: r.apart_from_guard)
    problems = [problem for each in runs for problem in check(records, each)]
    return Result(records, url.split(":", 1)[0], len(raw) / 1e6, min(bulks), run, problems)


def measure(quick: bool) -> list[Ratio]:
    result = run_benchmark(10_000, repeat=2) if quick else run_benchmark(100_000)
    run = result.run
    return [
        Ratio(
            name=f"feed import apart from the guard / bulk insert, {result.records:,} records",
            value=round(result.ratio, 2),
            goal=GOAL,
            at_least=False,
            detail=(
                f"import {run.seconds:.1f} s - guard {run.guard_seconds:.1f} s vs bulk insert "
                f"{result.bulk:.1f} s; guard {result.guard_rate:,.0f} texts/s "
                f"({run.guard_texts:,} texts)"
            ),
            correct=not result.problems,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--database", default="")
    parser.add_argument("--profile", default=None, help="write the import's cProfile here")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each phase; best kept")
    args = parser.parse_args()
    result = run_benchmark(args.records, args.database, args.profile, args.repeat)
    run, records = result.run, result.records
    print(
        f"feed import benchmark, {records:,} records ({result.backend}, {result.megabytes:.1f} MB)"
    )
    bulk_rate, import_rate = records / result.bulk, records / run.seconds
    print(f"  bulk insert of the same rows   : {result.bulk:7.2f} s  ({bulk_rate:,.0f} records/s)")
    print(
        f"  full import                    : {run.seconds:7.2f} s  ({import_rate:,.0f} records/s)"
    )
    print(
        f"  in the PII guard               : {run.guard_seconds:7.2f} s  "
        f"({run.guard_texts:,} texts, {result.guard_rate:,.0f} texts/s; "
        f"{run.guard_seconds / run.seconds:.0%} of the import)"
    )
    print(f"  in the parser                  : {run.parse_seconds:7.2f} s")
    print(f"  import apart from the guard    : {run.apart_from_guard:7.2f} s")
    verdict = "pass" if result.ratio <= GOAL and not result.problems else "FAIL"
    print(f"  ratio (import - guard) / bulk  : {result.ratio:7.2f}x  (goal <= {GOAL}x: {verdict})")
    print(f"  ratio import / bulk (all in)   : {run.seconds / result.bulk:7.2f}x")
    for problem in result.problems:
        print(f"  WRONG: {problem}")
    if result.problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
