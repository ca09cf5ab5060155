"""`make profile` (bench/profile.py): py-spy's samples of a gunicorn worker under wrk become a
flame graph and a text report whose shares add up, with the time a worker waits for the next
request kept apart from the time it spends on one."""

from __future__ import annotations

import os
import shutil
import subprocess

from bench.profile import py_spy, summarise
from tests.bench.test_harness import redis_answers
from tests.helpers import require
from tests.system.stack import PYTHON, ROOT, SERVER_PG
from tests.system.test_load_smoke import postgres_answers

GUNICORN = (
    "_run_module_as_main (<frozen runpy>);<module> (gunicorn/__main__.py);"
    "SyncWorker.run_for_one (gunicorn/workers/sync.py)"
)
FLASK = (
    f"{GUNICORN};SyncWorker.handle_request (gunicorn/workers/sync.py);Flask.wsgi_app (flask/app.py)"
)
HOME = f"{FLASK};home (donorhub/main/views.py)"
RAW = "\n".join(
    [
        f"{GUNICORN};SyncWorker.wait (gunicorn/workers/sync.py) 50",
        f"{HOME};campaign_totals (donorhub/campaigns/services.py);"
        "Connection.wait (psycopg/connection.py) 30",
        f"{HOME};render_template (flask/templating.py);Context.call (jinja2/runtime.py) 15",
        f"{HOME} 5",
    ]
)


def test_report_counts_shares_of_the_time_on_requests_only():
    report = summarise(RAW)

    assert report.startswith("100 samples; 50 (50%) waiting for a request, 50 on requests"), report
    own = report.split("top 20 functions by own time:")[1].split("\n\n")[0]
    assert own.split("\n")[1:] == [
        "   60.0%  Connection.wait (psycopg/connection.py)",
        "   30.0%  Context.call (jinja2/runtime.py)",
        "   10.0%  home (donorhub/main/views.py)",
    ]
    packages = report.split("own time by package")[1].split("\n\n")[0]
    assert "60.0%  psycopg" in packages and "30.0%  jinja2" in packages
    app = report.split("top 20 of DonorHub's functions")[1].split("\n\n")[0]
    assert app.split("\n")[1:] == [
        "  100.0%  home (donorhub/main/views.py)",
        "   60.0%  campaign_totals (donorhub/campaigns/services.py)",
    ]


def test_profile_writes_a_flame_graph_and_a_report(tmp_path):
    why = "the profile smoke test"
    require(py_spy(), "py-spy (make bench-tools)", why)
    require(shutil.which("wrk"), "wrk (make bench-tools)", why)
    require(postgres_answers(), f"PostgreSQL at {SERVER_PG}", why)
    require(redis_answers(), "Redis at 127.0.0.1:6379", why)
    result = subprocess.run(
        [
            PYTHON,
            "bench/profile.py",
            "/healthz",
            "--seconds",
            "2",
            "--out",
            str(tmp_path),
            "--database-name",
            f"donorhub_bench_profile_smoke_{os.getpid()}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    assert (tmp_path / "profile-healthz.svg").read_text().lstrip().startswith("<?xml")
    report = (tmp_path / "profile-healthz.txt").read_text()
    assert "GET /healthz" in report and "statuses {'200':" in report
    assert "healthz (donorhub/main/views.py)" in report
