"""Registration, e-mail verification and the password policy."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from donorhub.accounts.models import User
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.mail.sender import send_due_mail
from tests.helpers import PASSWORD, post_form
from tests.metrics import METRICS


def register(client, email="new.donor@example.org", password=PASSWORD, **extra):
    form = {
        "full_name": "New Donor",
        "email": email,
        "password": password,
        "password_confirm": password,
        **extra,
    }
    return post_form(client, "/account/register", form)


def outbox(app, template=None):
    with app.app_context():
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if template:
            query = query.where(OutboxMessage.template == template)
        return [(m.recipient, m.template, m.text_body) for m in db.session.scalars(query)]


def test_registration_creates_an_unverified_account_and_queues_a_verification_link(app, client):
    response = register(client, email="  New.Donor@Example.org ")
    assert response.status_code == 200
    assert "Check your inbox" in response.get_data(as_text=True)
    with app.app_context():
        user = db.session.scalar(select(User))
        assert user.email == "new.donor@example.org"
        assert user.email_verified_at is None
        assert user.password_hash.startswith("$argon2id$")
    [(recipient, template, body)] = outbox(app)
    assert (recipient, template) == ("new.donor@example.org", "accounts/verify")
    assert "http://donorhub.test/account/verify/" in body


def test_verification_link_confirms_the_address(app, client):
    register(client)
    [(_, _, body)] = outbox(app)
    link = re.search(r"http://donorhub.test(/account/verify/\S+)", body).group(1)
    response = client.get(link)
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(User)).email_verified_at is not None


def test_tampered_verification_link_is_refused(app, client):
    register(client)
    [(_, _, body)] = outbox(app)
    link = re.search(r"http://donorhub.test(/account/verify/\S+)", body).group(1)
    tampered = link[:-3] + ("aaa" if not link.endswith("aaa") else "bbb")
    assert client.get(tampered).status_code == 400
    with app.app_context():
        assert db.session.scalar(select(User)).email_verified_at is None


def test_invalid_registration_rerenders_with_field_errors_and_writes_nothing(app, client):
    response = register(client, email="not-an-email", password="short")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Enter an e-mail address like name@example.com." in page
    assert 'aria-invalid="true"' in page
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_mismatched_confirmation_is_a_field_error(client):
    response = post_form(
        client,
        "/account/register",
        {
            "full_name": "A",
            "email": "a@example.org",
            "password": PASSWORD,
            "password_confirm": PASSWORD + "x",
        },
    )
    assert response.status_code == 422
    assert "The two passwords are not the same." in response.get_data(as_text=True)


def test_extra_form_fields_are_refused_not_assigned(app, client):
    """Mass assignment: role=admin and friends must not reach the account."""
    tampered = {"role": "admin", "is_staff": "1", "session_version": "99", "roles": "admin"}
    response = register(client, **tampered)
    assert response.status_code == 422
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
    METRICS.report("1.5b mass-assignment fields tried / effective", f"{len(tampered)} / 0")


@pytest.mark.parametrize(
    "password,accepted",
    [
        ("x" * 8, False),
        ("abcdefghijk", False),
        ("Tr0ub4dor&3", False),
        ("correct horse battery", True),
        ("x7#Lq9!vZ2@m", True),
        ("🔒 unicode pass phrase ✓", True),
        ("   spaces all around   ", True),
        (("river stone lantern " * 4)[:64], True),
        (("amber violin orchard " * 7)[:128], True),
        ("y" * 63 + "z", False),
        ("ab" * 64, False),
        ("password1234", False),
        ("qwertyuiopasdf", False),
        ("Password123!", False),
        ("1q2w3e4r5t6y", False),
        ("correcthorsebatterystaple", False),
    ],
)
def test_password_policy(client, app, password, accepted):
    response = register(client, email="policy@example.org", password=password)
    assert (response.status_code == 200) is accepted, response.get_data(as_text=True)[:300]


def test_password_policy_figures(app):
    from donorhub.accounts.passwords import common_passwords, password_problems

    classes = {
        "shorter than 12": ["a" * n for n in (1, 8, 11)],
        "12 to 15": ["kq8#vn2!pl0z", "kq8#vn2!pl0zmw4"],
        "64 and 128": ["k" + "q8#vn2!p" * 8, "k" + "q8#vn2!p" * 16],
        "common list": sorted(common_passwords())[:30],
    }
    figures = {}
    for name, examples in classes.items():
        rejected = sum(bool(password_problems(p, min_length=12, max_length=256)) for p in examples)
        figures[name] = f"{len(examples) - rejected} accepted, {rejected} rejected"
    assert figures["common list"] == "0 accepted, 30 rejected"
    assert figures["shorter than 12"].startswith("0 accepted")
    assert figures["64 and 128"].startswith("2 accepted")
    METRICS.report("1.3 password policy", figures)


def test_passwords_are_compared_exactly(app, client, make_user):
    user = make_user(password="Exact Case Password ")
    for variant in ("exact case password ", "Exact Case Password", "EXACT CASE PASSWORD "):
        response = post_form(client, "/account/sign-in", {"email": user.email, "password": variant})
        assert response.status_code == 422
    response = post_form(
        client, "/account/sign-in", {"email": user.email, "password": "Exact Case Password "}
    )
    assert response.status_code == 302


def test_registering_a_taken_address_mails_the_owner_and_looks_the_same(app, client, make_user):
    owner = make_user("owner@example.org")
    known = register(client, email="owner@example.org")
    unknown = register(client, email="nobody@example.org")
    assert known.status_code == unknown.status_code == 200
    strip = lambda r: re.sub(r'value="[^"]+"', "", r.get_data(as_text=True))  # noqa: E731
    assert strip(known) == strip(unknown)
    templates = {(r, t) for r, t, _ in outbox(app)}
    assert ("owner@example.org", "accounts/already_registered") in templates
    assert ("nobody@example.org", "accounts/verify") in templates
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 2
    assert owner.id == 1


def test_verification_mail_reaches_a_real_smtp_server(app, client, mailbox):
    register(client, email="smtp.check@example.org")
    with app.app_context():
        report = send_due_mail()
    assert report.sent == 1
    [received] = mailbox.to("smtp.check@example.org")
    assert received.subject == "Confirm your e-mail address"
    assert any("/account/verify/" in link for link in received.links())
    assert received.message.get_body(preferencelist=("html",)) is not None
