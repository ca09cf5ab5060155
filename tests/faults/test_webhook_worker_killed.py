"""The event worker is killed (SIGKILL) between the webhook's commit of an event and the
commit of its effect: nothing is lost and nothing is applied twice.

The events are stored by the real webhook (committed, answered 200); then a real worker
process (`flask payments apply-events --once`) is parked and killed where the test says
(donorhub/park_for_kill.py): inside its batch's transaction with every effect flushed and
not committed, or just after that commit. A second worker then finishes the work.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from donorhub.donations.models import Donation, DonationStatus
from donorhub.mail.models import OutboxMessage
from donorhub.payments.models import EventState, StripeEvent
from tests.faults.test_jobs_killed import job_env, kill_parked, rows, run_to_end, scalar
from tests.payments.stripe_helpers import checkout_url, give, post_event

WORKER = ("payments", "apply-events", "--once")


def _stored_gifts(app, client, sim, count: int) -> list[str]:
    """`count` paid gifts whose events are stored by the webhook and not applied."""
    for n in range(count):
        sim.pay(checkout_url(give(client, email=f"killed{n}@example.org")))
    events = sim.events()
    for event in events:
        assert post_event(client, event, apply=False).status_code == 200
    return [e["id"] for e in events]


def _facts(app) -> tuple[int, int, int, int]:
    """(gifts paid, receipts, events applied, events waiting)."""
    paid = scalar(
        app,
        select(func.count()).select_from(Donation).where(Donation.status == DonationStatus.PAID),
    )
    receipts = scalar(
        app,
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.template == "donations/receipt"),
    )
    states = dict(rows(app, select(StripeEvent.state, func.count()).group_by(StripeEvent.state)))
    waiting = states.get(EventState.RECEIVED, 0) + states.get(EventState.RETRYING, 0)
    return paid, receipts, states.get(EventState.APPLIED, 0), waiting


@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
def test_a_worker_killed_around_its_commit_loses_nothing_and_applies_nothing_twice(
    pay_app, pay_client, sim, tmp_path, point
):
    events = _stored_gifts(pay_app, pay_client, sim, 3)
    assert _facts(pay_app) == (0, 0, 0, len(events))
    env = job_env(pay_app, tmp_path)
    assert kill_parked(env, tmp_path, point, *WORKER)
    if point == "before-commit":  # the batch's effects were flushed, never committed
        assert _facts(pay_app) == (0, 0, 0, len(events))
    else:  # the kill came after a commit: what it committed is whole
        paid, receipts, applied, waiting = _facts(pay_app)
        # pysqlite ends each event's savepoint with a commit of its own (it opens no
        # transaction for the claim's SELECT); on PostgreSQL the first committed write may
        # come before the batch's. Either way what was committed is consistent.
        assert paid == receipts and applied + waiting == len(events)
    output = run_to_end(env, tmp_path, *WORKER)
    assert "0 failed" in output, output
    assert _facts(pay_app) == (3, 3, len(events), 0)
    payloads = scalar(
        pay_app,
        select(func.count()).select_from(StripeEvent).where(StripeEvent.payload.is_not(None)),
    )
    assert payloads == 0
