"""Rate limits hold across gunicorn workers when counters live in Redis (plan 7.2)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

from tests.helpers import free_port, require
from tests.metrics import METRICS

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_available() -> bool:
    parsed = urllib.parse.urlparse(REDIS_URL)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


def test_sign_in_limit_holds_across_two_gunicorn_workers(app, tmp_path):
    require(redis_available(), f"Redis at {REDIS_URL}", "the sign-in limit across gunicorn workers")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    port = free_port()
    env = {
        **os.environ,
        "DONORHUB_ENV": "development",
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "RATELIMIT_STORAGE_URI": REDIS_URL,
        "DONORHUB_INSTANCE_DIR": str(tmp_path),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "--access-logfile",
        "-",
        "wsgi:app",
    ]
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as server:
        try:
            base = f"http://127.0.0.1:{port}"
            # Until gunicorn answers (booting two workers on a busy machine takes a while);
            # the deadline only bounds a server that never comes up.
            deadline = time.monotonic() + 300
            while True:
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=2).close()  # noqa: S310
                    break
                except OSError:
                    assert time.monotonic() < deadline and server.poll() is None, (
                        "gunicorn never answered /healthz"
                    )
                    time.sleep(0.2)
            statuses, pids = [], set()
            for _ in range(40):
                jar = CookieJar()
                opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
                page = opener.open(base + "/account/sign-in").read().decode()
                token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
                data = urllib.parse.urlencode(
                    {
                        "csrf_token": token,
                        "email": "x@example.org",
                        "password": "wrong password here",
                    }
                ).encode()
                try:
                    response = opener.open(base + "/account/sign-in", data=data)
                    statuses.append(response.status)
                except urllib.error.HTTPError as error:
                    statuses.append(error.code)
                    error.close()
        finally:
            server.terminate()
            output = server.communicate(timeout=30)[0].decode(errors="replace")
    pids = set(re.findall(r"Booting worker with pid: (\d+)", output))
    before_first_429 = statuses.index(429)
    assert len(pids) == 2
    assert before_first_429 <= 10, statuses
    assert statuses[before_first_429:].count(429) == len(statuses) - before_first_429
    METRICS.report(
        "7.2 gunicorn workers / requests before first 429 (limit 10)",
        f"{len(pids)} / {before_first_429}",
    )
