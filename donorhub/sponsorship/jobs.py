"""Scheduled sponsorship work: holds, lapses and the two steps of an exit.

Each sponsorship (or exit notice) is its own unit of work: the services handle one item and
flush, and the loop here commits after each, so a Stripe call that fails for one item does
not undo the items already done.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app

from donorhub.database import unit_of_work, utcnow
from donorhub.jobs.registry import JobSpec
from donorhub.payments.gateway import GatewayError
from donorhub.sponsorship import services

log = logging.getLogger(__name__)


def release_expired_holds(now: datetime | None = None) -> int:
    """Holds past their time, and holds of children no longer listed, give their place back;
    returns how many were released."""
    now = now or utcnow()
    released = 0
    for sponsorship_id in services.expired_hold_ids(now):
        with unit_of_work():
            if services.release_hold(sponsorship_id, now):
                released += 1
    return released


def lapse_overdue(now: datetime | None = None) -> int:
    """Past-due sponsorships older than the grace period lapse; returns how many. One that
    Stripe could not stop is left for the next run."""
    now = now or utcnow()
    lapsed = 0
    for sponsorship_id in services.overdue_ids(now):
        try:
            with unit_of_work():
                done = services.lapse_sponsorship(sponsorship_id, now)
        except GatewayError as error:
            log.warning("could not stop a lapsed sponsorship", extra={"kind": error.kind})
            continue
        if done:
            lapsed += 1
    return lapsed


def stop_collection_for_exited(now: datetime | None = None) -> int:
    """Stop charging for the sponsorships of children who exited; returns how many. One that
    Stripe could not pause is left for the next run."""
    now = now or utcnow()
    stopped = 0
    for sponsorship_id in services.exited_ids():
        try:
            with unit_of_work():
                done = services.stop_collection_after_exit(sponsorship_id, now)
        except GatewayError as error:
            log.warning("could not stop collection after an exit", extra={"kind": error.kind})
            continue
        if done:
            stopped += 1
    return stopped


def send_due_exit_notices(now: datetime | None = None) -> int:
    """Send every exit notice whose time has come; returns how many sponsors were told."""
    now = now or utcnow()
    sent = 0
    for notice_id in services.due_exit_notice_ids(now):
        with unit_of_work():
            sent += services.send_exit_notice(notice_id, now)
    return sent


def release_sponsorship_holds() -> str:
    """Give back the places of holds that ran out or whose child is no longer listed."""
    return f"{release_expired_holds()} holds released"


def lapse_sponsorships() -> str:
    """Past-due sponsorships older than SPONSORSHIP_GRACE_DAYS lapse; the child is listed."""
    return f"{lapse_overdue()} sponsorships lapsed"


def stop_collection_after_exits() -> str:
    """Pause Stripe collection for sponsorships of children who exited (no mail)."""
    return f"{stop_collection_for_exited()} sponsorships stopped"


def send_exit_notices() -> str:
    """Send the neutral notice once ExitNotice.notify_after has passed."""
    return f"{send_due_exit_notices()} sponsors told"


def _every() -> dict:
    return {
        "trigger": "interval",
        "minutes": current_app.config["SPONSORSHIP_JOBS_INTERVAL_MINUTES"],
    }


JOBS = [
    JobSpec(
        name="release_sponsorship_holds",
        func=release_sponsorship_holds,
        trigger=lambda: {"trigger": "interval", "minutes": 1},
        description="Release expired sponsorship holds and holds of unlisted children",
    ),
    JobSpec(
        name="stop_collection_after_exits",
        func=stop_collection_after_exits,
        trigger=_every,
        description="Stop charging for sponsorships of children who exited",
    ),
    JobSpec(
        name="send_sponsor_exit_notices",
        func=send_exit_notices,
        trigger=_every,
        description="Send the delayed, neutral exit notice to sponsors",
    ),
    JobSpec(
        name="lapse_sponsorships",
        func=lapse_sponsorships,
        trigger=lambda: {"trigger": "interval", "hours": 1},
        description="Lapse sponsorships past due longer than the grace period",
    ),
]
