"""Scheduled sponsorship work: holds, lapses and the two steps of an exit."""

from __future__ import annotations

from flask import current_app

from donorhub.jobs.registry import JobSpec
from donorhub.sponsorship import services


def release_sponsorship_holds() -> str:
    """Give back the places of holds that ran out or whose child is no longer listed."""
    return f"{services.release_expired_holds()} holds released"


def lapse_sponsorships() -> str:
    """Past-due sponsorships older than SPONSORSHIP_GRACE_DAYS lapse; the child is listed."""
    return f"{services.lapse_overdue()} sponsorships lapsed"


def stop_collection_after_exits() -> str:
    """Pause Stripe collection for sponsorships of children who exited (no mail)."""
    return f"{services.stop_collection_after_exits()} sponsorships stopped"


def send_exit_notices() -> str:
    """Send the neutral notice once ExitNotice.notify_after has passed."""
    return f"{services.send_exit_notices()} sponsors told"


def _every() -> dict:
    return {"trigger": "interval",
            "minutes": current_app.config["SPONSORSHIP_JOBS_INTERVAL_MINUTES"]}


JOBS = [
    JobSpec(name="release_sponsorship_holds", func=release_sponsorship_holds,
            trigger=lambda: {"trigger": "interval", "minutes": 1},
            description="Release expired sponsorship holds and holds of unlisted children"),
    JobSpec(name="stop_collection_after_exits", func=stop_collection_after_exits,
            trigger=_every,
            description="Stop charging for sponsorships of children who exited"),
    JobSpec(name="send_sponsor_exit_notices", func=send_exit_notices, trigger=_every,
            description="Send the delayed, neutral exit notice to sponsors"),
    JobSpec(name="lapse_sponsorships", func=lapse_sponsorships,
            trigger=lambda: {"trigger": "interval", "hours": 1},
            description="Lapse sponsorships past due longer than the grace period"),
]
