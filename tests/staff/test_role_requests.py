"""The safeguarding-officer role takes effect only when a second person approves it, and
every officer is told when it is asked for and when it takes effect. Mail goes through the
real SMTP server (aiosmtpd)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from donorhub.accounts.models import RoleRequest, StaffRole, User
from donorhub.audit import AuditEvent
from donorhub.extensions import db
from donorhub.mail.sender import send_due_mail
from tests.helpers import PASSWORD, csrf_token, sign_in

OFFICER = "safeguarding_officer"


@pytest.fixture
def signed_in(app, make_user):
    def make(*roles: str, name: str = "Staff Person"):
        user = make_user(roles=roles, name=name)
        client = app.test_client()
        assert sign_in(client, user.email, totp_secret=user.totp_secret).status_code == 302
        return user, client

    return make


def ask_for_officer(client, user_id: int, *also: str):
    url = f"/staff/accounts/{user_id}"
    data = {f"role_{role}": "on" for role in (OFFICER, *also)}
    return client.post(url + "/roles", data={**data, "csrf_token": csrf_token(client, url)})


def the_request(app) -> int:
    with app.app_context():
        request_id = db.session.scalar(select(RoleRequest.id).where(RoleRequest.outcome.is_(None)))
        db.session.remove()
    return request_id


def approve(client, request_id: int):
    return client.post(
        f"/staff/role-requests/{request_id}/approve",
        data={"csrf_token": csrf_token(client, "/staff/role-requests")},
        follow_redirects=True,
    )


def roles_of(app, user_id: int) -> frozenset[str]:
    with app.app_context():
        roles = db.session.get(User, user_id).staff_roles
        db.session.remove()
    return roles


def actions(app, prefix: str = "staff.role_") -> list[tuple]:
    with app.app_context():
        rows = db.session.execute(
            select(AuditEvent.action, AuditEvent.actor_id, AuditEvent.detail)
            .where(AuditEvent.action.startswith(prefix))
            .order_by(AuditEvent.id)
        ).all()
        db.session.remove()
    return [tuple(row) for row in rows]


def deliver(app, mailbox, address):
    with app.app_context():
        send_due_mail()
        db.session.remove()
    return mailbox.to(address)


def test_an_admin_cannot_make_themselves_an_officer_alone(app, signed_in):
    admin, client = signed_in("admin")
    response = ask_for_officer(client, admin.id, "admin")
    assert response.status_code == 302
    assert roles_of(app, admin.id) == {"admin"}
    request_id = the_request(app)
    page = approve(client, request_id).get_data(as_text=True)
    assert "Nobody can approve a role for themselves." in page
    assert roles_of(app, admin.id) == {"admin"}
    # So the admin can neither reveal nor approve a child's text.
    assert client.get("/staff/safeguarding").status_code == 403
    assert client.get("/staff/safeguarding/about/1/reveal").status_code == 403
    assert client.post("/staff/safeguarding/about/1/approve").status_code in (400, 403)


def test_the_admin_who_asked_cannot_approve(app, signed_in):
    _admin, client = signed_in("admin")
    colleague, _ = signed_in("fundraiser")
    ask_for_officer(client, colleague.id, "fundraiser")
    page = approve(client, the_request(app)).get_data(as_text=True)
    assert "You asked for this role, so a second person must approve it" in page
    assert roles_of(app, colleague.id) == {"fundraiser"}


def test_the_person_who_would_get_the_role_cannot_approve_it(app, signed_in):
    _first, first_client = signed_in("admin")
    second, second_client = signed_in("admin")
    ask_for_officer(first_client, second.id, "admin")
    page = approve(second_client, the_request(app)).get_data(as_text=True)
    assert "Nobody can approve a role for themselves." in page
    assert roles_of(app, second.id) == {"admin"}


def test_a_second_admin_approves_and_every_officer_is_told_both_times(
    app, signed_in, make_user, mailbox
):
    first, first_client = signed_in("admin", name="Ada First")
    second, second_client = signed_in("admin", name="Bea Second")
    officer = make_user(roles=(OFFICER,), name="Olu Officer")
    colleague, colleague_client = signed_in("fundraiser", name="Cas Colleague")
    response = ask_for_officer(first_client, colleague.id, "fundraiser")
    assert "it takes effect when another admin or a safeguarding officer approves it" in (
        first_client.get(response.headers["Location"]).get_data(as_text=True)
    )
    [asked] = deliver(app, mailbox, officer.email)
    assert asked.subject == "Approval needed: Cas Colleague as a safeguarding officer"
    assert "Ada First asked for Cas Colleague" in asked.text
    assert "/staff/role-requests" in asked.text
    assert colleague_client.get("/staff/safeguarding").status_code == 403

    request_id = the_request(app)
    page = approve(second_client, request_id).get_data(as_text=True)
    assert "Cas Colleague is now a safeguarding officer." in page
    assert roles_of(app, colleague.id) == {"fundraiser", OFFICER}
    assert colleague_client.get("/staff/safeguarding").status_code == 200
    _asked, *told = deliver(app, mailbox, officer.email)  # the mailbox keeps the first
    assert [m.subject for m in told] == ["Cas Colleague is now a safeguarding officer"]
    assert "Ada First asked for it and Bea Second approved it" in told[0].text
    assert [m.subject for m in deliver(app, mailbox, colleague.email)] == [
        "Cas Colleague is now a safeguarding officer"
    ]
    assert actions(app) == [
        (
            "staff.role_requested",
            first.id,
            {"role": OFFICER, "request": request_id, "officers_alerted": 1},
        ),
        (
            "staff.role_granted",
            second.id,
            {
                "role": OFFICER,
                "request": request_id,
                "requested_by": first.id,
                "officers_alerted": 2,
            },
        ),
    ]
    assert "Nothing is waiting." in second_client.get("/staff/role-requests").get_data(as_text=True)


def test_an_officer_may_be_the_second_person_and_a_cancelled_request_grants_nothing(app, signed_in):
    _admin, admin_client = signed_in("admin")
    _officer, officer_client = signed_in(OFFICER)
    one, _ = signed_in("fundraiser")
    two, _ = signed_in("fundraiser")
    ask_for_officer(admin_client, one.id, "fundraiser")
    approve(officer_client, the_request(app))
    assert OFFICER in roles_of(app, one.id)
    ask_for_officer(admin_client, two.id, "fundraiser")
    officer_client.post(
        f"/staff/role-requests/{the_request(app)}/cancel",
        data={"csrf_token": csrf_token(officer_client, "/staff/role-requests")},
    )
    assert roles_of(app, two.id) == {"fundraiser"}
    assert actions(app)[-1][0] == "staff.role_request_cancelled"


def test_a_fundraiser_cannot_approve(app, signed_in):
    _admin, admin_client = signed_in("admin")
    colleague, _ = signed_in("fundraiser")
    _other, fundraiser_client = signed_in("fundraiser")
    ask_for_officer(admin_client, colleague.id, "fundraiser")
    response = fundraiser_client.post(f"/staff/role-requests/{the_request(app)}/approve")
    assert response.status_code in (400, 403)
    assert roles_of(app, colleague.id) == {"fundraiser"}


def test_changing_roles_to_the_officer_role_alone_is_refused_until_approved(app, signed_in):
    _admin, client = signed_in("admin")
    colleague, _ = signed_in("fundraiser")
    response = ask_for_officer(client, colleague.id)
    assert response.status_code == 422
    assert "keep one of its present roles ticked" in response.get_data(as_text=True)
    assert roles_of(app, colleague.id) == {"fundraiser"}
    assert the_request(app) is None


def test_the_first_officer_comes_from_the_server_and_later_ones_need_a_second_person(
    app, mailbox, log_guard
):
    runner = app.test_cli_runner()
    log_guard.watch("first.officer@example.org", "second.officer@example.org")
    result = runner.invoke(
        args=["accounts", "create-staff", "first.officer@example.org", "--role", OFFICER],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    [told] = deliver(app, mailbox, "first.officer@example.org")
    assert "is now a safeguarding officer: by the operator on the server" in told.text
    assert actions(app) == [("staff.role_granted", None, {"role": OFFICER, "officers_alerted": 1})]
    result = runner.invoke(
        args=["accounts", "create-staff", "second.officer@example.org", "--role", OFFICER],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 1
    assert "There is a safeguarding_officer already" in result.output
    with app.app_context():
        assert (
            db.session.scalar(select(User).where(User.email == "second.officer@example.org"))
            is None
        )


def test_a_request_cancelled_while_the_approver_looked_at_it_grants_nothing(app, make_user):
    """Two people decide at once: the approver's copy still says "waiting" when the
    cancellation has already been committed."""
    from donorhub.accounts import services

    admin = make_user(roles=("admin",))
    second = make_user(roles=("admin",))
    colleague = make_user(roles=("fundraiser",))
    with app.app_context():
        request = services.request_role(
            db.session.get(User, admin.id),
            db.session.get(User, colleague.id),
            StaffRole.SAFEGUARDING_OFFICER,
        )
        db.session.commit()
        request_id = request.id
    with app.app_context():
        stale = db.session.get(RoleRequest, request_id)  # read before the cancellation
        assert stale.outcome is None
        other = db.engine.connect()
        other.execute(
            RoleRequest.__table__.update()
            .where(RoleRequest.__table__.c.id == request_id)
            .values(outcome="cancelled")
        )
        other.commit()
        other.close()
        with pytest.raises(services.DomainError, match="approved or cancelled already"):
            services.approve_role_request(db.session.get(User, second.id), stale)
        db.session.rollback()
    assert roles_of(app, colleague.id) == {"fundraiser"}
