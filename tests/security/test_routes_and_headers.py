"""Every route: classified for access, protected by CSRF, sending strict headers."""

from __future__ import annotations

import hashlib
import re

import pytest
import time_machine
from sqlalchemy import text

from config import ProductionConfig
from donorhub.extensions import db
from donorhub.security import view_access
from tests.helpers import PASSWORD, csrf_token, current_totp, sign_in
from tests.metrics import METRICS
from tests.security.routes import all_routes, state_changing

#: Machine endpoints authenticate themselves and are the only ones without CSRF.
#: The Stripe webhook (signed by Stripe) and one-click unsubscribe (RFC 8058: mail providers
#: POST without a form token; the signed token in the address authenticates it).
CSRF_EXEMPT: set[str] = {"payments_webhook.receive", "updates.unsubscribe"}


def test_every_route_is_classified(app):
    unclassified = [r.endpoint for r in all_routes(app) if view_access(app, r.endpoint)[0] is None]
    assert unclassified == []
    METRICS.report("3.1 routes / unclassified", f"{len(all_routes(app))} / 0")


def test_an_unclassified_view_is_denied_to_everyone(app_factory):
    app = app_factory()
    app.add_url_rule("/forgotten", "forgotten", lambda: "leak")
    assert app.test_client().get("/forgotten").status_code == 403


def test_every_state_changing_route_requires_a_valid_csrf_token(app, make_user):
    user = make_user(roles=("admin",))
    accepted = []
    routes = state_changing(app)
    signed_in = app.test_client()
    sign_in(signed_in, user.email, totp_secret=user.totp_secret)
    stranger = app.test_client()
    foreign_token = csrf_token(stranger)
    expired_client = app.test_client()
    with time_machine.travel("2026-01-01 10:00:00+00:00", tick=False):
        expired_token = csrf_token(expired_client)
    for route in routes:
        if route.endpoint in CSRF_EXEMPT:
            continue
        for token in (None, foreign_token):
            data = {"email": user.email, "password": PASSWORD}
            if token:
                data["csrf_token"] = token
            if signed_in.post(route.url(), data=data).status_code != 400:
                accepted.append((route.rule, "missing" if token is None else "foreign"))
        with time_machine.travel("2026-01-01 11:00:01+00:00", tick=False):
            response = expired_client.post(route.url(), data={"csrf_token": expired_token})
            if response.status_code != 400:
                accepted.append((route.rule, "expired"))
    assert accepted == []
    METRICS.report(
        "5.1 state-changing routes / accepting bad tokens / exempt",
        f"{len(routes)} / 0 / {sorted(CSRF_EXEMPT)}",
    )


#: Reading safeguarding data is itself recorded (DESIGN.md section 3), so a GET may append
#: to the audit log, and only there.
READ_AUDIT_TABLES = {"audit_events"}


def database_signature(app) -> dict[str, str]:
    """A digest per table (the read-audit tables aside), so a failure names the table."""
    signature = {}
    with app.app_context():
        for table in db.metadata.sorted_tables:
            if table.name in READ_AUDIT_TABLES:
                continue
            rows = db.session.execute(text(f"SELECT * FROM {table.name} ORDER BY 1")).all()
            signature[table.name] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return signature


def test_no_get_changes_anything(app, make_user):
    admin = make_user(roles=("admin", "fundraiser", "safeguarding_officer"))
    client = app.test_client()
    sign_in(client, admin.email, totp_secret=admin.totp_secret)
    routes = [
        r for r in all_routes(app) if "GET" in r.methods and r.endpoint not in {"accounts.sign_out"}
    ]
    before = database_signature(app)
    with app.app_context():
        audit_before = db.session.execute(text("SELECT count(*) FROM audit_events")).scalar()
    for route in routes:
        client.get(route.url()).close()
    after = database_signature(app)
    assert [name for name in before if before[name] != after[name]] == []
    with app.app_context():
        actions = (
            db.session.execute(text("SELECT action FROM audit_events ORDER BY id"))
            .scalars()
            .all()[audit_before:]
        )
    assert all(action.endswith(("_viewed", "_revealed")) for action in actions), actions
    METRICS.report("5.2 GET routes walked as staff / database changes", f"{len(routes)} / 0")


def header_problems(response, *, signed_in: bool, production: bool) -> list[str]:
    problems = []
    csp = response.headers.get("Content-Security-Policy", "")
    for directive in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
        if directive not in csp:
            problems.append(f"CSP lacks {directive}")
    script_src = re.search(r"script-src ([^;]+)", csp)
    if not script_src or "unsafe" in script_src.group(1):
        problems.append("script-src missing or unsafe")
    if response.headers.get("X-Content-Type-Options") != "nosniff":
        problems.append("nosniff")
    if not response.headers.get("Referrer-Policy"):
        problems.append("Referrer-Policy")
    if signed_in and "no-store" not in response.headers.get("Cache-Control", ""):
        problems.append("no-store")
    if production:
        hsts = response.headers.get("Strict-Transport-Security", "")
        age = re.search(r"max-age=(\d+)", hsts)
        if not age or int(age.group(1)) < 31536000 or "includeSubDomains" not in hsts:
            problems.append("HSTS")
    for header in ("Server", "X-Powered-By"):
        if re.search(r"\d", response.headers.get(header, "")):
            problems.append(f"{header} shows a version")
    return problems


class ProductionLikeConfig(ProductionConfig):
    """Production's headers and cookies, on the test database (SQLite is refused otherwise)."""

    @staticmethod
    def check(config):
        return None


def test_security_headers_on_every_response(app_factory, make_user, backend):
    app = app_factory(
        ProductionLikeConfig,
        SECRET_KEY="x" * 40,
        TESTING=True,
        RATELIMIT_STORAGE_URI="memory://",
        MAIL_DELIVERY="hold",
    )
    roles = {
        "anonymous": None,
        "donor": make_user(),
        "staff": make_user(roles=("admin", "fundraiser", "safeguarding_officer")),
    }
    checked, problems = 0, []
    for role, user in roles.items():
        client = app.test_client(use_cookies=True)
        base = "https://localhost"
        if user is not None:
            page = client.get(f"{base}/account/sign-in")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))[1]
            response = client.post(
                f"{base}/account/sign-in",
                headers={"Referer": base + "/"},
                data={"csrf_token": token, "email": user.email, "password": PASSWORD},
            )
            if user.totp_secret:
                page = client.get(f"{base}/account/two-factor")
                token = re.search(
                    r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)
                )[1]
                client.post(
                    f"{base}/account/two-factor",
                    headers={"Referer": base + "/"},
                    data={"csrf_token": token, "code": current_totp(user.totp_secret)},
                )
        urls = [r.url() for r in all_routes(app) if "GET" in r.methods] + [
            "/no-such-page",
            "/_testing/boom",
            "/static/css/site.css",
        ]
        for url in urls:
            response = client.get(base + url)
            response.close()
            checked += 1
            problems += [
                (role, url, p)
                for p in header_problems(
                    response,
                    signed_in=user is not None and not url.startswith("/static"),
                    production=True,
                )
            ]
        response = client.put(base + "/")
        assert response.status_code == 405
        problems += [
            (role, "PUT /", p) for p in header_problems(response, signed_in=False, production=True)
        ]
    assert problems == []
    METRICS.report("6.1 responses checked / missing or weak headers", f"{checked} / 0")


def test_production_cookie_flags(app_factory, make_user):
    app = app_factory(
        ProductionLikeConfig, SECRET_KEY="x" * 40, TESTING=True, RATELIMIT_STORAGE_URI="memory://"
    )
    user = make_user()
    client = app.test_client()
    base = "https://localhost"
    page = client.get(f"{base}/account/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))[1]
    response = client.post(
        f"{base}/account/sign-in",
        headers={"Referer": base + "/"},
        data={"csrf_token": token, "email": user.email, "password": PASSWORD, "remember": "on"},
    )
    cookies = response.headers.getlist("Set-Cookie") + page.headers.getlist("Set-Cookie")
    violations = []
    for cookie in cookies:
        name = cookie.split("=", 1)[0]
        lowered = cookie.lower()
        for flag in ("secure", "httponly", "samesite=lax", "path=/"):
            if flag not in lowered:
                violations.append((name, flag))
        if "domain=" in lowered:
            violations.append((name, "domain"))
        if not name.startswith("__Host-"):
            violations.append((name, "__Host- prefix"))
    assert {c.split("=", 1)[0] for c in cookies} == {"__Host-session", "__Host-remember"}
    assert violations == []
    METRICS.report("2.5 cookies checked / flag violations", f"{len(cookies)} / 0")


def test_error_pages_leak_nothing_and_carry_the_request_id(app, client, log_guard):
    log_guard.watch("sk_test_boom", "postgres://u:p@db/x")
    response = client.get("/_testing/boom")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    request_id = response.headers["X-Request-ID"]
    assert request_id in page
    for leak in ("Traceback", "RuntimeError", "sk_test_boom", "postgres://", "secret detail"):
        assert leak not in page
    assert any(request_id in record and "unhandled error" in record for record in log_guard.records)
    missing = client.get("/no/such/page", headers={"Accept": "application/json"})
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    assert missing.get_json()["request_id"] == missing.headers["X-Request-ID"]


def test_security_events_are_structured_and_free_of_personal_data(app, make_user, log_guard):
    import json

    user = make_user()
    client = app.test_client()
    attacker_name = 'evil\r\n{"event": "forged"}@example.org'
    client.post("/account/sign-in", data={"email": user.email, "password": "x"})  # no CSRF
    token = csrf_token(client)
    client.post(
        "/account/sign-in",
        data={"csrf_token": token, "email": attacker_name, "password": "wrong password here"},
    )
    sign_in(client, user.email)
    client.get("/staff")
    expected = {"csrf_failure", "sign_in_failed", "sign_in_succeeded", "authorization_denied"}
    events = []
    for record in log_guard.records:
        parsed = json.loads(record)
        if parsed.get("logger") == "donorhub.security":
            events.append(parsed)
    seen = {e["message"] for e in events}
    assert expected <= seen
    assert "forged" not in seen
    assert all(len(record.splitlines()) == 1 for record in log_guard.records)
    METRICS.report(
        "9.2 security events expected / logged / log-injection splits",
        f"{len(expected)} / {len(expected & seen)} / 0",
    )


def test_production_refuses_unsafe_settings():
    import secrets

    import pytest

    from config import DEVELOPMENT_SECRET_KEY, UnsafeConfiguration
    from donorhub import create_app

    # Overrides of create_app: the same checks from the environment alone, as production
    # really starts, are in test_production_environment.py.
    # Random, not literals: any secret written in the repository counts as published.
    safe = {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://x/y",
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(32),
        "RATELIMIT_STORAGE_URI": "redis://x:6379/0",
        "PUBLIC_BASE_URL": "https://x.example",
        "STRIPE_SECRET_KEY": "sk_live_x",
        "DEBUG": False,
        "MAIL_DELIVERY": "smtp",
        "FEED_PSEUDONYM_KEY": secrets.token_urlsafe(48),
    }
    unsafe = {
        "missing SECRET_KEY": {"SECRET_KEY": ""},
        "no pseudonym key": {"FEED_PSEUDONYM_KEY": ""},
        "plain-HTTP feed": {"FEED_URL": "http://partner.example/feed.jsonl"},
        "short SECRET_KEY": {"SECRET_KEY": "short-key"},
        "default SECRET_KEY": {"SECRET_KEY": DEVELOPMENT_SECRET_KEY},
        "DEBUG on": {"DEBUG": True},
        "SQLite": {"SQLALCHEMY_DATABASE_URI": "sqlite:///x.db"},
        "no webhook secret": {"STRIPE_WEBHOOK_SECRET": ""},
        "no Stripe key": {"STRIPE_SECRET_KEY": ""},
        "memory rate limits": {"RATELIMIT_STORAGE_URI": "memory://"},
        "published webhook secret": {"STRIPE_WEBHOOK_SECRET": "whsec_development_only"},
        "one-character webhook secret": {"STRIPE_WEBHOOK_SECRET": "x"},
        "SECRET_KEY of one character": {"SECRET_KEY": "k" * 48},
        "plain-HTTP PUBLIC_BASE_URL": {"PUBLIC_BASE_URL": "http://127.0.0.1:5000"},
        "rate limits off": {"RATELIMIT_ENABLED": False},
        "mail held": {"MAIL_DELIVERY": "hold"},
        "Stripe test key": {"STRIPE_SECRET_KEY": "sk_test_x"},
    }
    started = 0
    for name, change in unsafe.items():
        with pytest.raises(UnsafeConfiguration) as raised:
            create_app(ProductionConfig, **{**safe, **change})
        message = str(raised.value)
        assert message.endswith(".") and len(message) < 200, name
        started += 0
    app = create_app(ProductionConfig, **safe)
    assert app.config["HSTS"] is True
    METRICS.report("9.5 unsafe production configs tried / started", f"{len(unsafe)} / {started}")


def test_database_errors_do_not_carry_values_into_logs(app, log_guard, backend):
    """A failed statement's values (names, e-mails, texts) must not reach a log record, neither
    through SQLAlchemy's parameters nor through the database's own error detail."""
    import logging

    from sqlalchemy.exc import IntegrityError

    from donorhub.accounts.models import User

    log_guard.watch("Planted Fullname Canary", "Second Planted Canary", "dup@example.org")
    with app.app_context():
        db.session.add(
            User(email="dup@example.org", full_name="Planted Fullname Canary", password_hash="x")
        )
        db.session.commit()
        for duplicate in (
            User(email="dup@example.org", full_name="Second Planted Canary", password_hash="x"),
            User(email="other@example.org", full_name=None, password_hash="x"),
        ):
            db.session.add(duplicate)
            try:
                db.session.commit()
            except IntegrityError:
                logging.getLogger("donorhub.test").exception("handler failed")
            else:
                raise AssertionError("the insert should have failed")
            db.session.rollback()
    assert any("handler failed" in record for record in log_guard.records)
    # log_guard fails this test at teardown if any watched value reached a record.


def test_the_error_page_works_and_keeps_its_headers_when_the_database_is_gone(
    app, make_user, backend, tmp_path
):
    """A database outage fails every request, and the error page itself needs the database
    (the signed-in person is loaded for the layout): it must still be our page, with the
    request id and every security header, never the server's bare one."""
    import os

    from sqlalchemy.engine import make_url

    if backend != "sqlite":
        pytest.skip(
            "the outage is made by taking the SQLite file away; "
            "tests/system/test_postgres_restart.py stops a real PostgreSQL server"
        )
    user = make_user()
    client = app.test_client()
    sign_in(client, user.email)
    assert client.get("/account").status_code == 200
    path = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database
    with app.app_context():
        db.engine.dispose()
    os.replace(path, tmp_path / "away.sqlite3")  # a new connection finds an empty database
    try:
        for url, headers in (
            ("/account", {}),
            ("/", {}),
            ("/donate", {"Accept": "application/json"}),
        ):
            response = client.get(url, headers=headers)
            body = response.get_data(as_text=True)
            assert response.status_code == 500, (url, response.status_code)
            assert header_problems(response, signed_in=True, production=False) == [], url
            assert response.headers["X-Request-ID"] in body
            assert "Traceback" not in body and "sqlite" not in body.lower()
    finally:
        with app.app_context():
            db.engine.dispose()
        os.replace(tmp_path / "away.sqlite3", path)
