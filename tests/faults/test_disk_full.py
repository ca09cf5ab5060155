"""The disk fills up during a feed import: a clean failure, nothing partial, and a re-run
after space is freed imports the batch exactly once.

The database lives on a small tmpfs (mounted here, as root; skipped loudly otherwise) with a
filler file that leaves too little room for the batch: (1) SQLite, the database file and its
WAL on the tmpfs; (2) PostgreSQL, a private cluster (never the machine's server) whose
database sits in a tablespace on the tmpfs, its WAL on the ordinary disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from donorhub.extensions import db
from tests.feed.builders import FEED_TABLES, Batch, child, home_stats, update
from tests.helpers import require
from tests.metrics import METRICS

ROOT = Path(__file__).resolve().parents[2]
#: Free text of the batch: none of it may reach the output or the logs.
CANARIES = (
    "Paints kingfishers on the riverbank",
    "Sings with the morning choir",
    "c-diskfull000123",
)
FREE_AFTER_FILLER = 256 * 1024


@contextmanager
def small_disk(where: Path, megabytes: int):
    where.mkdir(parents=True, exist_ok=True)
    require(os.geteuid() == 0, "root (to mount a small tmpfs)", "the disk-full tests")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    require(
        result.returncode == 0,
        f"mount -t tmpfs (refused: {result.stderr.strip()!r})",
        "the disk-full tests",
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, leave: int = FREE_AFTER_FILLER) -> Path:
    """A filler file that leaves about `leave` bytes free on `disk`."""
    filler = disk / "filler.bin"
    stats = os.statvfs(disk)
    size = stats.f_bavail * stats.f_frsize - leave
    with filler.open("wb") as handle:
        chunk = b"\0" * (1 << 20)
        while size > 0:
            handle.write(chunk[: min(size, len(chunk))])
            size -= len(chunk)
    return filler


def big_batch(children: int, name: str) -> bytes:
    records = []
    for n in range(children):
        record = child(f"c-diskfull{n:06d}", about=f"{CANARIES[0]} ({n}).")
        records.append(record)
        records.append(update(record["ref"], uid=f"u-diskfull{n:06d}", text=CANARIES[1]))
    records.append(home_stats())
    return Batch(batch=name).add(*records).bytes()


def feed_import(url: str, tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    from config import TestingConfig

    env = {
        **os.environ,
        "FLASK_APP": "wsgi",
        "DONORHUB_ENV": "development",
        "DATABASE_URL": url,
        "FEED_PSEUDONYM_KEY": TestingConfig.FEED_PSEUDONYM_KEY,
        "DONORHUB_INSTANCE_DIR": str(tmp_path),
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    if "FEED_DIR" not in extra:
        env.pop("FEED_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "flask", "feed", "import", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def signature(app) -> str:
    """Per-table row counts and a hash of every ordered row of the tables an import writes;
    the import history's own "failed" rows are left out (recording them is the point)."""
    digest = hashlib.sha256()
    with app.app_context():
        for table in FEED_TABLES:
            where = " WHERE status <> 'failed'" if table == "feed_runs" else ""
            found = db.session.execute(text(f"SELECT * FROM {table}{where} ORDER BY 1")).all()
            digest.update(f"{table}:{len(found)};".encode())
            for row in found:
                digest.update(repr(tuple(row)).encode())
        db.session.remove()
    return digest.hexdigest()


def counts(app) -> tuple[int, int, int]:
    with app.app_context():
        found = tuple(
            db.session.execute(
                text(
                    "SELECT (SELECT count(*) FROM children), (SELECT count(*) FROM child_texts), "
                    "(SELECT count(*) FROM feed_runs WHERE status = 'completed')"
                )
            ).one()
        )
        db.session.remove()
    return found


def failed_runs(app) -> list[tuple[str, str]]:
    with app.app_context():
        found = [
            tuple(r)
            for r in db.session.execute(
                text(
                    "SELECT status, reason FROM feed_runs WHERE status NOT IN ('completed') "
                    "ORDER BY id"
                )
            )
        ]
        db.session.remove()
    return found


def assert_clean_failure(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode not in (0, -9), output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for canary in CANARIES:
        assert canary not in output, f"the batch's text reached the output: {canary!r}"
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("Error: ") and "disk" in last.lower(), output[-3000:]
    return last


def check_disk_full_import(
    app, url: str, disk: Path, tmp_path: Path, backend: str, children: int
) -> None:
    """Shared by both databases: the batch overflows `disk`; then space is freed."""
    seed = tmp_path / "seed.jsonl"  # something already there, so "before" is not empty
    seed.write_bytes(Batch(batch="seed-1").add(*[child() for _ in range(5)]).bytes())
    assert feed_import(url, tmp_path, str(seed)).returncode == 0
    batch = tmp_path / "big.jsonl"
    batch.write_bytes(big_batch(children, "diskfull-1"))
    before, before_counts = signature(app), counts(app)
    filler = fill(disk)

    # (a) A file named on the command line.
    result = feed_import(url, tmp_path, str(batch))
    message = assert_clean_failure(result)
    assert signature(app) == before and counts(app) == before_counts  # nothing partial
    recorded = failed_runs(app)  # the history row is written in a transaction of its own
    assert [status for status, _ in recorded] == ["failed"], recorded
    assert "disk" in recorded[0][1] and not any(c in recorded[0][1] for c in CANARIES)

    # (b) The drop directory: the batch file must not be consumed by a failed import.
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copyfile(batch, drop / "big.jsonl")
    result = feed_import(url, tmp_path, FEED_DIR=str(drop))
    assert_clean_failure(result)
    assert (drop / "big.jsonl").exists(), "a failed import consumed the drop directory's batch"
    assert signature(app) == before and counts(app) == before_counts

    # Space is freed: the drop directory's batch is imported whole, once, and consumed;
    # the same batch named on the command line is then "already imported".
    filler.unlink()
    result = feed_import(url, tmp_path, FEED_DIR=str(drop))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert not (drop / "big.jsonl").exists()
    again = feed_import(url, tmp_path, str(batch))
    assert again.returncode == 0 and "already imported" in again.stdout, again.stdout
    assert counts(app) == (
        before_counts[0] + children,
        before_counts[1] + children,
        before_counts[2] + 1,
    )
    history = (
        f"{len(recorded)} failed run(s) recorded ({recorded[0][0]})"
        if recorded
        else "not recorded (no room even for the history row)"
    )
    METRICS.report(
        f"faults: disk full during an import ({backend}): exit / message / partial rows "
        "/ history / drop file kept / re-run imported once",
        f"non-zero / {message!r} / 0 / {history} / yes / yes",
    )


def test_sqlite_disk_full_during_import_fails_cleanly(app_factory, tmp_path, database):
    if database.backend != "sqlite":
        pytest.skip("the PostgreSQL case is its own test (a private cluster)")
    with small_disk(tmp_path / "disk", 24) as disk:
        path = disk / "donorhub.sqlite3"
        template = make_url(database.template_url).database
        shutil.copyfile(template, path)
        url = f"sqlite:///{path}"
        app = app_factory(SQLALCHEMY_DATABASE_URI=url)
        check_disk_full_import(app, url, disk, tmp_path, "sqlite", 1500)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.mark.slow  # a private PostgreSQL cluster: initdb, migrations, two imports (~1 min)
def test_postgresql_disk_full_during_import_fails_cleanly(app_factory, tmp_path, database):
    if database.backend != "sqlite":
        pytest.skip("runs once, on its own private cluster")
    from tests.system.stack import PrivatePostgres, migrate, postgres_bin

    require(
        postgres_bin(),
        "PostgreSQL's server programs (initdb, pg_ctl)",
        "the PostgreSQL disk-full test",
    )
    base = Path("/tmp") / f"donorhub-diskfull-{os.getpid()}"  # noqa: S108 - our own folder
    with small_disk(base / "disk", 24) as disk:
        cluster = PrivatePostgres(base / "cluster").init()
        cluster.start()
        try:
            if os.geteuid() == 0:
                shutil.chown(disk, "postgres")
            admin = create_engine(cluster.url(), poolclass=NullPool, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f"CREATE TABLESPACE small_disk LOCATION '{disk}'"))
                connection.execute(text("CREATE DATABASE donorhub_diskfull TABLESPACE small_disk"))
            admin.dispose()
            url = cluster.url("donorhub_diskfull")
            migrate(url)
            app = app_factory(SQLALCHEMY_DATABASE_URI=url)
            check_disk_full_import(app, url, disk, base, "postgresql", 3000)
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
        finally:
            cluster.stop("immediate")
    shutil.rmtree(base, ignore_errors=True)
