"""Scheduled account housekeeping."""

from __future__ import annotations

from donorhub.accounts import services
from donorhub.database import unit_of_work
from donorhub.jobs.registry import JobSpec


def purge_mail_throttle() -> str:
    """Delete per-recipient mail counts older than their one-hour window."""
    with unit_of_work():
        purged = services.purge_mail_throttle()
    return f"{purged} mail throttle rows purged"


JOBS = [
    JobSpec(
        name="purge_mail_throttle",
        func=purge_mail_throttle,
        trigger=lambda: {"trigger": "interval", "hours": 1},
        description="Delete per-recipient mail counts older than their one-hour window",
    ),
]
