"""Scheduled work for children: publishing the releases on the fixed public schedule."""

from __future__ import annotations

from flask import current_app

from donorhub.children import services
from donorhub.database import unit_of_work, utcnow
from donorhub.jobs.registry import JobSpec


def publish_releases() -> str:
    """Publish what may be shown of every child until the next publication."""
    with unit_of_work():
        shown = services.publish_releases(utcnow())
    return f"{shown} cards shown"


def shuffle_listing() -> str:
    """Store the new UTC day's listing order (the same keys readers compute until then)."""
    with unit_of_work():
        written = services.shuffle_listing(utcnow().date())
    return f"{written} cards ordered"


def _schedule() -> dict:
    config = current_app.config
    return {
        "trigger": "cron",
        "day_of_week": config["RELEASE_PUBLISH_WEEKDAY"],
        "hour": config["RELEASE_PUBLISH_HOUR"],
        "minute": 0,
        "timezone": config["RELEASE_PUBLISH_TIMEZONE"],
    }


JOBS = [
    JobSpec(
        name="publish_releases",
        func=publish_releases,
        trigger=_schedule,
        description="Publish the children's public cards on the fixed weekly schedule",
    ),
    JobSpec(
        name="shuffle_listing",
        func=shuffle_listing,
        trigger=lambda: {"trigger": "cron", "hour": 0, "minute": 0, "timezone": "UTC"},
        description="Store the day's random order of the public listing at the start of the day",
    ),
]
