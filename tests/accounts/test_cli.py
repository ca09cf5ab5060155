"""`flask accounts create-staff` and `flask demo seed`."""

from __future__ import annotations

from sqlalchemy import func, select

from donorhub.accounts.models import User
from donorhub.audit import AuditEvent
from donorhub.extensions import db


def test_create_staff_reads_the_password_from_standard_input(app, log_guard):
    runner = app.test_cli_runner()
    password = "staff password from stdin"
    log_guard.watch(password)
    result = runner.invoke(
        args=[
            "accounts",
            "create-staff",
            "New.Staff@Example.org",
            "--role",
            "safeguarding_officer",
        ],
        input=password + "\n",
    )
    assert result.exit_code == 0, result.output
    assert password not in result.output
    with app.app_context():
        user = db.session.scalar(select(User))
        assert user.email == "new.staff@example.org"
        assert user.staff_roles == {"safeguarding_officer"}
        assert user.is_verified and not user.has_totp
        assert db.session.scalar(select(AuditEvent.action)) == "staff.role_granted"


def test_create_staff_refuses_weak_passwords_and_unknown_roles(app):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["accounts", "create-staff", "a@example.org", "--role", "admin"], input="short\n"
    )
    assert result.exit_code != 0 and "too weak" in result.output
    result = runner.invoke(
        args=["accounts", "create-staff", "a@example.org", "--role", "overlord"],
        input="a long enough password\n",
    )
    assert result.exit_code != 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_password_is_not_accepted_as_an_argument(app):
    result = app.test_cli_runner().invoke(
        args=["accounts", "create-staff", "a@example.org", "--role", "admin", "--password", "x"]
    )
    assert result.exit_code != 0


def test_demo_seed_fills_an_empty_database_once(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo", "seed", "--if-empty"])
    assert first.exit_code == 0, first.output
    assert "admin@demo.donorhub.invalid" in first.output
    assert "cards published" in first.output and "No listed child" not in first.output
    second = runner.invoke(args=["demo", "seed", "--if-empty"])
    assert "already has accounts" in second.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 6
    code = runner.invoke(args=["demo", "totp", "admin@demo.donorhub.invalid"])
    assert code.exit_code == 0 and code.output.strip().isdigit()


def test_reset_two_factor_makes_the_next_sign_in_enrol_again(app, make_user):
    from donorhub.mail.models import OutboxMessage
    from tests.helpers import PASSWORD, post_form, sign_in

    officer = make_user(roles=("fundraiser",))
    client = app.test_client()
    assert sign_in(client, officer.email, totp_secret=officer.totp_secret).status_code == 302
    assert client.get("/staff").status_code == 200
    result = app.test_cli_runner().invoke(
        args=["accounts", "reset-two-factor", officer.email, "--yes"]
    )
    assert result.exit_code == 0, result.output
    assert client.get("/staff").status_code == 302  # the old session is over
    again = app.test_client()
    response = post_form(again, "/account/sign-in", {"email": officer.email, "password": PASSWORD})
    assert response.headers["Location"] == "/account/two-factor/setup"
    with app.app_context():
        user = db.session.get(User, officer.id)
        assert user.totp_secret is None
        assert (
            db.session.scalar(
                select(OutboxMessage.template).where(OutboxMessage.recipient == officer.email)
            )
            == "accounts/second_factor_reset"
        )
        assert (
            db.session.scalar(select(AuditEvent.action).order_by(AuditEvent.id.desc()))
            == "staff.second_factor_reset"
        )
    donor = make_user()
    refused = app.test_cli_runner().invoke(
        args=["accounts", "reset-two-factor", donor.email, "--yes"]
    )
    assert refused.exit_code != 0 and "not a staff account" in refused.output
