"""Rotating SECRET_KEY with the old key in SECRET_KEY_FALLBACKS keeps the staff recovery
codes (stored as an HMAC under the secret key) working; the fallbacks are read from the
environment, comma-separated (production checks each like SECRET_KEY: see
tests/security/test_production_environment.py)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from config import TESTING_SECRET_KEY
from tests.accounts.test_second_factor import enrol, give_code, start_sign_in

ROOT = Path(__file__).resolve().parents[2]


def test_secret_key_fallbacks_are_read_from_the_environment():
    old, older = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SECRET_KEY_FALLBACKS": f" {old} ,{older},",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import config; "
            "print(config.DevelopmentConfig.SECRET_KEY_FALLBACKS == "
            "config.ProductionConfig.SECRET_KEY_FALLBACKS == "
            f"[{old!r}, {older!r}])",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip() == "True", result.stderr[-2000:]


def test_a_recovery_code_made_under_the_old_key_works_after_a_rotation(
    app_factory, make_user, log_guard
):
    app = app_factory()  # SECRET_KEY: the testing key, which is "the old key" here
    staff = make_user(roles=("admin",), totp=False)
    _client, secret, codes = enrol(app, staff)
    log_guard.watch(secret, *codes)
    new_key = secrets.token_urlsafe(48)

    # Rotated without the fallback: the codes are void (docs/deploy.md says so).
    forgotten = app_factory(SECRET_KEY=new_key, SECRET_KEY_FALLBACKS=[])
    assert give_code(start_sign_in(forgotten, staff.email), codes[0]).status_code == 422

    rotated = app_factory(SECRET_KEY=new_key, SECRET_KEY_FALLBACKS=[TESTING_SECRET_KEY])
    assert give_code(start_sign_in(rotated, staff.email), codes[0]).headers["Location"] == "/staff"
    again = start_sign_in(rotated, staff.email)
    assert give_code(again, codes[0]).status_code == 422, "a recovery code worked twice"
