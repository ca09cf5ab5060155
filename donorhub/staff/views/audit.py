"""The audit log page: the append-only log of staff actions, filtered."""

from __future__ import annotations

from flask import render_template, request

from donorhub.accounts.models import StaffRole
from donorhub.audit import filtered_events
from donorhub.security import staff
from donorhub.staff import bp
from donorhub.staff.schemas import ACTION_GROUPS, AuditFilterSchema


@bp.get("/audit")
@staff(StaffRole.ADMIN)
def audit():
    """The append-only log of staff actions, with filters (who, action, subject, dates)."""
    filters = AuditFilterSchema().load(request.args)
    events = filtered_events(filters)
    return render_template(
        "staff/audit.html", events=events, filters=filters, action_groups=ACTION_GROUPS
    )
