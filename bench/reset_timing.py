"""Benchmark: does a password-reset request take the same time whether or not the address has
an account? (It should: the same work is done, see accounts.services.request_password_reset.)

    .venv/bin/python bench/reset_timing.py [--pairs 300] [--database-url URL]

Builds the app (TestingConfig, but argon2 is not involved in a reset request) on a scratch
database: a fresh SQLite file by default, or an empty PostgreSQL database given by
--database-url (it is wiped: DROP SCHEMA public CASCADE). Creates one verified account, then
posts the reset form through Flask's test client in interleaved pairs (the account's
address, then an unknown one, the order alternating), so noise from the shared machine falls
on both alike. Rate limits are off and the per-recipient mail cap is raised, so every known
request really queues its mail (the most work that path can do). Prints the median and
quartiles of each, and the ratio of the medians (known / unknown), which should be close to
1.0. Before the fix it was 1.5 (6.8 vs 4.5 ms on PostgreSQL behind gunicorn).

This is a benchmark, not a test: the test suite checks the same thing without a clock
(tests/accounts/test_account_abuse.py: the same statements and functions run for both).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from config import TestingConfig  # noqa: E402
from donorhub import create_app  # noqa: E402
from donorhub.extensions import db  # noqa: E402


def build_app(url: str):
    from flask_migrate import upgrade

    if url.startswith("postgresql"):
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    app = create_app(
        TestingConfig,
        SQLALCHEMY_DATABASE_URI=url,
        RATELIMIT_ENABLED=False,
        MAIL_PER_RECIPIENT_PER_HOUR=10**9,
        LOG_LEVEL="WARNING",
    )
    with app.app_context():
        upgrade()
    return app


def make_account(app) -> str:
    from donorhub.accounts import passwords
    from donorhub.accounts.models import User
    from donorhub.database import utcnow

    with app.app_context():
        user = User(
            email="known.donor@example.org",
            full_name="Known Donor",
            password_hash=passwords.hash_password("bench password long enough"),
            email_verified_at=utcnow(),
        )
        db.session.add(user)
        db.session.commit()
        return user.email


def measure(app, known: str, pairs: int) -> tuple[list[float], list[float]]:
    client = app.test_client()
    page = client.get("/account/forgot-password").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

    def one(email: str) -> float:
        started = time.perf_counter()
        response = client.post(
            "/account/forgot-password", data={"csrf_token": token, "email": email}
        )
        spent = time.perf_counter() - started
        assert response.status_code == 200, response.status_code
        return spent * 1000

    for n in range(20):  # warm up: templates compiled, connections pooled
        one(known), one(f"warm{n}@example.org")
    known_ms, unknown_ms = [], []
    for n in range(pairs):
        unknown = f"nobody{n}@example.org"
        if n % 2:
            known_ms.append(one(known))
            unknown_ms.append(one(unknown))
        else:
            unknown_ms.append(one(unknown))
            known_ms.append(one(known))
    return known_ms, unknown_ms


def describe(values: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return f"median {median:.2f} ms (p25 {q1:.2f}, p75 {q3:.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = (
            args.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
            if args.database_url
            else f"sqlite:///{scratch}/reset-bench.sqlite3"
        )
        app = build_app(url)
        known = make_account(app)
        known_ms, unknown_ms = measure(app, known, args.pairs)
        with app.app_context():
            db.engine.dispose()
    ratio = statistics.median(known_ms) / statistics.median(unknown_ms)
    print(f"database: {url.split(':', 1)[0]}, {args.pairs} interleaved pairs")
    print(f"known address:   {describe(known_ms)}")
    print(f"unknown address: {describe(unknown_ms)}")
    print(f"ratio of medians (known / unknown): {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
