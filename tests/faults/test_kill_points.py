"""The test-only kill points (donorhub/park_for_kill.py): a process parks where a test says and
waits there; production never parks and refuses to start with the settings present."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from config import ProductionConfig, TestingConfig, UnsafeConfiguration
from donorhub import create_app, park_for_kill
from tests.faults.test_jobs_killed import ROOT, job_env, start
from tests.kill_points import ParkingSpot

# Settings production accepts (random secrets: a literal in the repository counts as published).
SAFE_PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(48),
    "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://x/y",
    "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(32),
    "RATELIMIT_STORAGE_URI": "redis://x:6379/0",
    "PUBLIC_BASE_URL": "https://x.example",
    "MAIL_DELIVERY": "smtp",
    "STRIPE_SECRET_KEY": "sk_live_x",
    "DEBUG": False,
    "FEED_PSEUDONYM_KEY": secrets.token_urlsafe(48),
}
PARK = {
    "DONORHUB_TEST_PARK_AT": "before-commit",
    "DONORHUB_TEST_PARK_NTH": "1",
    "DONORHUB_TEST_PARK_SOCKET": "/nonexistent/donorhub-park-socket",
}


def test_production_refuses_to_start_with_a_kill_point_set(monkeypatch, tmp_path):
    for name, value in PARK.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UnsafeConfiguration, match="DONORHUB_TEST_PARK_AT is set"):
        create_app(ProductionConfig, **SAFE_PRODUCTION)
    # A real production process (the jobs process, from its environment) refuses too.
    env = {
        **os.environ,
        **PARK,
        "FLASK_APP": "wsgi",
        "DONORHUB_ENV": "production",
        "DONORHUB_INSTANCE_DIR": str(tmp_path),
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": "postgresql+psycopg://x/y",
    }
    result = subprocess.run(
        [sys.executable, "-m", "flask", "jobs", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "DONORHUB_TEST_PARK_AT is set" in result.stderr, result.stderr[-2000:]
    monkeypatch.delenv("DONORHUB_TEST_PARK_AT")
    create_app(ProductionConfig, **SAFE_PRODUCTION)  # without it, the same settings start


def test_kill_points_are_ignored_in_production(monkeypatch):
    assert park_for_kill.plan_from_environment({**PARK, "DONORHUB_ENV": "production"}) is None
    # Even if a production app were built past its check, it would not park: the socket
    # does not exist, so an attempt to park would raise.
    for name, value in PARK.items():
        monkeypatch.setenv(name, value)
    app = create_app(TestingConfig)
    try:
        assert park_for_kill.active()
        app.config["ENV_NAME"] = "production"
        park_for_kill.install(app)
        assert not park_for_kill.active()
        park_for_kill.arrive("before-commit")
    finally:
        monkeypatch.undo()
        park_for_kill.install(create_app(TestingConfig))
    assert not park_for_kill.active()


def test_without_the_setting_nothing_parks():
    assert park_for_kill.plan_from_environment({}) is None
    assert park_for_kill.plan_from_environment({"DONORHUB_TEST_PARK_AT": " "}) is None
    park_for_kill.install(create_app(TestingConfig))
    assert not park_for_kill.active()
    park_for_kill.arrive("before-commit")  # returns at once


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"DONORHUB_TEST_PARK_AT": "halfway"}, "must be one of stripe-call, before-commit"),
        ({"DONORHUB_TEST_PARK_NTH": "0"}, "must be a whole number from 1"),
        ({"DONORHUB_TEST_PARK_NTH": "two"}, "must be a whole number from 1"),
        ({"DONORHUB_TEST_PARK_SOCKET": ""}, "must name the test's Unix socket"),
    ],
)
def test_incomplete_kill_point_settings_fail_clearly(change, says):
    with pytest.raises(park_for_kill.ParkingSettingsError, match=says):
        park_for_kill.plan_from_environment({**PARK, **change})


def test_a_parked_process_waits_there_until_the_test_lets_it_go(app, tmp_path):
    """The jobs process parks as the job starts and stays parked, not running on, until the
    test releases it; then it finishes normally."""
    env = job_env(app, tmp_path)
    with ParkingSpot() as spot:
        process, log = start(
            {**env, **spot.env("job-start", match="publish_updates")},
            tmp_path,
            "jobs",
            "run-once",
            "publish_updates",
        )
        try:
            line = spot.wait(process)
            assert line is not None and line.startswith("parked job-start 1 "), line
            assert line.endswith(" publish_updates")
            assert process.poll() is None  # still there, waiting
            assert "job finished" not in log.read_text()
            spot.release()
            assert process.wait(timeout=120) == 0, log.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=120)
