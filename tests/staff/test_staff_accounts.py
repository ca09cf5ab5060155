"""Admins invite staff, change their roles and disable them; the invited person chooses the
password from a single-use, expiring link and must enrol an authenticator before any staff
page opens. Mail goes through the real SMTP server (aiosmtpd)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from sqlalchemy import func, select

from donorhub.accounts import passwords
from donorhub.accounts.models import StaffInvitation, User
from donorhub.audit import AuditEvent
from donorhub.database import utcnow
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.mail.sender import send_due_mail
from tests.helpers import PASSWORD, csrf_token, current_totp, sign_in

NEW_PASSWORD = "a brand new staff password of mine"  # noqa: S105
SECRET_PATTERN = re.compile(r'<code class="secret">([A-Z2-7]+)</code>')


@pytest.fixture
def admin(app, make_user):
    user = make_user("admin.person@example.org", roles=("admin",), name="Ada Admin")
    client = app.test_client()
    assert sign_in(client, user.email, totp_secret=user.totp_secret).status_code == 302
    return user, client


def invite(client, email="new.colleague@example.org", name="Nina Colleague", roles=("fundraiser",)):
    data = {"full_name": name, "email": email, **{f"role_{r}": "on" for r in roles}}
    return client.post(
        "/staff/accounts/invite", data={**data, "csrf_token": csrf_token(client, "/staff/accounts")}
    )


def counts(app) -> dict[str, int]:
    with app.app_context():
        result = {
            model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
            for model in (StaffInvitation, OutboxMessage, AuditEvent, User)
        }
        db.session.remove()
    return result


def audit_rows(app, prefix="staff."):
    with app.app_context():
        rows = db.session.execute(
            select(AuditEvent.action, AuditEvent.actor_id, AuditEvent.subject_id, AuditEvent.detail)
            .where(AuditEvent.action.startswith(prefix))
            .order_by(AuditEvent.id)
        ).all()
        db.session.remove()
    return [tuple(r) for r in rows]


def deliver(app, mailbox, address):
    with app.app_context():
        send_due_mail()
        db.session.remove()
    return mailbox.to(address)


def invitation_path(mail) -> str:
    [link] = [link for link in mail.links() if "/account/invitation/" in link]
    return urlsplit(link).path


def choose_password(client, path, password=NEW_PASSWORD):
    client.get(path)
    return client.post(
        "/account/invitation",
        data={
            "password": password,
            "password_confirm": password,
            "csrf_token": csrf_token(client, "/account/invitation"),
        },
    )


def test_an_invited_person_chooses_a_password_enrols_two_factors_and_gets_their_role(
    app, admin, mailbox, log_guard
):
    admin_user, client = admin
    log_guard.watch("new.colleague@example.org", NEW_PASSWORD)
    response = invite(client, roles=("fundraiser", "safeguarding_officer"))
    assert response.status_code == 302
    page = client.get("/staff/accounts").get_data(as_text=True)
    assert "We have sent an invitation to new.colleague@example.org" in page
    assert "Nina Colleague" in page and "waiting" in page
    with app.app_context():
        assert (
            db.session.scalar(select(User).where(User.email == "new.colleague@example.org")) is None
        )  # nothing granted yet

    [mail] = deliver(app, mailbox, "new.colleague@example.org")
    assert "invited you to the staff area" in mail.text and "72 hours" in mail.text
    path = invitation_path(mail)
    log_guard.watch(path.rsplit("/", 1)[1])
    newcomer = app.test_client()
    assert "Welcome to the staff area" in newcomer.get(path, follow_redirects=True).get_data(
        as_text=True
    )
    assert choose_password(newcomer, path).headers["Location"].endswith("/account/sign-in")

    # The link worked once.
    again = app.test_client()
    assert again.get(path, follow_redirects=True).status_code == 400

    response = sign_in(newcomer, "new.colleague@example.org", NEW_PASSWORD)
    assert response.headers["Location"].endswith("/account/two-factor/setup")
    assert newcomer.get("/staff/donors").status_code == 302  # no staff page before enrolment
    setup = newcomer.get("/account/two-factor/setup").get_data(as_text=True)
    assert "<svg" in setup
    secret = SECRET_PATTERN.search(setup).group(1)
    log_guard.watch(secret)
    response = newcomer.post(
        "/account/two-factor/setup",
        data={
            "code": current_totp(secret),
            "csrf_token": csrf_token(newcomer, "/account/two-factor/setup"),
        },
    )
    # Signed in: the page shows the recovery codes once, with the way on to the staff area.
    assert response.status_code == 200 and 'href="/staff"' in response.get_data(as_text=True)
    assert newcomer.get("/staff/donors").status_code == 200
    # The officer role waits for a second person (tests/staff/test_role_requests.py).
    assert newcomer.get("/staff/safeguarding").status_code == 403
    assert newcomer.get("/staff/accounts").status_code == 403

    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "new.colleague@example.org"))
        assert user.staff_roles == {"fundraiser"}
        assert user.is_verified and user.has_totp
        invitation = db.session.scalar(select(StaffInvitation))
        assert invitation.accepted_at is not None and invitation.user_id == user.id
        new_id, invitation_id = user.id, invitation.id
    assert audit_rows(app) == [
        (
            "staff.invited",
            admin_user.id,
            invitation_id,
            {"roles": "fundraiser.safeguarding_officer"},
        ),
        (
            "staff.role_granted",
            admin_user.id,
            new_id,
            {"role": "fundraiser", "invitation": invitation_id},
        ),
        (
            "staff.role_requested",
            admin_user.id,
            new_id,
            {"role": "safeguarding_officer", "request": 1, "officers_alerted": 0},
        ),
        ("staff.invitation_accepted", new_id, invitation_id, {}),
        ("staff.totp_enrolled", new_id, new_id, {}),
        ("staff.recovery_codes_made", new_id, new_id, {"count": 10}),
    ]


@pytest.mark.parametrize(
    "form,field,message",
    [
        (
            {"full_name": "  ", "email": "a@example.org", "role_admin": "on"},
            "full_name",
            "Enter the person&#39;s name.",
        ),
        (
            {"full_name": "Bo", "email": "not-an-address", "role_admin": "on"},
            "email",
            "Enter an e-mail address like name@example.com.",
        ),
        ({"full_name": "Bo", "email": "bo@example.org"}, "roles", "Choose at least one role."),
        (
            {"full_name": "Bo", "email": "bo@example.org", "role_admin": "on", "password": "x"},
            "password",
            "This form does not accept that field.",
        ),
    ],
)
def test_bad_input_re_renders_with_a_field_error_and_changes_nothing(
    app, admin, form, field, message
):
    _admin, client = admin
    before = counts(app)
    response = client.post(
        "/staff/accounts/invite", data={**form, "csrf_token": csrf_token(client, "/staff/accounts")}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in page and f'href="#{field}"' in page
    if field == "full_name":
        assert 'value="a@example.org"' in page  # what was typed is kept
    assert counts(app) == before


def test_only_admins_may_invite_or_change_accounts(app, make_user, admin):
    _admin, admin_client = admin
    invite(admin_client, email="pending@example.org")
    target = make_user(roles=("fundraiser",))
    with app.app_context():
        invitation_id = db.session.scalar(select(StaffInvitation.id))
    before = counts(app)
    posts = {
        "/staff/accounts/invite": {
            "full_name": "Eve",
            "email": "eve@example.org",
            "role_admin": "on",
        },
        f"/staff/accounts/{target.id}/roles": {"role_admin": "on"},
        f"/staff/accounts/invitations/{invitation_id}/withdraw": {},
    }
    for roles in (("fundraiser",), ("safeguarding_officer",), ()):
        user = make_user(roles=roles)
        client = app.test_client()
        sign_in(client, user.email, totp_secret=user.totp_secret)
        assert client.get("/staff/accounts").status_code == 403
        assert client.get(f"/staff/accounts/{target.id}").status_code == 403
        token = csrf_token(client, "/account/settings")
        for url, data in posts.items():
            assert client.post(url, data={**data, "csrf_token": token}).status_code == 403
    anonymous = app.test_client()
    token = csrf_token(anonymous)
    for url, data in posts.items():
        response = anonymous.post(url, data={**data, "csrf_token": token})
        assert "/account/sign-in" in response.headers["Location"]
    after = counts(app)
    assert {k: after[k] for k in ("staff_invitations", "outbox_messages")} == {
        k: before[k] for k in ("staff_invitations", "outbox_messages")
    }
    with app.app_context():
        assert db.session.get(User, target.id).staff_roles == {"fundraiser"}


def test_an_address_with_a_donor_account_looks_the_same_to_the_admin_and_gains_nothing_yet(
    app, admin, make_user, mailbox
):
    """No enumeration: the admin sees the same answer whether a donor account exists. The
    account gets no role until the mailbox owner accepts; accepting replaces the old password,
    which someone else may have chosen when they registered with that address."""
    _admin, client = admin
    donor = make_user("existing.donor@example.org", name="Dee Donor")
    squatter = app.test_client()
    sign_in(squatter, donor.email)
    assert squatter.get("/account").status_code == 200
    answers = []
    for email in ("existing.donor@example.org", "nobody.yet@example.org"):
        invite(client, email=email, name="Same Name")
        page = client.get("/staff/accounts").get_data(as_text=True)
        answers.append(
            re.search(r'<p class="flash[^>]*>(.*?)</p>', page).group(1).replace(email, "EMAIL")
        )
    assert answers[0] == answers[1]
    with app.app_context():
        assert db.session.get(User, donor.id).staff_roles == frozenset()
    [mail] = deliver(app, mailbox, donor.email)
    assert "its old password stops working" in mail.text
    assert choose_password(app.test_client(), invitation_path(mail)).status_code == 302
    assert squatter.get("/account").status_code == 302  # their session ended
    assert sign_in(app.test_client(), donor.email, PASSWORD).status_code == 422
    with app.app_context():
        user = db.session.get(User, donor.id)
        assert user.staff_roles == {"fundraiser"} and user.full_name == "Dee Donor"
        assert passwords.verify_password(user.password_hash, NEW_PASSWORD)


def test_duplicates_are_refused_with_a_field_error(app, admin, make_user):
    _admin, client = admin
    make_user("already.staff@example.org", roles=("fundraiser",))
    response = invite(client, email="Already.Staff@example.org")
    assert response.status_code == 422
    assert "already has a staff account" in response.get_data(as_text=True)
    assert invite(client, email="twice@example.org").status_code == 302
    before = counts(app)
    response = invite(client, email="twice@example.org")
    assert response.status_code == 422
    assert "An invitation to this address is waiting already" in response.get_data(as_text=True)
    assert counts(app) == before


def test_an_expired_or_withdrawn_invitation_link_does_not_work(app, admin, mailbox):
    _admin, client = admin
    invite(client, email="late@example.org")
    invite(client, email="withdrawn@example.org")
    with app.app_context():
        withdrawn_id = db.session.scalar(
            select(StaffInvitation.id).where(StaffInvitation.email == "withdrawn@example.org")
        )
    response = client.post(
        f"/staff/accounts/invitations/{withdrawn_id}/withdraw",
        data={"csrf_token": csrf_token(client, "/staff/accounts")},
    )
    assert response.status_code == 302
    [late] = deliver(app, mailbox, "late@example.org")
    [withdrawn] = mailbox.to("withdrawn@example.org")
    page = app.test_client().get(invitation_path(withdrawn), follow_redirects=True)
    assert page.status_code == 400 and "invitation link does not work" in page.get_data(
        as_text=True
    )
    with time_machine.travel(utcnow() + timedelta(hours=72, minutes=1)):
        newcomer = app.test_client()
        assert newcomer.get(invitation_path(late), follow_redirects=True).status_code == 400
    with app.app_context():
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(User)
                .where(User.email.in_(["late@example.org", "withdrawn@example.org"]))
            )
            == 0
        )
    assert ("staff.invitation_withdrawn", _admin.id, withdrawn_id, {}) in audit_rows(app)


def test_a_weak_password_on_the_invitation_page_changes_nothing(app, admin, mailbox):
    _admin, client = admin
    invite(client, email="weak@example.org")
    [mail] = deliver(app, mailbox, "weak@example.org")
    newcomer = app.test_client()
    response = choose_password(newcomer, invitation_path(mail), password="short")
    assert response.status_code == 422 and "at least 12 characters" in response.get_data(
        as_text=True
    )
    with app.app_context():
        assert db.session.scalar(select(StaffInvitation.accepted_at)) is None
        assert db.session.scalar(select(User).where(User.email == "weak@example.org")) is None
    assert choose_password(newcomer, invitation_path(mail)).status_code == 302


def test_an_admin_changes_roles_and_the_change_holds_on_the_next_click(app, admin, make_user):
    admin_user, client = admin
    colleague = make_user(roles=("fundraiser",))
    theirs = app.test_client()
    sign_in(theirs, colleague.email, totp_secret=colleague.totp_secret)
    assert theirs.get("/staff/donors").status_code == 200
    url = f"/staff/accounts/{colleague.id}"
    assert 'id="role-fundraiser" name="role_fundraiser" value="on" checked' in client.get(
        url
    ).get_data(as_text=True)
    response = client.post(
        url + "/roles",
        data={"role_admin": "on", "csrf_token": csrf_token(client, url)},
    )
    assert response.status_code == 302
    assert theirs.get("/staff/accounts").status_code == 200
    back = client.post(
        url + "/roles", data={"role_fundraiser": "on", "csrf_token": csrf_token(client, url)}
    )
    assert back.status_code == 302
    assert theirs.get("/staff/accounts").status_code == 403
    assert audit_rows(app)[-4:] == [
        ("staff.role_revoked", admin_user.id, colleague.id, {"role": "fundraiser"}),
        ("staff.role_granted", admin_user.id, colleague.id, {"role": "admin"}),
        ("staff.role_revoked", admin_user.id, colleague.id, {"role": "admin"}),
        ("staff.role_granted", admin_user.id, colleague.id, {"role": "fundraiser"}),
    ]

    before = counts(app)
    response = client.post(url + "/roles", data={"csrf_token": csrf_token(client, url)})
    assert response.status_code == 422 and "Choose at least one role." in response.get_data(
        as_text=True
    )
    own = f"/staff/accounts/{admin_user.id}"
    response = client.post(
        own + "/roles", data={"role_fundraiser": "on", "csrf_token": csrf_token(client, own)}
    )
    assert response.status_code == 422
    assert "You cannot remove your own admin role" in response.get_data(as_text=True)
    assert counts(app) == before
    with app.app_context():
        assert db.session.get(User, admin_user.id).staff_roles == {"admin"}
    donor = make_user()
    assert client.get(f"/staff/accounts/{donor.id}").status_code == 404


def test_disabling_a_staff_account_ends_its_sessions_and_refuses_sign_in(app, admin, make_user):
    admin_user, client = admin
    colleague = make_user(roles=("fundraiser",))
    theirs = app.test_client()
    sign_in(theirs, colleague.email, totp_secret=colleague.totp_secret)
    assert theirs.get("/staff/donors").status_code == 200
    url = f"/staff/accounts/{colleague.id}"
    response = client.post(url + "/disable", data={"csrf_token": csrf_token(client, url)})
    assert response.status_code == 302
    assert "/account/sign-in" in theirs.get("/staff/donors").headers["Location"]
    assert sign_in(app.test_client(), colleague.email).status_code == 422
    assert ("account.disabled", admin_user.id, colleague.id, {}) in audit_rows(app, "account.")


def test_the_cli_does_not_give_a_role_to_an_account_whose_address_was_never_confirmed(
    app, make_user
):
    """Bug fixed: `flask accounts create-staff` granted the role to any existing account with
    the address. Someone who registered it without being able to read its mail (a squatter)
    then signed in with their own password and enrolled their own authenticator."""
    squatter = make_user("future.staff@example.org", verified=False)
    result = app.test_cli_runner().invoke(
        args=["accounts", "create-staff", "future.staff@example.org", "--role", "admin"],
        input="an operator password for the new account\n",
    )
    assert result.exit_code != 0 and "never confirmed" in result.output
    with app.app_context():
        assert db.session.get(User, squatter.id).staff_roles == frozenset()
    verified = make_user("verified.donor@example.org")
    result = app.test_cli_runner().invoke(
        args=["accounts", "create-staff", verified.email, "--role", "fundraiser"],
        input="an operator password for the new account\n",
    )
    assert result.exit_code == 0, result.output
