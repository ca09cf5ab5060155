"""Queueing mail: render both bodies from templates/emails and write an outbox row."""

from __future__ import annotations

import secrets
from email.utils import parseaddr
from typing import Any

from flask import current_app, render_template

from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.urls import holds_secret


def queue_mail(
    recipient: str,
    template: str,
    *,
    subject: str,
    sensitive: bool = False,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> OutboxMessage:
    """Add a message to the outbox in the caller's transaction; it goes out after commit.

    `template` names templates/emails/<template>.txt and, if present, .html.
    """
    message = render_mail(
        recipient, template, subject=subject, sensitive=sensitive, headers=headers, **context
    )
    add_to_outbox(message)
    return message


def add_to_outbox(message: OutboxMessage) -> None:
    db.session.add(message)
    db.session.flush()


def render_mail(
    recipient: str,
    template: str,
    *,
    subject: str,
    sensitive: bool = False,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> OutboxMessage:
    """The outbox row for a message, rendered but not added to the session (queue_mail adds
    it). Lets a caller do the same work whether or not it then sends (no timing oracle)."""
    context = {
        "subject": subject,
        "base_url": current_app.config["PUBLIC_BASE_URL"],
        "charity_name": current_app.config["CHARITY_NAME"],
        **context,
    }
    text_body = render_template(f"emails/{template}.txt", **context)
    try:
        html_body: str | None = render_template(f"emails/{template}.html", **context)
    except Exception as error:  # TemplateNotFound: an HTML part is optional
        if type(error).__name__ != "TemplateNotFound":
            raise
        html_body = None
    domain = parseaddr(current_app.config["MAIL_FROM"])[1].rpartition("@")[2] or "donorhub"
    message = OutboxMessage(
        recipient=recipient,
        subject=subject,
        text_body=text_body,
        html_body=html_body,
        headers=headers or {},
        template=template,
        # A link that acts as a key (manage, confirm, unsubscribe, reset...) makes the whole
        # message sensitive: staff never read it in production.
        is_sensitive=sensitive or holds_secret(text_body, html_body, *(headers or {}).values()),
        message_id=f"<{secrets.token_hex(16)}@{domain}>",
    )
    return message
