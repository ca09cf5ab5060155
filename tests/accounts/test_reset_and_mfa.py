"""Password reset links, e-mail change, two-factor sign-in for staff, rate limits."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pyotp
import time_machine
from sqlalchemy import func, select

from donorhub.accounts.models import DataRequest, User
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from tests.helpers import PASSWORD, csrf_token, post_form, sign_in
from tests.metrics import METRICS

NEW_PASSWORD = "another long and fresh password"  # noqa: S105


def last_link(app, template: str, recipient: str | None = None) -> str:
    with app.app_context():
        query = select(OutboxMessage).where(OutboxMessage.template == template)
        if recipient:
            query = query.where(OutboxMessage.recipient == recipient)
        message = db.session.scalars(query.order_by(OutboxMessage.id.desc())).first()
        assert message is not None, f"no {template} mail"
        return re.search(r"http://donorhub.test(/\S+)", message.text_body).group(1)


def use_reset_link(client, link: str, password: str = NEW_PASSWORD):
    client.get(link)
    form_page = client.get("/account/reset")
    if form_page.status_code != 200:
        return form_page
    token = csrf_token(client, "/account/reset")
    return client.post(
        "/account/reset",
        data={"csrf_token": token, "password": password, "password_confirm": password},
    )


def test_reset_token_properties(app, make_user, log_guard):
    user = make_user()
    held = {}
    client = app.test_client()

    post_form(client, "/account/forgot-password", {"email": user.email})
    link = last_link(app, "accounts/reset")
    log_guard.watch(link.rsplit("/", 1)[1])
    other_device = app.test_client()
    sign_in(other_device, user.email)
    # Signing in after the link was sent makes it stale (Warehouse's rule).
    held["dies after sign-in"] = use_reset_link(client, link).status_code == 400

    post_form(client, "/account/forgot-password", {"email": user.email})
    link = last_link(app, "accounts/reset")
    log_guard.watch(link.rsplit("/", 1)[1])
    # Not the last character: base64's last character can carry unused bits, so changing it
    # may decode to the same signature.
    flipped = "A" if link[-2] != "A" else "B"
    tampered = link[:-2] + flipped + link[-1]
    held["tampered refused"] = use_reset_link(app.test_client(), tampered).status_code == 400
    response = client.get(link)
    held["token leaves the address bar"] = response.headers["Location"] == "/account/reset"
    page = client.get("/account/reset")
    held["no-referrer"] = page.headers["Referrer-Policy"] == "no-referrer"
    response = use_reset_link(client, link)
    held["works once"] = response.status_code == 302
    held["not signed in afterwards"] = client.get("/account").status_code == 302
    held["second use refused"] = use_reset_link(app.test_client(), link).status_code == 400
    held["other sessions ended"] = other_device.get("/account").status_code == 302

    with time_machine.travel(datetime.now(UTC), tick=False) as clock:
        post_form(client, "/account/forgot-password", {"email": user.email})
        link = last_link(app, "accounts/reset")
        log_guard.watch(link.rsplit("/", 1)[1])
        clock.shift(3601)
        held["expires after an hour"] = use_reset_link(app.test_client(), link).status_code == 400

    someone = make_user()
    post_form(client, "/account/forgot-password", {"email": someone.email})
    their_link = last_link(app, "accounts/reset", someone.email)
    log_guard.watch(their_link.rsplit("/", 1)[1])
    use_reset_link(app.test_client(), their_link, "someone else's new password")
    with app.app_context():
        held["only their own account changes"] = (
            db.session.get(User, user.id).password_hash
            != db.session.get(User, someone.id).password_hash
        )

    assert sign_in(app.test_client(), user.email, NEW_PASSWORD).status_code == 302
    failed = [name for name, ok in held.items() if not ok]
    assert not failed, failed
    METRICS.report("8.1 reset token properties holding", f"{len(held)}/{len(held)}")


def test_reset_link_ignores_the_host_header(app, make_user):
    user = make_user()
    client = app.test_client()
    page = client.get("/account/forgot-password", headers={"Host": "evil.example"})
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))[1]
    response = client.post(
        "/account/forgot-password",
        headers={"Host": "evil.example"},
        data={"csrf_token": token, "email": user.email},
    )
    assert response.status_code == 200
    with app.app_context():
        body = db.session.scalar(select(OutboxMessage.text_body))
    assert "evil.example" not in body and "http://donorhub.test/account/reset/" in body


def test_reset_and_registration_do_not_enumerate(app, make_user):
    user = make_user()
    client = app.test_client()
    differences = 0
    pairs = [
        ("/account/forgot-password", {"email": user.email}, {"email": "nobody@example.org"}),
        (
            "/account/register",
            {
                "full_name": "X",
                "email": user.email,
                "password": PASSWORD,
                "password_confirm": PASSWORD,
            },
            {
                "full_name": "X",
                "email": "nobody2@example.org",
                "password": PASSWORD,
                "password_confirm": PASSWORD,
            },
        ),
    ]
    strip = lambda r: re.sub(r'value="[^"]*"', "", r.get_data(as_text=True))  # noqa: E731
    for url, known, unknown in pairs:
        a, b = post_form(client, url, known), post_form(client, url, unknown)
        differences += (a.status_code != b.status_code) + (strip(a) != strip(b))
    assert differences == 0
    with app.app_context():
        resets = db.session.scalars(
            select(OutboxMessage.recipient).where(OutboxMessage.template == "accounts/reset")
        ).all()
    assert resets == [user.email]
    METRICS.report("1.5 response differences across enumeration pairs", differences)


def test_staff_need_a_second_factor_before_any_staff_page(app, make_user):
    officer = make_user(roles=("safeguarding_officer",))
    client = app.test_client()
    response = post_form(client, "/account/sign-in", {"email": officer.email, "password": PASSWORD})
    assert response.headers["Location"] == "/account/two-factor"
    staff_routes = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/staff") and "GET" in rule.methods and "<" not in rule.rule
    ]
    reachable = sum(client.get(path).status_code == 200 for path in staff_routes)
    assert reachable == 0
    assert client.get("/account").status_code == 302  # not signed in at all yet
    code = pyotp.TOTP(officer.totp_secret).now()
    token = csrf_token(client, "/account/two-factor")
    response = client.post("/account/two-factor", data={"csrf_token": token, "code": code})
    assert response.headers["Location"] == "/staff"
    assert client.get("/staff").status_code == 200
    METRICS.report(
        "1.6 staff routes reachable without the second factor", f"0 of {len(staff_routes)}"
    )


def test_totp_codes_cannot_be_replayed_or_used_late(app, make_user):
    officer = make_user(roles=("admin",))
    totp = pyotp.TOTP(officer.totp_secret)
    with time_machine.travel(datetime(2026, 11, 28, 9, 0, 5, tzinfo=UTC), tick=False) as clock:
        first = app.test_client()
        assert sign_in(first, officer.email, totp_secret=officer.totp_secret).status_code == 302
        code = totp.now()
        replay = app.test_client()
        post_form(replay, "/account/sign-in", {"email": officer.email, "password": PASSWORD})
        token = csrf_token(replay, "/account/two-factor")
        response = replay.post("/account/two-factor", data={"csrf_token": token, "code": code})
        assert response.status_code == 422, "a code was accepted twice"
        clock.shift(31)
        token = csrf_token(replay, "/account/two-factor")
        late = totp.at(datetime.now(UTC).timestamp() - 31)
        response = replay.post("/account/two-factor", data={"csrf_token": token, "code": late})
        assert response.status_code == 422, "a code older than 30 s was accepted"
        response = replay.post(
            "/account/two-factor", data={"csrf_token": token, "code": totp.now()}
        )
        assert response.status_code == 302


def test_a_code_of_the_previous_step_works_once_and_one_two_steps_back_fails(app, make_user):
    """A code read at the end of its 30 seconds and submitted after them still works (one
    step of drift), once; a code two steps old never does."""
    officer = make_user(roles=("admin",))
    totp = pyotp.TOTP(officer.totp_secret)

    def give(code: str) -> int:
        client = app.test_client()
        post_form(client, "/account/sign-in", {"email": officer.email, "password": PASSWORD})
        return client.post(
            "/account/two-factor",
            data={"csrf_token": csrf_token(client, "/account/two-factor"), "code": code},
        ).status_code

    with time_machine.travel(datetime(2026, 11, 28, 9, 0, 1, tzinfo=UTC), tick=False):
        now = datetime.now(UTC).timestamp()
        assert give(totp.at(now - 60)) == 422, "a code two steps old was accepted"
        assert give(totp.at(now - 30)) == 302, "the previous step's code was refused"
        assert give(totp.at(now - 30)) == 422, "the previous step's code worked twice"
        assert give(totp.now()) == 302  # the current step is still unused
        assert give(totp.at(now - 30)) == 422  # and now nothing older can be used


def test_first_staff_sign_in_enrols_an_authenticator(app, make_user):
    newcomer = make_user(roles=("fundraiser",), totp=False)
    client = app.test_client()
    response = post_form(
        client, "/account/sign-in", {"email": newcomer.email, "password": PASSWORD}
    )
    assert response.headers["Location"] == "/account/two-factor/setup"
    page = client.get("/account/two-factor/setup").get_data(as_text=True)
    assert "<svg" in page
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
    token = csrf_token(client, "/account/two-factor/setup")
    response = client.post(
        "/account/two-factor/setup", data={"csrf_token": token, "code": "000000"}
    )
    assert response.status_code == 422
    response = client.post(
        "/account/two-factor/setup", data={"csrf_token": token, "code": pyotp.TOTP(secret).now()}
    )
    # Signed in; the recovery codes are shown once, then the way on to the staff area.
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert len(re.findall(r"<li><code>[a-z2-9]{5}-[a-z2-9]{5}</code></li>", page)) == 10
    assert 'href="/staff"' in page
    assert client.get("/staff").status_code == 200
    with app.app_context():
        assert db.session.get(User, newcomer.id).totp_secret == secret


def test_sign_in_is_throttled_per_address_not_per_account(app, make_user):
    user = make_user()
    client = app.test_client()
    statuses = []
    for _ in range(20):
        token = csrf_token(client)
        statuses.append(
            client.post(
                "/account/sign-in",
                data={"csrf_token": token, "email": user.email, "password": "wrong" * 4},
            ).status_code
        )
    first_429 = statuses.index(429) + 1
    assert set(statuses[: first_429 - 1]) == {422}
    elsewhere = app.test_client()
    token = csrf_token(elsewhere)
    response = elsewhere.post(
        "/account/sign-in",
        data={"csrf_token": token, "email": user.email, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert response.status_code == 302, "the real owner was locked out"
    METRICS.report("7.1 first 429 at attempt / owner from elsewhere", f"#{first_429} / signed in")


def test_reset_and_registration_are_throttled(app, make_user):
    user = make_user()
    client = app.test_client()
    reset_statuses = [
        post_form(client, "/account/forgot-password", {"email": user.email}).status_code
        for _ in range(50)
    ]
    signup_statuses = [
        post_form(
            client,
            "/account/register",
            {
                "full_name": "Bot",
                "email": f"bot{n}@example.org",
                "password": PASSWORD,
                "password_confirm": PASSWORD,
            },
        ).status_code
        for n in range(50)
    ]
    with app.app_context():
        sent = db.session.scalar(select(func.count()).select_from(OutboxMessage))
    assert reset_statuses.count(200) == 5 and signup_statuses.count(200) == 5
    # Five resets pass the address limit, and three of them (the cap per recipient and
    # hour) send mail to that one person; each sign-up is a new address, one mail each.
    assert sent == app.config["MAIL_PER_RECIPIENT_PER_HOUR"] + 5
    METRICS.report(
        "7.3 e-mails sent / 429s for 50 resets + 50 sign-ups",
        f"{sent} / {reset_statuses.count(429) + signup_statuses.count(429)}",
    )


def test_email_change_needs_the_new_address_confirmed(app, make_user):
    user = make_user()
    client = app.test_client()
    sign_in(client, user.email)
    response = post_form(
        client,
        "/account/email",
        {"email": "moved@example.org", "current_password": PASSWORD},
        token_page="/account",
    )
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(User, user.id).email == user.email
        notified = db.session.scalars(select(OutboxMessage.recipient)).all()
    assert set(notified) == {user.email, "moved@example.org"}
    link = last_link(app, "accounts/confirm_new_email")
    assert client.get(link).status_code == 302
    with app.app_context():
        assert db.session.get(User, user.id).email == "moved@example.org"
    assert client.get(link).status_code == 400  # the old address is gone: single use


def test_wrong_password_blocks_email_change_and_deletion(app, make_user):
    user = make_user()
    client = app.test_client()
    sign_in(client, user.email)
    for url, form in [("/account/email", {"email": "x@example.org"}), ("/account/delete", {})]:
        response = post_form(
            client, url, {**form, "current_password": "wrong" * 4}, token_page="/account"
        )
        assert response.status_code == 422
        assert "Your current password is not right." in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(DataRequest)) == 0


def test_deletion_request_is_recorded_and_acknowledged(app, make_user):
    user = make_user()
    client = app.test_client()
    sign_in(client, user.email)
    for _ in range(2):
        post_form(client, "/account/delete", {"current_password": PASSWORD}, token_page="/account")
    with app.app_context():
        requests = db.session.scalars(select(DataRequest)).all()
        assert [(r.user_id, r.kind.value, r.status.value) for r in requests] == [
            (user.id, "erasure", "requested")
        ]
        templates = db.session.scalars(select(OutboxMessage.template)).all()
    assert templates.count("accounts/deletion_requested") == 1
    assert "You asked us to delete your account" in client.get("/account").get_data(as_text=True)
