"""Scheduled sponsorship work: holds, lapses and the neutral notice of an exit.

Each sponsorship, refund or exit notice is its own unit of work: the services handle one item
and flush, and the loop here commits after each, so a Stripe call that fails for one item
does not undo the items already done, and a process killed between two steps finds the done
ones done when it runs again.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app

from donorhub.database import unit_of_work, utcnow
from donorhub.donations import services as donations
from donorhub.errors import DomainError
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
    """Stop charging for the sponsorships of children whose exit notice is due, and for
    unplaced ones; returns how many. One that Stripe could not pause is left for the next
    run."""
    now = now or utcnow()
    stopped = 0
    for sponsorship_id in services.exited_ids(now):
        try:
            with unit_of_work():
                done = services.stop_collection_after_exit(sponsorship_id, now)
        except GatewayError as error:
            log.warning("could not stop collection after an exit", extra={"kind": error.kind})
            continue
        if done:
            stopped += 1
    return stopped


def refund_after_exits(now: datetime | None = None) -> int:
    """Refund every sponsorship payment taken after the child's exit, once the exit's
    notice is due; returns how many refunds Stripe accepted in this run.

    Two units of work per refund, as for staff refunds: the refund row (its idempotency key)
    is committed, then Stripe is called and its answer recorded. A killed run sends the same
    row with the same key next time, so Stripe makes it once. A refund Stripe did not make
    is retried by the next run: a timeout with the same key; a refusal, or a server error
    whose outcome Stripe then says was no refund, with a new row."""
    now = now or utcnow()
    refunded = 0
    for gift_id in services.exit_refund_ids(now):
        try:
            with unit_of_work():
                refund_id = services.ask_exit_refund(gift_id)
        except GatewayError as error:  # the instalment's payment could not be looked up
            log.warning("could not prepare a refund after an exit", extra={"kind": error.kind})
            continue
        except DomainError:
            log.warning("a payment after an exit has nothing Stripe can refund")
            continue
        if refund_id is None:
            continue
        try:
            with unit_of_work():
                donations.send_refund(refund_id)
        except GatewayError as error:
            log.warning("could not refund a payment after an exit", extra={"kind": error.kind})
            _after_refund_error(refund_id, error)
            continue
        refunded += 1
    return refunded


def _after_refund_error(refund_id: int, error: GatewayError) -> None:
    if error.retryable and not error.key_spent:
        return  # a timeout or a busy Stripe: the same row and key go again next run
    try:
        with unit_of_work():
            if error.retryable:
                # Stripe keeps its 5xx under our key: ask it whether the refund was made.
                donations.settle_refund(refund_id)
            else:
                donations.refund_refused(refund_id, error.kind)
    except GatewayError as again:
        log.warning("could not ask Stripe about a refund", extra={"kind": again.kind})


def send_due_exit_notices(now: datetime | None = None) -> int:
    """Carry out every exit notice whose time has come, in its order: collection stopped,
    the payments since the exit refunded, then the notice itself (mail, portal message,
    purge). Returns how many sponsors were told. A notice whose first steps are not finished
    (Stripe unreachable) waits for the next run."""
    now = now or utcnow()
    stop_collection_for_exited(now)
    refund_after_exits(now)
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
    """Pause Stripe collection for sponsorships of children whose exit notice is due, and
    for unplaced ones (no mail)."""
    return f"{stop_collection_for_exited()} sponsorships stopped"


def send_exit_notices() -> str:
    """Once ExitNotice.notify_after has passed: stop collection, refund the payments since
    the exit, send the neutral notice and purge the child's words."""
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
        description="Stop charging for sponsorships whose exit notice is due, and unplaced ones",
    ),
    JobSpec(
        name="send_sponsor_exit_notices",
        func=send_exit_notices,
        trigger=_every,
        description="Refund payments since an exit, then send the delayed, neutral notice",
    ),
    JobSpec(
        name="lapse_sponsorships",
        func=lapse_sponsorships,
        trigger=lambda: {"trigger": "interval", "hours": 1},
        description="Lapse sponsorships past due longer than the grace period",
    ),
]
