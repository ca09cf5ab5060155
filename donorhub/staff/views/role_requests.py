"""Roles that wait for a second person: the list, approving and cancelling."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from donorhub.accounts import services as account_services
from donorhub.accounts.models import RoleRequest, StaffRole
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.security import staff
from donorhub.staff import bp

APPROVERS = (StaffRole.ADMIN, StaffRole.SAFEGUARDING_OFFICER)


@bp.get("/role-requests")
@staff(*APPROVERS)
def role_requests():
    """Role grants waiting for a second person's approval."""
    return render_template(
        "staff/role_requests.html", requests=account_services.pending_role_requests()
    )


@bp.post("/role-requests/<int:request_id>/approve")
@staff(*APPROVERS)
def approve_role_request(request_id: int):
    """Approve a role grant someone else asked for: it takes effect now."""
    request = db.get_or_404(RoleRequest, request_id)
    try:
        account_services.approve_role_request(current_user, request)
    except DomainError as error:
        flash(str(error), "error")
        return redirect(url_for("staff.role_requests"))
    flash(f"{request.user.full_name} is now a safeguarding officer.", "success")
    return redirect(url_for("staff.role_requests"))


@bp.post("/role-requests/<int:request_id>/cancel")
@staff(*APPROVERS)
def cancel_role_request(request_id: int):
    """Cancel a role grant that waits: nothing is granted."""
    request = db.get_or_404(RoleRequest, request_id)
    try:
        account_services.cancel_role_request(current_user, request)
    except DomainError as error:
        flash(str(error), "error")
        return redirect(url_for("staff.role_requests"))
    flash("The request is cancelled; nothing was granted.", "success")
    return redirect(url_for("staff.role_requests"))
