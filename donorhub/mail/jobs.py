"""Scheduled mail work."""

from __future__ import annotations

from flask import current_app

from donorhub.jobs.registry import JobSpec
from donorhub.mail.sender import send_due_mail


def send_mail() -> str:
    """Deliver due messages from the outbox."""
    return send_due_mail().summary()


JOBS = [
    JobSpec(
        name="send_mail",
        func=send_mail,
        trigger=lambda: {
            "trigger": "interval",
            "seconds": current_app.config["JOBS_MAIL_INTERVAL_SECONDS"],
        },
        description="Deliver due e-mail from the outbox over SMTP",
    ),
]
