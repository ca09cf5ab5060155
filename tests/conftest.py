"""Fixtures: every app test runs on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL.

Isolation is by real data, not by a wrapping transaction, so tests can commit, run threads
and subprocesses and still start clean: SQLite gets a fresh copy of a migrated file per test;
PostgreSQL is truncated after each test.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from config import TestingConfig
from donorhub import create_app
from donorhub.extensions import db
from tests.helpers import PASSWORD, MailSink

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")


def pytest_configure(config):
    from tests.helpers import in_ci

    if in_ci() and not TEST_DATABASE_URL:
        raise pytest.UsageError("CI=true but TEST_DATABASE_URL is not set: the PostgreSQL "
                                "half of every test would not run (.ci/run sets it)")
BACKENDS = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class TestDatabase:
    backend: str
    template_url: str
    directory: Path

    def url_for_test(self, name: str) -> str:
        if self.backend == "sqlite":
            path = self.directory / f"{name}.sqlite3"
            shutil.copyfile(make_url(self.template_url).database, path)
            return f"sqlite:///{path}"
        return self.template_url


def normalised_pg_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1) \
        if url.startswith("postgresql://") else url


def migrate_to_head(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url)
    with app.app_context():
        upgrade()
        db.engine.dispose()


def truncate_all(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        tables = [table.name for table in db.metadata.sorted_tables]
        connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database(request, tmp_path_factory) -> Iterator[TestDatabase]:
    directory = tmp_path_factory.mktemp(f"db-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'template.sqlite3'}"
    else:
        url = normalised_pg_url(TEST_DATABASE_URL)
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as connection:  # start from nothing, whatever a crash left
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    migrate_to_head(url)
    yield TestDatabase(request.param, url, directory)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[MailSink, int]]:
    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's chatter
    sink = MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


@pytest.fixture
def mailbox(smtp_server) -> MailSink:
    sink, _port = smtp_server
    sink.messages.clear()
    return sink


@pytest.fixture
def app_factory(database, smtp_server, request):
    """Build apps on this test's database; extra settings as keyword arguments."""
    _sink, port = smtp_server
    url = database.url_for_test(request.node.name.replace("/", "_")[:80])
    apps = []

    def build(config_class=TestingConfig, **overrides):
        settings = {"SQLALCHEMY_DATABASE_URI": url, "MAIL_PORT": port,
                    "MAIL_SERVER": "127.0.0.1"}
        settings.update(overrides)
        app = create_app(config_class, **settings)
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    if database.backend == "postgresql":
        truncate_all(url)


@pytest.fixture
def app(app_factory):
    return app_factory()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def backend(database) -> str:
    return database.backend


@pytest.fixture
def make_user(app, log_guard):
    """Create an account directly (verified unless told otherwise)."""
    from donorhub.accounts import passwords
    from donorhub.accounts.models import StaffRole, User, UserRole
    from donorhub.database import utcnow

    counter = iter(range(1, 10_000))

    def make(email: str | None = None, *, password: str = PASSWORD, verified: bool = True,
             roles: tuple[str, ...] = (), totp: bool | None = None, name: str = "Test Person"):
        import pyotp

        email = email or f"person{next(counter)}@example.org"
        log_guard.watch(email, password)
        with app.app_context():
            user = User(email=email, full_name=name,
                        password_hash=passwords.hash_password(password),
                        email_verified_at=utcnow() if verified else None)
            for role in roles:
                user.roles.append(UserRole(role=StaffRole(role)))
            if totp if totp is not None else bool(roles):
                user.totp_secret = pyotp.random_base32()
                log_guard.watch(user.totp_secret)
            db.session.add(user)
            db.session.commit()
            user_id, secret = user.id, user.totp_secret
        return UserHandle(user_id, email, password, secret)

    return make


@dataclass(frozen=True)
class UserHandle:
    id: int
    email: str
    password: str
    totp_secret: str | None


# Logs: every record of every test is checked for the secrets and personal data it saw --------

@dataclass
class LogGuard:
    records: list[str] = field(default_factory=list)
    canaries: set[str] = field(default_factory=set)

    def watch(self, *values: str | None) -> None:
        self.canaries.update(v for v in values if v and len(v) >= 6)

    def leaks(self) -> list[str]:
        return sorted({c for c in self.canaries for r in self.records if c in r})


class _CollectingHandler(logging.Handler):
    def __init__(self, guard: LogGuard):
        super().__init__(logging.DEBUG)
        self.guard = guard

    def emit(self, record: logging.LogRecord) -> None:
        from donorhub.logs import RedactingJsonFormatter

        formatted = RedactingJsonFormatter("{levelname}{name}{message}{request_id}",
                                           style="{", rename_fields={"name": "logger"})
        self.guard.records.append(formatted.format(record))


LOG_STATS = {"records": 0, "tests": 0}


@pytest.fixture(autouse=True)
def log_guard() -> Iterator[LogGuard]:
    """Fails any test whose logs contain a password, token, e-mail or secret it used."""
    guard = LogGuard()
    guard.watch(PASSWORD, TestingConfig.SECRET_KEY, TestingConfig.STRIPE_WEBHOOK_SECRET)
    handler = _CollectingHandler(guard)
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    yield guard
    root.removeHandler(handler)
    root.setLevel(previous)
    LOG_STATS["records"] += len(guard.records)
    LOG_STATS["tests"] += 1
    leaks = guard.leaks()
    assert not leaks, f"{len(leaks)} secret or personal value(s) reached the logs"


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(
        f"log guard: {LOG_STATS['records']} log records from {LOG_STATS['tests']} tests "
        "scanned for passwords, tokens, e-mails and secrets; hits: 0")
    from tests.metrics import METRICS

    if METRICS:
        terminalreporter.section("security and reliability figures")
        for name, value in METRICS.items():
            terminalreporter.write_line(f"{name}: {value}")
        METRICS.dump()
