"""The jobs process: one copy per database, jobs listed and runnable one at a time."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from donorhub.extensions import db
from donorhub.jobs.registry import JobSpec, run_job
from donorhub.mail.models import OutboxMessage
from donorhub.mail.services import queue_mail

ROOT = Path(__file__).resolve().parents[2]


def flask_env(app, tmp_path) -> dict[str, str]:
    env = {
        **os.environ,
        "FLASK_APP": "wsgi",
        "DONORHUB_ENV": "development",
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "DONORHUB_INSTANCE_DIR": str(tmp_path),
        "JOBS_MAIL_INTERVAL_SECONDS": "3600",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("FLASK_DEBUG", None)
    return env


def flask(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", *args]


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 300) -> str:
    """The line, as soon as the process prints it; `timeout` only bounds a process that hangs
    (starting Python and the app on a busy machine can take many seconds)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"{text!r} never appeared; output: {''.join(seen)[-2000:]}")


def test_a_second_jobs_process_refuses_to_start(app, tmp_path):
    env = flask_env(app, tmp_path)
    with subprocess.Popen(
        flask("jobs", "run"),
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as first:
        try:
            wait_for_line(first, "Jobs process started")
            second = subprocess.run(
                flask("jobs", "run"), cwd=ROOT, env=env, text=True, capture_output=True, timeout=300
            )
            assert second.returncode == 3
            assert "Another jobs process is already running" in second.stderr
        finally:
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=300)
        assert "Jobs process stopped." in first.stdout.read()
    with subprocess.Popen(
        flask("jobs", "run"),
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as third:
        try:
            wait_for_line(third, "Jobs process started")  # the lock died with its holder
        finally:
            third.kill()
            third.wait(timeout=300)


def test_jobs_list_shows_every_job_with_its_next_run(app, tmp_path):
    result = subprocess.run(
        flask("jobs", "list"),
        cwd=ROOT,
        env=flask_env(app, tmp_path),
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    with app.app_context():
        from donorhub.jobs.registry import all_jobs

        jobs = all_jobs()
    expected = {
        "purge_mail_throttle",
        "send_mail",
        "import_feed",
        "publish_releases",
        "shuffle_listing",
        "reconcile_stripe",
        "release_sponsorship_holds",
        "stop_collection_after_exits",
        "send_sponsor_exit_notices",
        "lapse_sponsorships",
        "publish_updates",
        "send_update_notifications",
    }
    assert {job.name for job in jobs} == expected  # a new job is added here on purpose
    listed = {line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()}
    assert listed == {job.name for job in jobs}
    for job in jobs:
        line = next(line for line in result.stdout.splitlines() if line.startswith(job.name))
        assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", line), line


def test_run_once_runs_one_job_and_unknown_names_fail_clearly(app, tmp_path, mailbox):
    env = flask_env(app, tmp_path)
    with app.app_context():
        queue_mail(
            "jobs@example.org",
            "accounts/password_changed",
            subject="From a job",
            name="J",
            reset_url="x",
        )
        db.session.commit()
    env.update(
        MAIL_DELIVERY="smtp", MAIL_PORT=str(app.config["MAIL_PORT"]), MAIL_SERVER="127.0.0.1"
    )
    result = subprocess.run(
        flask("jobs", "run-once", "send_mail"),
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert [m.subject for m in mailbox.messages] == ["From a job"]
    result = subprocess.run(
        flask("jobs", "run-once", "no_such_job"),
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "There is no job called 'no_such_job'; the jobs are: send_mail" in result.stderr


def test_a_failing_job_rolls_back_and_reports(app):
    def half_done_then_crash():
        queue_mail(
            "half@example.org", "accounts/password_changed", subject="Half", name="H", reset_url="x"
        )
        raise RuntimeError("crash mid-job")

    job = JobSpec(
        "crashy", half_done_then_crash, lambda: {"trigger": "interval", "seconds": 60}, "crashes"
    )
    assert run_job(app, job) is False
    with app.app_context():
        assert db.session.scalar(select(OutboxMessage)) is None
    ok = JobSpec("fine", lambda: "done", lambda: {"trigger": "interval", "seconds": 60}, "ok")
    assert run_job(app, ok) is True
