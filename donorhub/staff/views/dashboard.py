"""The staff home: what needs attention, by role."""

from __future__ import annotations

from flask import render_template
from sqlalchemy import func, select

from donorhub.accounts.models import StaffRole
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.security import staff
from donorhub.staff import bp

ANY_STAFF = (StaffRole.ADMIN, StaffRole.FUNDRAISER, StaffRole.SAFEGUARDING_OFFICER)


@bp.get("")
@staff(*ANY_STAFF)
def dashboard():
    """The staff home: what needs attention, by role."""
    counts = dict(
        db.session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        ).all()
    )
    return render_template("staff/dashboard.html", outbox_counts=counts)
