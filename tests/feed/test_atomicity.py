"""A kill -9 inside an import's transaction or just after its commit leaves the state before it
or after it, and the next run completes it exactly once (SQLite in WAL mode and PostgreSQL).
The process is parked at each point (tests/kill_points.py) and killed there, never after a
delay."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from donorhub.extensions import db
from tests.feed.builders import FEED_TABLES, Batch, child, home_stats, update
from tests.kill_points import ParkingSpot
from tests.metrics import METRICS

ROOT = Path(__file__).resolve().parents[2]


def signature(app) -> str:
    digest = hashlib.sha256()
    with app.app_context():
        for table in FEED_TABLES:
            rows = db.session.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            digest.update(f"{table}:{rows};".encode())
        # Content too, not only counts, for the rows whose values an import decides.
        for row in db.session.execute(
            text("SELECT ref_hash, age_band, stage FROM children ORDER BY ref_hash")
        ):
            digest.update(repr(tuple(row)).encode())
        db.session.remove()
    return digest.hexdigest()


def big_batch(children: int) -> bytes:
    records = []
    for n in range(children):
        record = child(
            f"c-atomic{n:06d}",
            age_band=["9-11", "12-14", "15-17"][n % 3],
            about="Loves football and maths.",
        )
        records.append(record)
        records.append(update(record["ref"], uid=f"u-atomic{n:06d}", text="She ran a race."))
    records.append(home_stats())
    return Batch(batch="atomic-1").add(*records).bytes()


def run_import(path: Path, env: dict) -> int:
    command = [sys.executable, "-m", "flask", "feed", "import", str(path)]
    return subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
        check=False,
    ).returncode


def kill_import_at(path: Path, env: dict, point: str, nth: int) -> bool:
    """Run the import parked at the `nth` arrival at `point` and SIGKILL it there; False when
    the import finished before reaching it."""
    command = [sys.executable, "-m", "flask", "feed", "import", str(path)]
    with ParkingSpot() as spot:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**env, **spot.env(point, nth)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return spot.kill_when_parked(process, may_finish=True)


def test_import_survives_kill_9_at_every_commit_point(app, tmp_path, backend):
    """Killed inside each write transaction of the import (its writes flushed) and just
    after each commit: every kill leaves the state before the import or after it."""
    path = tmp_path / "atomic.jsonl"
    path.write_bytes(big_batch(1500))
    env = {
        **os.environ,
        "FLASK_APP": "wsgi",
        "DONORHUB_ENV": "development",
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "FEED_PSEUDONYM_KEY": app.config["FEED_PSEUDONYM_KEY"],
        "DONORHUB_INSTANCE_DIR": str(tmp_path),
        "LOG_LEVEL": "WARNING",
    }
    before = signature(app)
    states = {"before": 0, "after": 0}
    kills = 0
    after = None
    # Inside the batch's transaction: nothing of it stays, however many times.
    for _ in range(2):
        assert kill_import_at(path, env, "before-commit", 1)
        kills += 1
        assert signature(app) == before, "a kill inside the transaction left a partial import"
        states["before"] += 1
    # Just after the batch's commit: all of it stays; later commits (if any) change nothing.
    for nth in range(1, 10):
        if not kill_import_at(path, env, "after-commit", nth):
            break
        kills += 1
        now = signature(app)
        assert now != before
        after = after or now
        assert now == after, "a kill left a state that is neither before nor after"
        states["after"] += 1
    assert states["after"] >= 1
    assert run_import(path, env) == 0
    final = signature(app)
    assert final == after
    with app.app_context():
        children = db.session.execute(text("SELECT count(*) FROM children")).scalar()
        runs = db.session.execute(
            text("SELECT count(*) FROM feed_runs WHERE status = 'completed'")
        ).scalar()
    assert (children, runs) == (1500, 1)
    METRICS.report(
        f"11.2 import kill -9 ({backend}): kills / left before / left after / "
        "partial states / duplicates",
        f"{kills} / {states['before']} / {states['after']} / 0 / 0",
    )
