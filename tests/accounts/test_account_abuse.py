"""Abuse of the account pages: guessing the current password with a stolen session, a reset
request that reveals accounts by the work it does, mail floods at one person from many
addresses, and unverified text in mail to an unconfirmed address."""

from __future__ import annotations

import re
import sys
from datetime import timedelta

from sqlalchemy import event, select

from donorhub.accounts.models import MailThrottle, User
from donorhub.database import utcnow
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from tests.helpers import PASSWORD, csrf_token, post_form, sign_in
from tests.metrics import METRICS

REAUTH_PAGES = [
    ("/account/email", {"email": "elsewhere@example.org"}),
    (
        "/account/password",
        {"password": "a brand new long password", "password_confirm": "a brand new long password"},
    ),
    ("/account/delete", {}),
]


def outbox(app, template: str | None = None) -> list[OutboxMessage]:
    with app.app_context():
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if template:
            query = query.where(OutboxMessage.template == template)
        return list(db.session.scalars(query))


# Re-entering the current password ---------------------------------------------------------


def test_wrong_current_passwords_end_every_session_of_the_account(app_factory, make_user):
    app = app_factory(RATELIMIT_ENABLED=False)  # the count alone, without the rate limits
    user = make_user()
    thief, owner = app.test_client(), app.test_client()
    sign_in(thief, user.email)
    sign_in(owner, user.email)
    statuses = []
    for n in range(app.config.get("REAUTH_MAX_FAILURES", 5)):
        url, form = REAUTH_PAGES[n % 3]
        statuses.append(
            post_form(
                thief, url, {**form, "current_password": f"guess {n} xxxx"}, token_page="/account"
            ).status_code
        )
    assert statuses == [422] * 4 + [302]
    assert thief.get("/account").status_code == 302, "the guessing session survived"
    assert owner.get("/account").status_code == 302, "the other sessions survived"
    with app.app_context():
        assert db.session.get(User, user.id).email == user.email  # nothing changed
    # The owner signs in again as usual; the count starts afresh.
    assert sign_in(app.test_client(), user.email).status_code == 302
    METRICS.report(
        "L-4 wrong current passwords that end every session of the account",
        app.config.get("REAUTH_MAX_FAILURES", 5),
    )


def test_current_password_is_limited_per_account_and_per_address(app_factory, make_user):
    app = app_factory(REAUTH_MAX_FAILURES=10_000)  # the limits alone, without the count
    user = make_user()
    thief = app.test_client()
    sign_in(thief, user.email)
    statuses = []
    for n in range(8):  # each guess from a new address: only the account limit can bite
        thief.environ_base["REMOTE_ADDR"] = f"198.51.100.{n + 1}"
        url, form = REAUTH_PAGES[n % 3]
        statuses.append(
            post_form(
                thief, url, {**form, "current_password": f"guess {n} xxxx"}, token_page="/account"
            ).status_code
        )
    assert statuses == [422] * 5 + [429] * 3
    # Per address too: another account, guessing from one address.
    other = make_user()
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    sign_in(client, other.email)
    per_address = [
        post_form(
            client, "/account/delete", {"current_password": "wrong wrong"}, token_page="/account"
        ).status_code
        for _ in range(7)
    ]
    assert per_address == [422] * 5 + [429] * 2


# Reset timing -------------------------------------------------------------------------------


class Trace:
    """The SQL statements (parameters left out) and the DonorHub functions that one request
    runs, in order."""

    def __init__(self, app):
        self.app = app
        self.statements: list[str] = []
        self.calls: list[str] = []

    def _statement(self, _conn, _cursor, statement, *_args):
        self.statements.append(re.sub(r"\s+", " ", statement).strip())

    def _profile(self, frame, what, _arg):
        if what == "call":
            module = frame.f_globals.get("__name__", "")
            # Column types (donorhub.database) run inside SQLAlchemy once per row read: the
            # account row, when found, is decoded. Not a code path of ours; the statements
            # account for that row.
            if module.startswith("donorhub.") and module != "donorhub.database":
                self.calls.append(f"{module}.{frame.f_code.co_name}")

    def post(self, client, url: str, data: dict):
        token = csrf_token(client, url)
        with self.app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", self._statement)
        sys.setprofile(self._profile)
        try:
            return client.post(url, data={**data, "csrf_token": token})
        finally:
            sys.setprofile(None)
            event.remove(engine, "before_cursor_execute", self._statement)


def test_reset_runs_the_same_code_for_known_and_unknown_addresses(app_factory, make_user):
    """No clock: the same statements and the same functions run whether or not the address
    has an account; the only difference is whether the savepoint holding the finished mail
    is released (kept) or rolled back."""
    app = app_factory(RATELIMIT_ENABLED=False)
    user = make_user()
    client = app.test_client()
    for email in (user.email, "warm.up@example.org"):  # templates compiled, caches filled
        post_form(
            client,
            "/account/forgot-password",
            {"email": email},
            token_page="/account/forgot-password",
        )
    known, unknown = Trace(app), Trace(app)
    assert known.post(client, "/account/forgot-password", {"email": user.email}).status_code == 200
    assert (
        unknown.post(
            client, "/account/forgot-password", {"email": "nobody.here@example.org"}
        ).status_code
        == 200
    )

    # The message is written in both cases, inside a savepoint that only an account keeps.
    differ = [(a, b) for a, b in zip(known.statements, unknown.statements, strict=True) if a != b]
    assert [(a.split()[0], b.split()[:2]) for a, b in differ] == [("RELEASE", ["ROLLBACK", "TO"])]
    assert any(s.startswith("INSERT INTO outbox_messages") for s in unknown.statements)
    assert known.calls == unknown.calls
    for function in (
        "tokens.make_token",
        "mail.services.render_mail",
        "mail.services.add_to_outbox",
        "services.recipient_mail_allowed",
    ):
        assert any(call.endswith(function) for call in unknown.calls), function
    assert [m.recipient for m in outbox(app, "accounts/reset")].count(user.email) == 2
    assert "nobody.here@example.org" not in {m.recipient for m in outbox(app)}
    METRICS.report(
        "L-3 reset: statements / DonorHub calls, known vs unknown address",
        f"{len(known.statements)} vs {len(unknown.statements)} (1 differs: RELEASE "
        f"vs ROLLBACK TO) / {len(known.calls)} vs {len(unknown.calls)} (0 differ)",
    )


# Mail floods at one person ------------------------------------------------------------------


def test_reset_and_already_registered_mail_is_capped_per_recipient(app_factory, make_user):
    app = app_factory(PROXY_COUNT=1)
    victim = make_user()
    statuses = []
    for n in range(12):  # each request from its own client address, through the proxy
        for url, form in (
            ("/account/forgot-password", {"email": victim.email}),
            (
                "/account/register",
                {
                    "full_name": "Someone",
                    "email": victim.email,
                    "password": PASSWORD,
                    "password_confirm": PASSWORD,
                },
            ),
        ):
            client = app.test_client()
            headers = {"X-Forwarded-For": f"198.51.{n}.{len(statuses) + 1}"}
            page = client.get(url, headers=headers)
            token = re.search(
                r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)
            ).group(1)
            statuses.append(
                client.post(url, data={**form, "csrf_token": token}, headers=headers).status_code
            )
    assert set(statuses) == {200}, "every request is answered the same"
    mails = [m.template for m in outbox(app) if m.recipient == victim.email]
    cap = app.config.get("MAIL_PER_RECIPIENT_PER_HOUR", 3)
    assert mails.count("accounts/reset") == cap
    assert mails.count("accounts/already_registered") == cap
    with app.app_context():
        stored = db.session.execute(select(db.metadata.tables["mail_throttle"])).all()
    assert stored and not any(victim.email in str(row) for row in stored)
    METRICS.report(
        "L-5 mails to one address from 24 requests from 24 addresses",
        f"{len(mails)} (cap {cap} per kind per hour)",
    )


def test_the_purge_job_deletes_mail_counts_past_their_window_and_keeps_recent_ones(app):
    """Counts of an address never asked for again do not stay for ever; recent counts stay
    and still count."""
    from donorhub.accounts import services
    from donorhub.jobs.registry import find_job, run_job

    now = utcnow()
    with app.app_context():
        for age in (timedelta(hours=1, minutes=1), timedelta(days=30)):
            services.recipient_mail_allowed("gone@example.org", "reset", now=now - age)
        for _ in range(3):
            services.recipient_mail_allowed(
                "kept@example.org", "reset", now=now - timedelta(minutes=50)
            )
        db.session.commit()
        db.session.remove()
    assert run_job(app, find_job("purge_mail_throttle"))
    with app.app_context():
        left = db.session.scalars(select(MailThrottle.recipient_hash)).all()
        assert left == [services.recipient_hash("kept@example.org")] * 3
        assert not services.recipient_mail_allowed("kept@example.org", "reset", now=now)
        db.session.rollback()
        db.session.remove()


# Unverified text in mail --------------------------------------------------------------------


def test_a_name_with_a_link_is_refused_at_registration(app_factory):
    client = app_factory(RATELIMIT_ENABLED=False).test_client()
    for name in (
        "Jo. Update your card at https://evil.example/x",
        "see www.evil.example",
        "evil.example://x",
        "HTTP is fun",
        "ｗｗｗ.evil.example",
    ):
        response = post_form(
            client,
            "/account/register",
            {
                "full_name": name,
                "email": "jo@example.org",
                "password": PASSWORD,
                "password_confirm": PASSWORD,
            },
        )
        assert response.status_code == 422, name
        assert "without a web address" in response.get_data(as_text=True)
    ok = post_form(
        client,
        "/account/register",
        {
            "full_name": "Jo O'Hara-Smith",
            "email": "jo@example.org",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
    )
    assert ok.status_code == 200


def test_no_mail_to_an_unconfirmed_address_carries_the_name_typed(app, make_user):
    """Walks every account mail that can reach an address nobody has confirmed: the name
    typed at registration (attacker's text) appears in none of them."""
    canary = "Canary Phishtext"
    client = app.test_client()
    post_form(
        client,
        "/account/register",
        {
            "full_name": canary,
            "email": "victim@example.org",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
    )
    post_form(client, "/account/forgot-password", {"email": "victim@example.org"})
    sign_in(client, "victim@example.org")
    post_form(
        client,
        "/account/email",
        {"email": "second.victim@example.org", "current_password": PASSWORD},
        token_page="/account",
    )
    post_form(
        client,
        "/account/password",
        {
            "current_password": PASSWORD,
            "password": "a brand new long password",
            "password_confirm": "a brand new long password",
        },
        token_page="/account",
    )
    sign_in(client, "victim@example.org", "a brand new long password")
    post_form(
        client,
        "/account/delete",
        {"current_password": "a brand new long password"},
        token_page="/account",
    )
    mails = outbox(app)
    templates = sorted({m.template for m in mails})
    assert templates == [
        "accounts/confirm_new_email",
        "accounts/deletion_requested",
        "accounts/deletion_to_staff",
        "accounts/email_change_requested",
        "accounts/password_changed",
        "accounts/reset",
        "accounts/verify",
    ]
    carrying = [m.template for m in mails if canary in m.text_body or canary in (m.html_body or "")]
    assert carrying == []
    # Once the owner confirms the address, mail may greet them by the name on the account.
    verified = make_user(name="Verified Person")
    post_form(app.test_client(), "/account/forgot-password", {"email": verified.email})
    reset = [m for m in outbox(app, "accounts/reset") if m.recipient == verified.email]
    assert reset[0].text_body.startswith("Hello Verified Person,")
    METRICS.report(
        "L-6 account mails to unconfirmed addresses carrying the typed name",
        f"0 of {len(templates)} kinds",
    )
