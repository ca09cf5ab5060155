"""The second person who approves a safeguarding-officer grant must be someone the requester
did not make: an admin who gives a second account of their own (or a colleague they just
promoted) the admin role could otherwise approve their own request through it."""

from __future__ import annotations

import pytest

from donorhub.accounts import services as accounts
from donorhub.accounts.models import StaffRole, User
from donorhub.errors import DomainError
from donorhub.extensions import db


def test_an_admin_the_requester_made_cannot_approve_the_requesters_officer_grant(app, make_user):
    requester_id = make_user(roles=("admin",)).id
    second_id = make_user(roles=("fundraiser",)).id
    with app.app_context():
        requester, second = db.session.get(User, requester_id), db.session.get(User, second_id)
        # The requester alone makes the second account an admin ...
        accounts.set_staff_roles(requester, second, ["fundraiser", "admin"])
        # ... asks for the officer role for themselves ...
        changes = accounts.set_staff_roles(requester, requester, ["admin", "safeguarding_officer"])
        assert changes.requested == ("safeguarding_officer",)
        request = accounts.pending_role_requests()[0]
        # ... and the account they made admin must not be the second person.
        with pytest.raises(DomainError):
            accounts.approve_role_request(second, request)
        assert not requester.has_role(StaffRole.SAFEGUARDING_OFFICER)
        db.session.rollback()
