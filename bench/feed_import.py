"""Benchmark: import 100,000 feed records, against a plain bulk insert of the same rows.

    .venv/bin/python bench/feed_import.py [--records 100000] [--database URL]

Default database: a scratch PostgreSQL database `donorhub_bench` on 127.0.0.1 (created and
dropped), else `--database sqlite:////tmp/bench.sqlite3`. Prints records per second, the ratio
of the import's time to the bulk insert's (measured in the same run, on the same database),
and the share of the import spent in the PII guard and in the parser.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, text  # noqa: E402

from config import TestingConfig  # noqa: E402
from donorhub import (
    create_app,  # noqa: E402
    guard,  # noqa: E402
)
from donorhub.children.models import Child, ChildUpdate  # noqa: E402
from donorhub.extensions import db  # noqa: E402
from donorhub.feed import importer as services  # noqa: E402
from tests.feed.builders import Batch, child, update  # noqa: E402

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
TEXTS = [
    "She finished her first full term and is proud of her maths.",
    "He helped organise the sports day and cheered for everyone.",
    "She read her first whole book in English this quarter.",
]


def build_feed(records: int) -> bytes:
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


def fresh_app(url: str, scratch: str | None):
    """An empty, migrated database for each phase, so neither sees the other's rows."""
    from flask_migrate import upgrade

    if scratch:
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", scratch], check=True
        )
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", scratch], check=True)
    elif url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, LOG_LEVEL="WARNING")
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return app


def bulk_insert(app, raw: bytes) -> float:
    """The floor: the same number of rows, values precomputed, one executemany per table."""
    with app.app_context():
        lines = raw.decode().splitlines()[1:]
        children = [line for line in lines if '"type": "child"' in line]
        updates = len(lines) - len(children)
        child_rows = [
            dict(
                ref_hash=hashlib.sha256(f"c{n}".encode()).hexdigest(),
                alias=f"Alias {n}",
                public_token=f"token-{n:012d}",
                home_code="MH-02",
                age_band="12-14",
                gender="girl",
                region="Maharashtra",
                stage="education",
                joined_year=2024,
                interests=["drawing"],
                consent_profile=True,
                consent_updates=True,
                consent_basis="cwc_order",
                consent_expires="2027-Q2",
                content_hash="0" * 64,
                illustration=1,
                status="active",
                first_seen_at=NOW,
                updated_at=NOW,
            )
            for n in range(len(children))
        ]
        started = time.perf_counter()
        db.session.execute(insert(Child), child_rows)
        ids = db.session.execute(text("SELECT id FROM children ORDER BY id")).scalars().all()
        update_rows = [
            dict(
                source_hash=hashlib.sha256(f"u{n}".encode()).hexdigest(),
                child_id=ids[n % len(ids)],
                home_code="MH-02",
                period="2026-Q3",
                category="education",
                milestones=["passed_term_exams"],
                original_text=TEXTS[n % 3],
                status="pending",
                findings=[],
                content_hash="0" * 64,
                received_at=NOW,
            )
            for n in range(updates)
        ]
        db.session.execute(insert(ChildUpdate), update_rows)
        db.session.commit()
        return time.perf_counter() - started


def timed_import(app, raw: bytes) -> tuple[float, float, float]:
    spent = {"guard": 0.0, "parse": 0.0}
    original_scan, original_parse = guard.scan_text, services.parse_feed

    def scan(text_):
        started = time.perf_counter()
        try:
            return original_scan(text_)
        finally:
            spent["guard"] += time.perf_counter() - started

    def parse_(raw_, settings):
        started = time.perf_counter()
        try:
            return original_parse(raw_, settings)
        finally:
            spent["parse"] += time.perf_counter() - started

    guard.scan_text, services.parse_feed = scan, parse_
    try:
        with app.app_context():
            started = time.perf_counter()
            report = services.import_batch(raw, source="bench", now=NOW)
            db.session.commit()
            elapsed = time.perf_counter() - started
    finally:
        guard.scan_text, services.parse_feed = original_scan, original_parse
    assert report.status == "completed" and report.rejected == 0, report
    return elapsed, spent["guard"], spent["parse"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--database", default="")
    args = parser.parse_args()
    url, scratch = args.database, None
    if not url:
        scratch = "donorhub_bench"
        url = f"postgresql+psycopg://postgres@127.0.0.1/{scratch}"
    raw = build_feed(args.records)
    try:
        app = fresh_app(url, scratch)
        baseline = bulk_insert(app, raw)
        with app.app_context():
            db.engine.dispose()
        app = fresh_app(url, scratch)
        elapsed, in_guard, in_parse = timed_import(app, raw)
        with app.app_context():
            db.engine.dispose()
    finally:
        if scratch:
            subprocess.run(
                ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", scratch], check=False
            )
    backend = url.split(":", 1)[0]
    print(f"feed import benchmark, {args.records} records ({backend}, {len(raw) / 1e6:.1f} MB)")
    print(
        f"  bulk insert of the same rows : {baseline:7.1f} s  "
        f"({args.records / baseline:,.0f} rows/s)"
    )
    print(
        f"  full import                  : {elapsed:7.1f} s  "
        f"({args.records / elapsed:,.0f} records/s)"
    )
    print(f"  ratio import / bulk insert   : {elapsed / baseline:7.1f}x")
    print(f"  PII guard share of import    : {in_guard / elapsed:7.1%} ({in_guard:.1f} s)")
    print(f"  parser share of import       : {in_parse / elapsed:7.1%} ({in_parse:.1f} s)")


if __name__ == "__main__":
    os.environ.setdefault("DONORHUB_ENV", "testing")
    main()
