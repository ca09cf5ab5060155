"""The load benchmark (bench/load.py) runs end to end: 2 s of wrk per target against gunicorn
on PostgreSQL, every target answered without an error, and the webhook's work checked in the
database. Its figures are not asserted (2 s on a shared machine means nothing); that it runs,
and fails loudly on any error, is what this test keeps true."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import pytest
from sqlalchemy.engine import make_url

from tests.helpers import require
from tests.system.stack import PYTHON, ROOT, SERVER_PG

TARGETS = [
    "baseline /healthz",
    "home",
    "donate",
    "campaign page",
    "sponsor list",
    "child profile",
    "impact",
    "sign-in, wrong password",
    "webhook",
]


def postgres_answers() -> bool:
    server = make_url(SERVER_PG)
    try:
        with socket.create_connection((server.host or "127.0.0.1", server.port or 5432), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _load_tools():
    why = "the load benchmark's smoke test"
    require(shutil.which("wrk"), "wrk (apt-get install wrk, or make bench-tools)", why)
    require(postgres_answers(), f"PostgreSQL at {SERVER_PG}", why)


def test_load_benchmark_reports_every_target_without_an_error(tmp_path):
    report = tmp_path / "load.json"
    # --cheap-hashes: with production argon2 a 2-second sign-in run completes next to
    # nothing on 2 shared cores; the sign-in path is the same, only the hash is cheaper.
    command = [
        PYTHON,
        "bench/load.py",
        "--duration",
        "2",
        "--cheap-hashes",
        "--json",
        str(report),
        "--database-name",
        f"donorhub_load_smoke_{os.getpid()}",
    ]
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,  # noqa: S603
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]

    figures = json.loads(report.read_text())
    targets = {t["name"]: t for t in figures["targets"]}
    assert list(targets) == TARGETS
    for name, target in targets.items():
        assert target["requests"] > 0, f"{name}: no request completed"
        assert target["errors"] == 0, f"{name}: {target}"
        assert target["requests_per_s"] > 0 and target["p99_ms"] >= target["p50_ms"] > 0, name
        assert name in result.stdout, f"{name} is missing from the printed table"
    assert set(targets["sign-in, wrong password"]["statuses"]) == {"422"}

    webhook = figures["webhook"]
    assert webhook["problems"] == [], webhook["problems"]
    assert webhook["applied_under_load"] > 0, "wrk's deliveries applied no event"
    completed = webhook["gifts_paid"] + webhook["gifts_refunded"] + webhook["plans_active"]
    assert completed > 0, "no seeded gift or plan was completed by the webhook"
    assert "WEBHOOK CHECK FAILED" not in result.stdout
