"""A kill -9 at any moment of an import leaves the state before it or after it, and the next
run completes it exactly once (SQLite in WAL mode and PostgreSQL)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from donorhub.extensions import db
from tests.feed.builders import Batch, child, home_stats, update
from tests.metrics import METRICS

ROOT = Path(__file__).resolve().parents[2]
#: Tables an import writes; the audit log and outbox are not touched by it.
FEED_TABLES = ("children", "child_texts", "child_updates", "child_releases", "home_stats",
               "alias_uses", "feed_runs", "exit_notices")


def signature(app) -> str:
    digest = hashlib.sha256()
    with app.app_context():
        for table in FEED_TABLES:
            rows = db.session.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            digest.update(f"{table}:{rows};".encode())
        # Content too, not only counts, for the rows whose values an import decides.
        for row in db.session.execute(text(
                "SELECT ref_hash, age_band, stage FROM children ORDER BY ref_hash")):
            digest.update(repr(tuple(row)).encode())
        db.session.remove()
    return digest.hexdigest()


def big_batch(children: int) -> bytes:
    records = []
    for n in range(children):
        record = child(f"c-atomic{n:06d}", age_band=["9-11", "12-14", "15-17"][n % 3],
                       about="Loves football and maths.")
        records.append(record)
        records.append(update(record["ref"], uid=f"u-atomic{n:06d}", text="She ran a race."))
    records.append(home_stats())
    return Batch(batch="atomic-1").add(*records).bytes()


def run_import(app, path: Path, env: dict, kill_after: float | None) -> int | None:
    command = [sys.executable, "-m", "flask", "feed", "import", str(path)]
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as process:
        if kill_after is None:
            return process.wait(timeout=300)
        time.sleep(kill_after)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        return None


def test_import_survives_kill_9_at_random_moments(app, tmp_path, backend):
    path = tmp_path / "atomic.jsonl"
    path.write_bytes(big_batch(1500))
    env = {**os.environ, "FLASK_APP": "wsgi", "DONORHUB_ENV": "development",
           "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "FEED_PSEUDONYM_KEY": app.config["FEED_PSEUDONYM_KEY"],
           "DONORHUB_INSTANCE_DIR": str(tmp_path), "LOG_LEVEL": "WARNING"}
    before = signature(app)
    # Time one full import on a scratch copy first, so kills land across its whole length.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    timing_env = dict(env)
    if backend == "sqlite":
        import shutil

        copy = scratch / "copy.sqlite3"
        shutil.copyfile(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"), copy)
        timing_env["DATABASE_URL"] = f"sqlite:///{copy}"
        started = time.monotonic()
        assert run_import(app, path, timing_env, None) == 0
        full = time.monotonic() - started
    else:
        full = 8.0
    rng = random.Random(20261128)
    states = {"before": 0, "after": 0}
    after = None
    kills = 6
    for _ in range(kills):
        run_import(app, path, env, kill_after=rng.uniform(0.2, full * 1.1))
        now = signature(app)
        if now == before:
            states["before"] += 1
            continue
        after = after or now
        assert now == after, "a kill left a state that is neither before nor after"
        states["after"] += 1
    assert run_import(app, path, env, None) == 0
    final = signature(app)
    assert after is None or final == after
    assert final != before
    with app.app_context():
        children = db.session.execute(text("SELECT count(*) FROM children")).scalar()
        runs = db.session.execute(text(
            "SELECT count(*) FROM feed_runs WHERE status = 'completed'")).scalar()
    assert (children, runs) == (1500, 1)
    METRICS.report(f"11.2 import kill -9 ({backend}): kills / left before / left after / "
                   "partial states / duplicates",
                   f"{kills} / {states['before']} / {states['after']} / 0 / 0")
