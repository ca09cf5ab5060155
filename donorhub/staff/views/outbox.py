"""The outbox: mail waiting, sent or failed, and sending a message again."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from donorhub.accounts.models import StaffRole
from donorhub.audit import record_audit
from donorhub.errors import IllegalTransition
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage, OutboxStatus
from donorhub.security import staff
from donorhub.staff import bp
from donorhub.urls import mask_secrets

PAGE_SIZE = 50


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
    return render_template(
        "staff/outbox.html",
        messages=messages,
        page=page,
        status=status,
        statuses=list(OutboxStatus),
    )


@bp.get("/outbox/<int:message_id>")
@staff(StaffRole.ADMIN)
def outbox_message(message_id: int):
    """One message as the recipient sees it (text part)."""
    message = db.get_or_404(OutboxMessage, message_id)
    body = body_for_staff(message)
    return render_template(
        "staff/outbox_message.html", message=message, show_body=body is not None, body=body
    )


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
    flash("The message is queued again.", "success")
    return redirect(url_for("staff.outbox_message", message_id=message.id))
