"""Scheduled work for updates: publish on the schedule, then notify."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from donorhub.database import unit_of_work
from donorhub.extensions import db
from donorhub.jobs.registry import JobSpec
from donorhub.updates import services
from donorhub.updates.models import Publication


def publish_updates() -> str:
    """Release approved updates together on the schedule day (a missed day is caught up)."""
    with unit_of_work():
        publication = services.publish_due()
    if publication is None:
        return "nothing due"
    return f"published {publication.updates_published} updates for {publication.scheduled_for}"


def send_update_notifications(now: datetime | None = None) -> str:
    """Tell each person once per publication, each person its own unit of work."""
    counts: dict[str, int] = {}
    pending = db.session.scalars(
        select(Publication)
        .where(Publication.notifications_done_at.is_(None))
        .order_by(Publication.id)
    ).all()
    for publication in pending:
        for user_id in sorted(services.recipients(publication)):
            with unit_of_work():
                outcome = services.notify_one(user_id, publication)
            if outcome is not None:
                counts[outcome] = counts.get(outcome, 0) + 1
        with unit_of_work():
            db.session.get_one(Publication, publication.id).notifications_done_at = (
                now or datetime.now(UTC)
            )
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nobody to notify"


JOBS = [
    JobSpec(
        name="publish_updates",
        func=publish_updates,
        trigger=lambda: {"trigger": "cron", "hour": 5, "minute": 0},
        description="Release approved updates on the publication schedule",
    ),
    JobSpec(
        name="send_update_notifications",
        func=send_update_notifications,
        trigger=lambda: {"trigger": "interval", "minutes": 10},
        description="Mail 'a new update is waiting' once per person per publication",
    ),
]
