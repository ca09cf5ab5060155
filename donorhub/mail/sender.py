"""Delivers the outbox over SMTP: retries what SMTP refused for now, never sends twice."""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate

from flask import current_app
from sqlalchemy import select, update

from donorhub.database import unit_of_work
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

#: A claim older than this belongs to a sender that died mid-send.
STALE_CLAIM = timedelta(minutes=10)


class RetryLater(Exception):
    """SMTP did not take the message and said (or showed) that trying again may work."""


class Refused(Exception):
    """SMTP refused the message for good."""


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    uncertain: int = 0
    held: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"sent={self.sent} retried={self.retried} failed={self.failed} "
            f"uncertain={self.uncertain} held={self.held}"
        )


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, 8 ... minutes, capped at six hours."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 360))


def build_email(message: OutboxMessage, sender: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.recipient
    email["Subject"] = message.subject
    email["Message-ID"] = message.message_id
    email["Date"] = formatdate(localtime=False, usegmt=True)
    for name, value in (message.headers or {}).items():
        email[name] = value
    email.set_content(message.text_body)
    if message.html_body:
        email.add_alternative(message.html_body, subtype="html")
    return email


def open_connection(config) -> smtplib.SMTP:
    try:
        connection = smtplib.SMTP(
            config["MAIL_SERVER"], config["MAIL_PORT"], timeout=config["MAIL_TIMEOUT_SECONDS"]
        )
        if config["MAIL_USE_TLS"]:
            connection.starttls(context=ssl.create_default_context())
        if config["MAIL_USERNAME"]:
            connection.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
    except (OSError, smtplib.SMTPException) as error:
        # Nothing was handed over yet, so trying again later cannot duplicate anything.
        raise RetryLater(type(error).__name__) from error
    return connection


def transmit(connection: smtplib.SMTP, email: EmailMessage) -> None:
    try:
        refused = connection.send_message(email)
    except smtplib.SMTPRecipientsRefused as error:
        codes = [code for code, _ in error.recipients.values()]
        if all(400 <= code < 500 for code in codes):
            raise RetryLater(f"SMTPRecipientsRefused {codes[0]}") from error
        raise Refused(f"SMTPRecipientsRefused {codes[0] if codes else ''}") from error
    except smtplib.SMTPResponseException as error:
        label = f"{type(error).__name__} {error.smtp_code}"
        if 400 <= error.smtp_code < 500:
            raise RetryLater(label) from error
        raise Refused(label) from error
    if refused:
        raise Refused("recipient refused")


def mark_stale_claims_uncertain(now: datetime) -> int:
    result = db.session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.SENDING,
            OutboxMessage.claimed_at < now - STALE_CLAIM,
        )
        .values(status=OutboxStatus.UNCERTAIN, last_error="sender stopped mid-send")
    )
    return result.rowcount or 0  # type: ignore[attr-defined]  # an UPDATE's CursorResult


def claim(message_id: int, now: datetime) -> bool:
    """Take one message for sending; only one sender anywhere can win the claim."""
    result = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status == OutboxStatus.PENDING)
        .values(status=OutboxStatus.SENDING, claimed_at=now, attempts=OutboxMessage.attempts + 1)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]  # an UPDATE's CursorResult


def send_due_mail(now: datetime | None = None) -> SendReport:
    """Send every pending message that is due. Each message is its own unit of work."""
    config = current_app.config
    now = now or datetime.now(UTC)
    with unit_of_work():
        report = SendReport(uncertain=mark_stale_claims_uncertain(now))
    if config["MAIL_DELIVERY"] != "smtp":
        report.held = (
            db.session.scalar(
                select(db.func.count()).where(OutboxMessage.status == OutboxStatus.PENDING)
            )
            or 0
        )
        return report
    due_ids = db.session.scalars(
        select(OutboxMessage.id)
        .where(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.id)
        .limit(config["MAIL_BATCH_SIZE"])
    ).all()
    if not due_ids:
        return report
    connection: smtplib.SMTP | None = None
    try:
        for message_id in due_ids:
            # The claim is committed before SMTP is spoken to: if this process dies while
            # sending, the message stays "sending" and is later marked uncertain, never
            # sent twice.
            with unit_of_work():
                claimed = claim(message_id, now)
            if not claimed:
                continue
            with unit_of_work():
                connection = _send_claimed(message_id, connection, report, now, config)
    finally:
        close_quietly(connection)
    return report


def _send_claimed(
    message_id: int, connection: smtplib.SMTP | None, report: SendReport, now: datetime, config
) -> smtplib.SMTP | None:
    """Send one claimed message and record the outcome; returns the connection to reuse."""
    message = db.session.get(OutboxMessage, message_id)
    if message is not None:
        try:
            if connection is None:
                connection = open_connection(config)
            transmit(connection, build_email(message, config["MAIL_FROM"]))
        except RetryLater as error:
            close_quietly(connection)
            connection = None
            if message.attempts >= config["MAIL_MAX_ATTEMPTS"]:
                message.move_to(OutboxStatus.FAILED)
                report.failed += 1
            else:
                message.move_to(OutboxStatus.PENDING)
                message.next_attempt_at = now + backoff(message.attempts)
                report.retried += 1
            message.last_error = str(error)[:200]
        except Refused as error:
            message.move_to(OutboxStatus.FAILED)
            message.last_error = str(error)[:200]
            report.failed += 1
        except (OSError, smtplib.SMTPException) as error:
            # Lost mid-conversation: the server may have taken it, so no automatic retry.
            close_quietly(connection)
            connection = None
            message.move_to(OutboxStatus.UNCERTAIN)
            message.last_error = type(error).__name__
            report.uncertain += 1
        else:
            message.move_to(OutboxStatus.SENT)
            message.sent_at = datetime.now(UTC)
            report.sent += 1
    return connection


def close_quietly(connection: smtplib.SMTP | None) -> None:
    if connection is not None:
        try:
            connection.quit()
        except (TimeoutError, OSError, smtplib.SMTPException):
            pass
    return None
