"""The staff dashboard, the outbox and account administration."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from donorhub.accounts import services as account_services
from donorhub.accounts.models import StaffInvitation, StaffRole, User, UserRole
from donorhub.audit import record_audit
from donorhub.errors import DomainError, IllegalTransition
from donorhub.extensions import db
from donorhub.forms import load_form
from donorhub.mail.models import OutboxMessage, OutboxStatus
from donorhub.security import staff
from donorhub.staff import bp
from donorhub.staff.schemas import StaffInvitationSchema, StaffRolesSchema
from donorhub.urls import mask_secrets

ANY_STAFF = (StaffRole.ADMIN, StaffRole.FUNDRAISER, StaffRole.SAFEGUARDING_OFFICER)
PAGE_SIZE = 50


@bp.get("")
@staff(*ANY_STAFF)
def dashboard():
    """The staff home: what needs attention, by role."""
    counts = dict(db.session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    ).all())
    return render_template("staff/dashboard.html", outbox_counts=counts)


def bodies_visible(message: OutboxMessage) -> bool:
    """Mail with a link that acts as a key is readable only while mail is held on this
    machine (development), never where mail is really sent."""
    return not message.is_sensitive or current_app.config["MAIL_DELIVERY"] != "smtp"


def body_for_staff(message: OutboxMessage) -> str | None:
    """The text staff may read: where mail is really sent, any key-like link that slipped
    through unmarked (older messages, a new template) is hidden as well."""
    if not bodies_visible(message):
        return None
    if current_app.config["MAIL_DELIVERY"] == "smtp":
        return mask_secrets(message.text_body)
    return message.text_body


@bp.get("/outbox")
@staff(StaffRole.ADMIN)
def outbox():
    """Mail waiting, sent or failed. In development, the only place mail is read."""
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    status = request.args.get("status")
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc())
    if status in {s.value for s in OutboxStatus}:
        query = query.where(OutboxMessage.status == status)
    messages = db.session.scalars(query.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    return render_template("staff/outbox.html", messages=messages, page=page, status=status,
                           statuses=list(OutboxStatus))


@bp.get("/outbox/<int:message_id>")
@staff(StaffRole.ADMIN)
def outbox_message(message_id: int):
    """One message as the recipient sees it (text part)."""
    message = db.get_or_404(OutboxMessage, message_id)
    body = body_for_staff(message)
    return render_template("staff/outbox_message.html", message=message,
                           show_body=body is not None, body=body)


@bp.post("/outbox/<int:message_id>/resend")
@staff(StaffRole.ADMIN)
def resend_message(message_id: int):
    """Queue a message again after a person checked it did not arrive."""
    message = db.get_or_404(OutboxMessage, message_id)
    try:
        message.queue_again()
    except IllegalTransition:
        abort(409)
    record_audit(current_user, "mail.resent", "outbox_message", message.id, {})
    db.session.commit()
    flash("The message is queued again.", "success")
    return redirect(url_for("staff.outbox_message", message_id=message.id))


def render_accounts(errors: dict | None = None, form: dict | None = None, status: int = 200):
    staff_users = db.session.scalars(
        select(User).join(UserRole).distinct().order_by(User.id)
        .options(selectinload(User.roles))  # the page lists each person's roles
    ).all()
    invitations = db.session.scalars(select(StaffInvitation).where(
        StaffInvitation.accepted_at.is_(None), StaffInvitation.withdrawn_at.is_(None))
        .order_by(StaffInvitation.id.desc()).limit(PAGE_SIZE)).all()
    return render_template("staff/accounts.html", staff_users=staff_users,
                           invitations=invitations, errors=errors or {}, form=form or {},
                           roles=list(StaffRole)), status


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
            account_services.invite_staff(current_user, data["email"], data["full_name"],
                                          data["roles"])
        except (account_services.AlreadyStaff, account_services.InvitationWaiting) as error:
            errors = {"email": [str(error)]}
    if errors:
        db.session.rollback()
        return render_accounts(errors, dict(request.form), 422)
    db.session.commit()
    flash(f"We have sent an invitation to {data['email']}. It works once, for "
          f"{int(account_services.INVITATION_MAX_AGE.total_seconds() // 3600)} hours.",
          "success")
    return redirect(url_for("staff.accounts"))


@bp.post("/accounts/invitations/<int:invitation_id>/withdraw")
@staff(StaffRole.ADMIN)
def withdraw_invitation(invitation_id: int):
    """Withdraw an invitation: its link stops working."""
    invitation = db.get_or_404(StaffInvitation, invitation_id)
    try:
        account_services.withdraw_invitation(current_user, invitation)
    except DomainError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("staff.accounts"))
    db.session.commit()
    flash("The invitation is withdrawn: its link no longer works.", "success")
    return redirect(url_for("staff.accounts"))


def staff_account_or_404(user_id: int) -> User:
    user = db.get_or_404(User, user_id)
    if not user.is_staff:
        abort(404)  # donors are managed from the donor pages, not here
    return user


def render_account(user: User, errors: dict | None = None, status: int = 200):
    return render_template("staff/account.html", account=user, errors=errors or {},
                           roles=list(StaffRole)), status


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
            changed = account_services.set_staff_roles(current_user, user, data["roles"])
        except DomainError as error:
            errors = {"roles": [str(error)]}
    if errors:
        db.session.rollback()
        return render_account(staff_account_or_404(user_id), errors, 422)
    db.session.commit()
    flash("The roles are saved." if changed else "Nothing changed.", "success")
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
    db.session.commit()
    flash("The account is disabled and signed out everywhere.", "success")
    return redirect(url_for("staff.accounts"))


@bp.post("/accounts/<int:user_id>/enable")
@staff(StaffRole.ADMIN)
def enable_account(user_id: int):
    """Let a disabled account sign in again."""
    user = db.get_or_404(User, user_id)
    account_services.set_account_disabled(current_user, user, disabled=False)
    db.session.commit()
    flash("The account can sign in again.", "success")
    return redirect(url_for("staff.accounts"))


@bp.get("/audit")
@staff(StaffRole.ADMIN)
def audit():
    """The append-only log of staff actions, with filters (who, action, subject, dates)."""
    from donorhub.staff.audit_filters import ACTION_GROUPS, AuditFilterSchema, filtered_events

    filters = AuditFilterSchema().load(request.args)
    events = filtered_events(filters)
    return render_template("staff/audit.html", events=events, filters=filters,
                           action_groups=ACTION_GROUPS)
