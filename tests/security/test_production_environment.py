"""Production starts from its environment, and refuses unsafe values, as deploy.md runs it.

Every case here is a separate process that gets nothing but environment variables (no
`create_app` overrides, no inherited environment): `import wsgi`, as gunicorn and the
`flask` commands load the app. A refusal must end the process with a non-zero status and
one sentence naming the setting, and no traceback.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import config
from config import KNOWN_TEST_KEYS, ProductionConfig, UnsafeConfiguration
from tests.helpers import free_port, require
from tests.metrics import METRICS

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def safe_environment() -> dict[str, str]:
    """What deploy.md asks for, with fresh random secrets."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DONORHUB_ENV": "production",
        "FLASK_APP": "wsgi",
        "DATABASE_URL": "postgresql+psycopg://donorhub_app:pw@db.invalid/donorhub",
        "PUBLIC_BASE_URL": "https://give.example.org",
        "PROXY_COUNT": "1",
        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/14",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "FEED_PSEUDONYM_KEY": secrets.token_urlsafe(48),
        "STRIPE_SECRET_KEY": "sk_live_" + secrets.token_urlsafe(32),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(32),
        "LOG_LEVEL": "WARNING",
    }


PROBE = (
    "import wsgi; from donorhub.payments.gateway import get_gateway\n"
    "with wsgi.app.app_context(): g = get_gateway()\n"
    "c = wsgi.app.config\n"
    "print('STARTED', c['ENV_NAME'], c['HSTS'], c['MAX_CONTENT_LENGTH'], "
    "g.client._requestor._options.base_addresses['api'])"
)


def start(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


#: name -> (environment changes, None to unset; the setting the refusal must name)
UNSAFE: dict[str, tuple[dict[str, str | None], str]] = {
    "SECRET_KEY unset": ({"SECRET_KEY": None}, "SECRET_KEY"),
    "SECRET_KEY short": ({"SECRET_KEY": "Zx8-q3JtV0pM2rN7"}, "SECRET_KEY"),
    "SECRET_KEY of development": ({"SECRET_KEY": config.DEVELOPMENT_SECRET_KEY}, "SECRET_KEY"),
    "SECRET_KEY of the tests": ({"SECRET_KEY": config.TESTING_SECRET_KEY}, "SECRET_KEY"),
    "SECRET_KEY one character": ({"SECRET_KEY": "a" * 48}, "SECRET_KEY"),
    "SECRET_KEY low variety": ({"SECRET_KEY": "abcd" * 12}, "SECRET_KEY"),
    "FLASK_DEBUG on": ({"FLASK_DEBUG": "1"}, "DEBUG"),
    "DATABASE_URL unset (SQLite)": ({"DATABASE_URL": None}, "DATABASE_URL"),
    "PUBLIC_BASE_URL unset (http://127.0.0.1:5000)": ({"PUBLIC_BASE_URL": None}, "PUBLIC_BASE_URL"),
    "PUBLIC_BASE_URL plain http": (
        {"PUBLIC_BASE_URL": "http://give.example.org"},
        "PUBLIC_BASE_URL",
    ),
    "STRIPE_WEBHOOK_SECRET unset": ({"STRIPE_WEBHOOK_SECRET": None}, "STRIPE_WEBHOOK_SECRET"),
    "STRIPE_WEBHOOK_SECRET of development": (
        {"STRIPE_WEBHOOK_SECRET": "whsec_development_only"},
        "STRIPE_WEBHOOK_SECRET",
    ),
    "STRIPE_WEBHOOK_SECRET of the tests": (
        {"STRIPE_WEBHOOK_SECRET": "whsec_testing_only"},
        "STRIPE_WEBHOOK_SECRET",
    ),
    "STRIPE_WEBHOOK_SECRET one character": (
        {"STRIPE_WEBHOOK_SECRET": "x"},
        "STRIPE_WEBHOOK_SECRET",
    ),
    "STRIPE_WEBHOOK_SECRET short": (
        {"STRIPE_WEBHOOK_SECRET": "whsec_Qm3vT8yL1nB5"},
        "STRIPE_WEBHOOK_SECRET",
    ),
    "STRIPE_WEBHOOK_SECRET repeated": (
        {"STRIPE_WEBHOOK_SECRET": "whsec_" + "a" * 40},
        "STRIPE_WEBHOOK_SECRET",
    ),
    "STRIPE_WEBHOOK_SECRET without whsec_": (
        {"STRIPE_WEBHOOK_SECRET": secrets.token_urlsafe(32)},
        "STRIPE_WEBHOOK_SECRET",
    ),
    "STRIPE_SECRET_KEY unset": ({"STRIPE_SECRET_KEY": None}, "STRIPE_SECRET_KEY"),
    "STRIPE_SECRET_KEY sk_test_": (
        {"STRIPE_SECRET_KEY": "sk_test_" + "k" * 24},
        "STRIPE_SECRET_KEY",
    ),
    "STRIPE_SECRET_KEY rk_test_": (
        {"STRIPE_SECRET_KEY": "rk_test_" + "k" * 24},
        "STRIPE_SECRET_KEY",
    ),
    "STRIPE_SECRET_KEY not a secret key": (
        {"STRIPE_SECRET_KEY": "pk_live_" + "k" * 24},
        "STRIPE_SECRET_KEY",
    ),
    "STRIPE_API_BASE with a live key": (
        {"STRIPE_API_BASE": "http://127.0.0.1:12111", "ALLOW_STRIPE_TEST_MODE": "true"},
        "STRIPE_API_BASE",
    ),
    "FEED_PSEUDONYM_KEY unset": ({"FEED_PSEUDONYM_KEY": None}, "FEED_PSEUDONYM_KEY"),
    "FEED_PSEUDONYM_KEY of development": (
        {"FEED_PSEUDONYM_KEY": config.DEVELOPMENT_PSEUDONYM_KEY},
        "FEED_PSEUDONYM_KEY",
    ),
    "FEED_PSEUDONYM_KEY one character": ({"FEED_PSEUDONYM_KEY": "p" * 40}, "FEED_PSEUDONYM_KEY"),
    "FEED_URL plain http": ({"FEED_URL": "http://partner.example/feed.jsonl"}, "FEED_URL"),
    "RATELIMIT_ENABLED off": ({"RATELIMIT_ENABLED": "false"}, "RATELIMIT_ENABLED"),
    "RATELIMIT_STORAGE_URI unset (memory)": (
        {"RATELIMIT_STORAGE_URI": None},
        "RATELIMIT_STORAGE_URI",
    ),
    "MAIL_DELIVERY hold": ({"MAIL_DELIVERY": "hold"}, "MAIL_DELIVERY"),
    "SECRET_KEY_FALLBACKS with a published key": (
        {"SECRET_KEY_FALLBACKS": f"{secrets.token_urlsafe(48)},{config.DEVELOPMENT_SECRET_KEY}"},
        "SECRET_KEY_FALLBACKS",
    ),
    "SECRET_KEY_FALLBACKS with a short key": (
        {"SECRET_KEY_FALLBACKS": "old-key-123"},
        "SECRET_KEY_FALLBACKS",
    ),
    "MAX_CONTENT_LENGTH 0 (no limit)": ({"MAX_CONTENT_LENGTH": "0"}, "MAX_CONTENT_LENGTH"),
}


def changed(env: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    env = dict(env)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def test_production_starts_from_its_environment_alone():
    """The documented environment starts production, the real pseudonym key included (the
    development class used to read the same variable into the list of published keys)."""
    env = safe_environment()
    result = start(env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [
        "STARTED",
        "production",
        "True",
        str(2 * 1024 * 1024),
        "https://api.stripe.com",
    ], result.stdout
    # Stripe's test mode only with the explicit setting; then the simulator may stand in.
    test_mode = changed(
        env,
        {
            "STRIPE_SECRET_KEY": "sk_test_" + secrets.token_urlsafe(24),
            "ALLOW_STRIPE_TEST_MODE": "true",
            "STRIPE_API_BASE": "http://127.0.0.1:12111",
        },
    )
    result = start(test_mode)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "http://127.0.0.1:12111"


def test_production_refuses_unsafe_environments():
    env = safe_environment()
    started, refusals = [], {}
    for name, (changes, setting) in UNSAFE.items():
        result = start(changed(env, changes))
        if result.returncode == 0:
            started.append(name)
            continue
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        assert "Traceback" not in result.stderr, (name, result.stderr[-2000:])
        assert len(lines) == 1, (name, result.stderr[-2000:])
        message = lines[0].removeprefix("config.UnsafeConfiguration: ")
        assert message != lines[0], (name, lines[0])
        refusals[name] = message
        # One sentence that names the setting.
        assert message.startswith(setting) or f" {setting} " in message, (name, message)
        assert message.endswith(".") and len(message) < 220, (name, message)
        for value in changes.values():  # a refusal never repeats a secret
            if value and len(value) > 20:
                assert value not in message, name
    assert started == []
    METRICS.report(
        "9.5 unsafe production environments tried / started (separate processes)",
        f"{len(UNSAFE)} / 0",
    )


def test_every_webhook_secret_in_the_repository_is_refused():
    """Any whsec_ value written anywhere in the repository is published: production refuses
    each, whether it is on the list of published values or caught by the length rule."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found = set()
    for name in files:
        path = ROOT / name
        if path.suffix in {".png", ".ico", ".woff2", ".dump", ".gz"} or not path.is_file():
            continue
        found |= set(re.findall(r"whsec_[A-Za-z0-9_\-]+", path.read_text(errors="ignore")))
    found |= {k for k in KNOWN_TEST_KEYS if k.startswith("whsec_")}
    base = {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "PUBLIC_BASE_URL": "https://x.example",
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://x/y",
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE_URI": "redis://x:6379/0",
        "MAIL_DELIVERY": "smtp",
        "STRIPE_SECRET_KEY": "sk_live_x",
        "FEED_PSEUDONYM_KEY": secrets.token_urlsafe(48),
        "MAX_CONTENT_LENGTH": 1,
    }
    accepted = []
    for value in sorted(found):
        try:
            ProductionConfig.check({**base, "STRIPE_WEBHOOK_SECRET": value})
            accepted.append(value)
        except UnsafeConfiguration as error:
            assert "STRIPE_WEBHOOK_SECRET" in str(error)
    assert len(found) >= 5 and accepted == []
    METRICS.report(
        "9.5 whsec_ values in the repository / accepted by production", f"{len(found)} / 0"
    )


# The processes deploy.md runs, from the environment alone -----------------------------------


def postgres_available() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def test_migrations_jobs_and_gunicorn_start_from_the_production_environment(tmp_path):
    require(
        postgres_available(),
        "PostgreSQL on 127.0.0.1:5432",
        "starting production from its environment",
    )
    from tests.system.stack import drop_database, fresh_database

    name = "donorhub_production_environment"
    url = fresh_database(name)
    env = {**safe_environment(), "DATABASE_URL": url, "DONORHUB_INSTANCE_DIR": str(tmp_path)}
    try:
        upgrade = subprocess.run(
            [PYTHON, "-m", "flask", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert upgrade.returncode == 0, upgrade.stderr[-3000:]

        # The jobs process starts, holds its lock, and stops on SIGTERM with status 0.
        log = (tmp_path / "jobs.log").open("wb")
        jobs = subprocess.Popen(
            [PYTHON, "-m", "flask", "jobs", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while "Jobs process started" not in (tmp_path / "jobs.log").read_text():
                assert jobs.poll() is None, (tmp_path / "jobs.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the jobs process did not start"
                time.sleep(0.1)
        finally:
            jobs.send_signal(signal.SIGTERM)
            status = jobs.wait(timeout=30)
            log.close()
        output = (tmp_path / "jobs.log").read_text()
        assert status == 0 and "Jobs process stopped." in output, output[-3000:]

        # gunicorn with the documented configuration file.
        port = free_port()
        web = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "-c",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "wsgi:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    response = urllib.request.urlopen(  # noqa: S310 - loopback
                        f"http://127.0.0.1:{port}/healthz", timeout=2
                    )
                    break
                except OSError:
                    assert web.poll() is None, "gunicorn exited"
                    assert time.monotonic() < deadline, "gunicorn did not answer"
                    time.sleep(0.2)
            body = response.read().decode()
            headers = response.headers
        finally:
            os.killpg(web.pid, signal.SIGTERM)
            web.wait(timeout=30)
        assert body.strip() == '{"status":"ok"}'
        assert "production" not in body
        assert "gunicorn" not in (headers.get("Server") or "").lower()
        assert headers["Strict-Transport-Security"].startswith("max-age=63072000")
    finally:
        drop_database(name)


def test_gunicorn_refuses_to_serve_an_unsafe_production_environment(tmp_path):
    """A refusal stops gunicorn itself (worker boot error, non-zero), rather than workers
    being restarted for ever, and its log carries the one sentence."""
    env = {
        **safe_environment(),
        "STRIPE_WEBHOOK_SECRET": "whsec_development_only",
        "DONORHUB_INSTANCE_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "--workers",
            "1",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3  # gunicorn's "Worker failed to boot"
    assert "STRIPE_WEBHOOK_SECRET is a value published in this repository" in result.stderr
    assert "Traceback" not in result.stderr
