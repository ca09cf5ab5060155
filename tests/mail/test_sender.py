"""The outbox and its sender, against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage, OutboxStatus
from donorhub.mail.sender import send_due_mail
from donorhub.mail.services import queue_mail
from tests.helpers import free_port, join_all


def queue(app, count=1, recipient="reader@example.org"):
    with app.app_context():
        for n in range(count):
            queue_mail(
                recipient,
                "accounts/password_changed",
                subject=f"Message {n}",
                name="Reader",
                reset_url="http://donorhub.test/account/forgot-password",
            )
        db.session.commit()


def statuses(app):
    with app.app_context():
        return [
            m.status.value
            for m in db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        ]


class ScriptedServer:
    """A real SMTP server that answers DATA with the codes it is given, in turn."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.accepted = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        reply = self.replies.pop(0) if self.replies else "250 OK"
        if reply.startswith("250"):
            self.accepted += 1
        return reply


@pytest.fixture
def scripted_smtp():
    servers = []

    def start(replies):
        handler = ScriptedServer(replies)
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        servers.append(controller)
        return handler, port

    yield start
    for controller in servers:
        controller.stop()


def test_queued_mail_is_delivered_once(app, mailbox):
    queue(app, 3)
    with app.app_context():
        first = send_due_mail()
        second = send_due_mail()
    assert (first.sent, second.sent) == (3, 0)
    assert len(mailbox.to("reader@example.org")) == 3
    assert statuses(app) == ["sent"] * 3
    message = mailbox.messages[0].message
    assert message["Message-ID"].endswith("@donorhub.invalid>")
    assert message["From"] == "DonorHub <hello@donorhub.invalid>"


def test_mail_written_in_a_rolled_back_transaction_never_exists(app, mailbox):
    with app.app_context():
        queue_mail(
            "ghost@example.org",
            "accounts/password_changed",
            subject="Never",
            name="G",
            reset_url="x",
        )
        db.session.rollback()
        assert send_due_mail().sent == 0
    assert mailbox.messages == []


def test_temporary_refusal_is_retried_with_backoff(app_factory, scripted_smtp):
    handler, port = scripted_smtp(["451 4.3.0 try later"])
    app = app_factory(MAIL_PORT=port)
    queue(app)
    now = datetime.now(UTC)
    with app.app_context():
        report = send_due_mail(now)
        assert report.retried == 1
        message = db.session.scalar(select(OutboxMessage))
        assert message.status == OutboxStatus.PENDING
        assert message.next_attempt_at >= now + timedelta(minutes=1)
        assert message.last_error == "SMTPDataError 451"
        assert send_due_mail(now).sent == 0  # not due yet
        assert send_due_mail(now + timedelta(minutes=2)).sent == 1
    assert handler.accepted == 1


def test_permanent_refusal_fails_without_retry(app_factory, scripted_smtp):
    handler, port = scripted_smtp(["550 5.1.1 no such user"])
    app = app_factory(MAIL_PORT=port)
    queue(app)
    with app.app_context():
        assert send_due_mail().failed == 1
        assert send_due_mail(datetime.now(UTC) + timedelta(days=1)).sent == 0
    assert statuses(app) == ["failed"]
    assert handler.accepted == 0


def test_unreachable_server_is_retried_then_gives_up(app_factory):
    app = app_factory(MAIL_PORT=free_port(), MAIL_MAX_ATTEMPTS=3)
    queue(app)
    later = datetime.now(UTC)
    with app.app_context():
        for _ in range(3):
            send_due_mail(later)
            later += timedelta(hours=7)
    assert statuses(app) == ["failed"]


def test_a_sender_that_died_mid_send_leaves_the_message_for_a_person(app, mailbox):
    queue(app)
    with app.app_context():
        message = db.session.scalar(select(OutboxMessage))
        message.status = OutboxStatus.SENDING
        message.claimed_at = datetime.now(UTC) - timedelta(minutes=11)
        db.session.commit()
        report = send_due_mail()
    assert (report.uncertain, report.sent) == (1, 0)
    assert statuses(app) == ["uncertain"]
    assert mailbox.messages == []


def test_two_senders_at_once_send_each_message_once(app, mailbox, backend):
    queue(app, 20)

    def run_sender():
        with app.app_context():
            send_due_mail()
            db.session.remove()

    threads = [threading.Thread(target=run_sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    join_all(threads)
    subjects = sorted(m.subject for m in mailbox.messages)
    assert subjects == sorted(f"Message {n}" for n in range(20))
    assert statuses(app) == ["sent"] * 20


def test_held_mail_stays_in_the_outbox(app_factory, mailbox):
    app = app_factory(MAIL_DELIVERY="hold")
    queue(app, 2)
    with app.app_context():
        report = send_due_mail()
    assert (report.sent, report.held) == (0, 2)
    assert mailbox.messages == []
