"""Staff accounts: roles, invitations, disabling and enabling."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from donorhub.accounts import services as account_services
from donorhub.accounts.models import StaffInvitation, StaffRole, User, UserRole
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.forms import load_form
from donorhub.security import staff
from donorhub.staff import bp
from donorhub.staff.schemas import StaffInvitationSchema, StaffRolesSchema

PAGE_SIZE = 50


def render_accounts(errors: dict | None = None, form: dict | None = None, status: int = 200):
    staff_users = db.session.scalars(
        select(User)
        .join(UserRole)
        .distinct()
        .order_by(User.id)
        .options(selectinload(User.roles))  # the page lists each person's roles
    ).all()
    invitations = db.session.scalars(
        select(StaffInvitation)
        .where(StaffInvitation.accepted_at.is_(None), StaffInvitation.withdrawn_at.is_(None))
        .order_by(StaffInvitation.id.desc())
        .limit(PAGE_SIZE)
    ).all()
    return render_template(
        "staff/accounts.html",
        staff_users=staff_users,
        invitations=invitations,
        errors=errors or {},
        form=form or {},
        roles=list(StaffRole),
    ), status


@bp.get("/accounts")
@staff(StaffRole.ADMIN)
def accounts():
    """Staff accounts and their roles, invitations waiting, and inviting someone new."""
    return render_accounts()


@bp.post("/accounts/invite")
@staff(StaffRole.ADMIN)
def invite_staff():
    """Invite a person to the staff: they choose their own password from the mailed link."""
    data, errors = load_form(StaffInvitationSchema())
    if not errors:
        try:
            account_services.invite_staff(
                current_user, data["email"], data["full_name"], data["roles"]
            )
        except (account_services.AlreadyStaff, account_services.InvitationWaiting) as error:
            errors = {"email": [str(error)]}
    if errors:
        return render_accounts(errors, dict(request.form), 422)
    flash(
        f"We have sent an invitation to {data['email']}. It works once, for "
        f"{int(account_services.INVITATION_MAX_AGE.total_seconds() // 3600)} hours.",
        "success",
    )
    return redirect(url_for("staff.accounts"))


@bp.post("/accounts/invitations/<int:invitation_id>/withdraw")
@staff(StaffRole.ADMIN)
def withdraw_invitation(invitation_id: int):
    """Withdraw an invitation: its link stops working."""
    invitation = db.get_or_404(StaffInvitation, invitation_id)
    try:
        account_services.withdraw_invitation(current_user, invitation)
    except DomainError as error:
        flash(str(error), "error")
        return redirect(url_for("staff.accounts"))
    flash("The invitation is withdrawn: its link no longer works.", "success")
    return redirect(url_for("staff.accounts"))


def staff_account_or_404(user_id: int) -> User:
    user = db.get_or_404(User, user_id)
    if not user.is_staff:
        abort(404)  # donors are managed from the donor pages, not here
    return user


def render_account(user: User, errors: dict | None = None, status: int = 200):
    return render_template(
        "staff/account.html", account=user, errors=errors or {}, roles=list(StaffRole)
    ), status


@bp.get("/accounts/<int:user_id>")
@staff(StaffRole.ADMIN)
def account(user_id: int):
    """One staff account: change its roles, disable or enable it."""
    return render_account(staff_account_or_404(user_id))


@bp.post("/accounts/<int:user_id>/roles")
@staff(StaffRole.ADMIN)
def account_roles(user_id: int):
    """Give a staff account exactly the roles ticked."""
    user = staff_account_or_404(user_id)
    data, errors = load_form(StaffRolesSchema())
    if not errors:
        try:
            changes = account_services.set_staff_roles(current_user, user, data["roles"])
        except DomainError as error:
            errors = {"roles": [str(error)]}
    if errors:
        return render_account(user, errors, 422)
    if changes.requested:
        flash(
            ("The other roles are saved. " if changes.changed else "")
            + "The safeguarding officer role is asked for: it takes effect when another "
            "admin or a safeguarding officer approves it, and every officer has been told.",
            "success",
        )
    else:
        flash("The roles are saved." if changes.changed else "Nothing changed.", "success")
    return redirect(url_for("staff.account", user_id=user.id))


@bp.post("/accounts/<int:user_id>/disable")
@staff(StaffRole.ADMIN)
def disable_account(user_id: int):
    """Disable an account: it can no longer sign in, and its sessions end now."""
    user = db.get_or_404(User, user_id)
    if user.id == current_user.id:
        flash("You cannot disable your own account.", "error")
        return redirect(url_for("staff.accounts"))
    account_services.set_account_disabled(current_user, user, disabled=True)
    flash("The account is disabled and signed out everywhere.", "success")
    return redirect(url_for("staff.accounts"))


@bp.post("/accounts/<int:user_id>/enable")
@staff(StaffRole.ADMIN)
def enable_account(user_id: int):
    """Let a disabled account sign in again."""
    user = db.get_or_404(User, user_id)
    account_services.set_account_disabled(current_user, user, disabled=False)
    flash("The account can sign in again.", "success")
    return redirect(url_for("staff.accounts"))
