"""The jobs process is killed (SIGKILL) while each job is working; the next run completes the
work, and what a person cares about happens exactly once.

Every job of `flask jobs list` runs in a real subprocess (`flask jobs run` or
`flask jobs run-once NAME`) against this test's database (a file-backed SQLite copy, or
PostgreSQL when TEST_DATABASE_URL is set), talking to a real SMTP server (aiosmtpd) and to the
Stripe simulator over HTTP. "During" is a place, never a moment: the process is parked there
and killed while it waits, so a slow or busy machine changes nothing. The places: the k-th SMTP
hand-over (the server holds its reply until the kill), and, through the test-only kill points
of donorhub/park_for_kill.py (tests/kill_points.py), just after the k-th Stripe API call
returned (Stripe has acted, nothing of ours is committed), just after the n-th committed unit
of work, or, for jobs that do their work in one transaction (publish_updates,
publish_releases, each exit notice), inside that transaction with its writes flushed. The slow
tier adds a kill at every step of whole runs (start, inside the transaction, after the
commit, the end).

`flask jobs run` holds the jobs lock; `flask jobs run-once` does not take it, so the lock is
checked after killing the scheduler (the send_mail test).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from config import TestingConfig
from donorhub.database import utcnow
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage, OutboxStatus
from donorhub.mail.services import queue_mail
from tests.feed.builders import Batch, child, crowd, exit_record
from tests.feed.builders import update as update_record
from tests.helpers import HANG_GUARD_SECONDS, MailSink, free_port
from tests.kill_points import ParkingSpot
from tests.metrics import METRICS
from tests.payments.stripe_helpers import checkout_url, give
from tests.sponsorship.helpers import (
    choose,
    load_children,
    signed_in_client,
    sponsor_through_stripe,
    taken_a_minute_ago,
)

ROOT = Path(__file__).resolve().parents[2]


# Processes -----------------------------------------------------------------------------------


def job_env(app, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a real jobs process on this test's database."""
    config = app.config
    env = {
        **os.environ,
        "FLASK_APP": "wsgi",
        "DONORHUB_ENV": "development",
        "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
        "DONORHUB_INSTANCE_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "SECRET_KEY": TestingConfig.SECRET_KEY,
        "FEED_PSEUDONYM_KEY": config["FEED_PSEUDONYM_KEY"],
        "PUBLIC_BASE_URL": config["PUBLIC_BASE_URL"],
        "STRIPE_API_BASE": config["STRIPE_API_BASE"],
        "STRIPE_WEBHOOK_SECRET": config["STRIPE_WEBHOOK_SECRET"],
        "MAIL_DELIVERY": "hold",
        "LOG_LEVEL": "WARNING",
        "JOBS_MAIL_INTERVAL_SECONDS": "3600",
    }
    for name in ("STRIPE_SECRET_KEY", "FLASK_DEBUG", "FEED_DIR", "FEED_URL"):
        env.pop(name, None)
    env.update(extra)
    return env


def flask(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", *args]


def start(env: dict[str, str], tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"job-{time.monotonic_ns()}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            flask(*args),
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return process, log


def kill_when_held(env: dict[str, str], tmp_path: Path, held: threading.Event, *args: str) -> None:
    """Start `flask ARGS` and SIGKILL it once `held` is set: the SMTP server holds the
    process's hand-over open (its reply withheld), so it waits there until the kill. The
    0.05 s wait only lets a process that ended early fail the test at once."""
    process, log = start(env, tmp_path, *args)
    guard = time.monotonic() + HANG_GUARD_SECONDS  # a hang guard only
    try:
        while not held.wait(0.05):
            assert time.monotonic() < guard, f"hang guard: flask {' '.join(args)} never held"
            if process.poll() is not None:
                raise AssertionError(
                    f"flask {' '.join(args)} ended (exit {process.returncode})"
                    f" before the kill point:\n{log.read_text()[-3000:]}"
                )
        process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL


def kill_parked(
    env: dict[str, str],
    tmp_path: Path,
    point: str,
    *args: str,
    nth: int = 1,
    match: str = "",
    may_finish: bool = False,
) -> bool:
    """Start `flask ARGS` parked at the `nth` arrival at `point` (donorhub/park_for_kill.py)
    and SIGKILL it there. True when killed; False when `may_finish` and it ended first."""
    with ParkingSpot() as spot:
        process, log = start({**env, **spot.env(point, nth, match)}, tmp_path, *args)
        return spot.kill_when_parked(process, log, may_finish=may_finish)


def run_to_end(env: dict[str, str], tmp_path: Path, *args: str) -> str:
    process, log = start(env, tmp_path, *args)
    assert process.wait(timeout=180) == 0, log.read_text()[-3000:]
    return log.read_text()


def lock_is_free(app, tmp_path: Path, within: float = 120) -> bool:
    """A new process can take the jobs lock (the one `flask jobs run` holds). PostgreSQL
    frees an advisory lock when the dead process's backend sees its socket close, which
    takes a moment; the file lock beside a SQLite file is freed by the kernel at once.
    `within` only bounds a lock that is never freed: the first free moment ends the wait."""
    from donorhub.jobs.lock import SchedulerLock

    deadline = time.monotonic() + within
    while True:
        lock = SchedulerLock(
            app.config["SQLALCHEMY_DATABASE_URI"], app.config["JOBS_LOCK_ID"], str(tmp_path)
        )
        if lock.acquire():
            lock.release()
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def scalar(app, statement):
    with app.app_context():
        value = db.session.scalar(statement)
        db.session.remove()
        return value


def rows(app, statement) -> list:
    with app.app_context():
        found = list(db.session.execute(statement).all())
        db.session.remove()
        return found


def count(app, model, *where) -> int:
    return scalar(app, select(func.count()).select_from(model).where(*where)) or 0


def report(
    job: str, backend: str, kills: int, after_kill: str, duplicates: int, missing: int
) -> None:
    METRICS.report(
        f"faults: {job} killed mid-job ({backend}): kills / state after kill / "
        "duplicates / missing",
        f"{kills} / {after_kill} / {duplicates} / {missing}",
    )


# A real SMTP server that holds the k-th hand-over open ----------------------------------------


class GatedSink(MailSink):
    """aiosmtpd handler: the message numbered `gate` is received whole, then its 250 reply is
    held back until `release` is set, so a sender killed now cannot know it was delivered."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: int | None = None
        self.reached = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's API
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.messages) == self.gate:
            self.reached.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        return reply

    def hold(self, number: int) -> None:
        self.gate, self.reached, self.release = number, threading.Event(), threading.Event()


@pytest.fixture
def gated_smtp():
    from aiosmtpd.controller import Controller

    sink = GatedSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    sink.release.set()
    controller.stop()


# send_mail --------------------------------------------------------------------------------


def test_send_mail_killed_mid_hand_over_delivers_each_message_once(
    app, tmp_path, backend, gated_smtp
):
    sink, port = gated_smtp
    total = 30
    with app.app_context():
        for n in range(total):
            queue_mail(
                f"reader{n}@example.org",
                "accounts/password_changed",
                subject=f"Notice {n}",
                name=f"Reader {n}",
                reset_url="x",
            )
        db.session.commit()
        db.session.remove()
    # The sender waits up to ten minutes for a reply, so it is still waiting at the kill.
    env = job_env(
        app,
        tmp_path,
        MAIL_DELIVERY="smtp",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(port),
        JOBS_MAIL_INTERVAL_SECONDS="1",
        MAIL_TIMEOUT_SECONDS="600",
    )

    # Kill 1: the scheduler itself (`flask jobs run`, which holds the jobs lock), while the
    # SMTP server holds the reply to the 6th message.
    sink.hold(6)
    kill_when_held(env, tmp_path, sink.reached, "jobs", "run")
    sink.release.set()
    assert lock_is_free(app, tmp_path), "the killed jobs process still holds the jobs lock"
    states = dict(Counter(s for (s,) in rows(app, select(OutboxMessage.status))))
    assert states == {
        OutboxStatus.SENT: 5,
        OutboxStatus.SENDING: 1,
        OutboxStatus.PENDING: total - 6,
    }, states
    # Kill 2: `flask jobs run-once send_mail`, at the 15th hand-over overall.
    sink.hold(15)
    kill_when_held(env, tmp_path, sink.reached, "jobs", "run-once", "send_mail")
    sink.release.set()
    # The next run completes the rest; the two messages in hand stay "sending" (not re-sent).
    run_to_end(env, tmp_path, "jobs", "run-once", "send_mail")
    in_hand = {
        row.message_id
        for row in rows(
            app,
            select(OutboxMessage.message_id).where(OutboxMessage.status == OutboxStatus.SENDING),
        )
    }
    assert len(in_hand) == 2
    # Ten minutes on, a later run marks them "uncertain" (docs/operations.md) and sends
    # nothing again.
    with app.app_context():
        from donorhub.mail.sender import send_due_mail

        later = send_due_mail(now=datetime.now(UTC) + timedelta(minutes=11))
        db.session.remove()
    assert (later.uncertain, later.sent) == (2, 0)
    received = Counter(str(m.message["Message-ID"]) for m in sink.messages)
    expected = {row.message_id for row in rows(app, select(OutboxMessage.message_id))}
    duplicates = sum(n - 1 for n in received.values())
    missing = len(expected - set(received))
    assert duplicates == 0 and missing == 0, (duplicates, missing)
    uncertain = {
        row.message_id
        for row in rows(
            app,
            select(OutboxMessage.message_id).where(OutboxMessage.status == OutboxStatus.UNCERTAIN),
        )
    }
    assert uncertain == in_hand  # exactly the two whose hand-over was cut off
    assert count(app, OutboxMessage, OutboxMessage.status == OutboxStatus.SENT) == total - 2
    report(
        "send_mail",
        backend,
        2,
        "sent 5 / sending 1 / pending 24 (then uncertain)",
        duplicates,
        missing,
    )


# send_update_notifications ---------------------------------------------------------------


def test_update_notifications_killed_mid_run_tell_each_person_once(
    app, tmp_path, backend, import_feed, make_user
):
    from donorhub.accounts.models import User
    from donorhub.sponsorship import conduct
    from donorhub.sponsorship import services as sponsorship
    from donorhub.sponsorship.models import Sponsorship, SponsorshipStatus
    from donorhub.updates.models import Publication, UpdateNotification

    kids = load_children(app, import_feed, 5)
    people = 60
    users = [make_user(f"sponsor{n}@example.org") for n in range(people)]
    with app.app_context():
        from donorhub.children.models import ChildUpdate

        for n, handle in enumerate(users):
            sponsorship.accept_conduct(db.session.get(User, handle.id), conduct.CURRENT_VERSION)
            db.session.add(
                Sponsorship(
                    user_id=handle.id,
                    child_id=kids.ids[n % 5],
                    amount_minor=2500,
                    currency="gbp",
                    status=SponsorshipStatus.ACTIVE,
                    started_at=utcnow(),
                )
            )
        publication = Publication(scheduled_for=datetime(2026, 10, 15).date(), updates_published=5)
        db.session.add(publication)
        db.session.flush()
        db.session.execute(
            update(ChildUpdate)
            .where(ChildUpdate.child_id.in_(kids.ids))
            .values(publication_id=publication.id)
        )
        db.session.commit()
        db.session.remove()
    env = job_env(app, tmp_path)

    def notified() -> int:
        return count(app, UpdateNotification)

    def mails() -> int:
        return count(app, OutboxMessage, OutboxMessage.template == "updates/new_update")

    # Parked just after the 10th person's unit of work committed.
    kill_parked(
        env, tmp_path, "after-commit", "jobs", "run-once", "send_update_notifications", nth=10
    )
    decided = notified()
    assert decided == 10, decided
    assert mails() == decided  # each decision and its mail committed together
    run_to_end(env, tmp_path, "jobs", "run-once", "send_update_notifications")
    per_person = Counter(
        r
        for (r,) in rows(
            app,
            select(OutboxMessage.recipient).where(OutboxMessage.template == "updates/new_update"),
        )
    )
    duplicates = sum(n - 1 for n in per_person.values())
    missing = people - len(per_person)
    assert duplicates == 0 and missing == 0, (duplicates, missing)
    assert notified() == people
    assert scalar(app, select(Publication.notifications_done_at)) is not None
    report(
        "send_update_notifications",
        backend,
        1,
        f"{decided}/{people} people told, each with its mail",
        duplicates,
        missing,
    )


# Stripe-backed sponsorship jobs ------------------------------------------------------------


def sponsored(pay_app, import_feed, sponsor, sim, how_many: int):
    """`how_many` live sponsorships paid through the simulator, one child each."""
    kids = load_children(pay_app, import_feed, how_many)
    made = []
    for token in kids.tokens:
        person = sponsor(target_app=pay_app)
        row, _ = sponsor_through_stripe(pay_app, signed_in_client(pay_app, person), sim, token)
        made.append(row.id)
    return kids, made


def subscription_ids(app, sponsorship_ids) -> dict[int, str]:
    from donorhub.donations.models import RecurringPlan
    from donorhub.sponsorship.models import Sponsorship

    found = rows(
        app,
        select(Sponsorship.id, RecurringPlan.stripe_subscription_id)
        .join(RecurringPlan, RecurringPlan.id == Sponsorship.plan_id)
        .where(Sponsorship.id.in_(sponsorship_ids)),
    )
    return dict(found)


def api_calls(sim, method: str, prefix: str, suffix: str = "") -> int:
    return sum(
        1 for r in sim.requests(prefix) if r["method"] == method and r["path"].endswith(suffix)
    )


def events_for(sim, event_type: str, object_id: str) -> int:
    return sum(1 for e in sim.events((event_type,)) if e["data"]["object"]["id"] == object_id)


@pytest.mark.slow  # seeds live sponsorships or gifts through Stripe; ~1 min
def test_stop_collection_killed_mid_stripe_call_stops_each_once(
    pay_app, tmp_path, backend, import_feed, sponsor, sim
):
    from donorhub.children.models import ExitNotice
    from donorhub.sponsorship.models import Sponsorship, SponsorshipStatus

    how_many = 6
    kids, ids = sponsored(pay_app, import_feed, sponsor, sim, how_many)
    subs = subscription_ids(pay_app, ids)
    taken_a_minute_ago(pay_app)
    import_feed(Batch().add(*[exit_record(ref) for ref in kids.refs]), now=utcnow())
    with pay_app.app_context():  # collection stops only when the notice is due
        db.session.execute(update(ExitNotice).values(notify_after=utcnow() - timedelta(days=1)))
        db.session.commit()
        db.session.remove()
    outbox_before = count(pay_app, OutboxMessage)
    before = api_calls(sim, "POST", "/v1/subscriptions/")
    env = job_env(pay_app, tmp_path)
    # Parked as the 3rd pause returns from Stripe: Stripe has acted, our commit not made.
    kill_parked(
        env,
        tmp_path,
        "stripe-call",
        "jobs",
        "run-once",
        "stop_collection_after_exits",
        nth=3,
        match="POST /v1/subscriptions/",
    )
    assert api_calls(sim, "POST", "/v1/subscriptions/") - before == 3
    moved = count(pay_app, Sponsorship, Sponsorship.collection_stopped_at.is_not(None))
    paused_at_stripe = sum(
        1 for s in subs.values() if sim.api(f"/v1/subscriptions/{s}")["pause_collection"]
    )
    assert moved == 2 and paused_at_stripe == 3, (moved, paused_at_stripe)
    run_to_end(env, tmp_path, "jobs", "run-once", "stop_collection_after_exits")
    final = rows(
        pay_app,
        select(Sponsorship.status, Sponsorship.collection_stopped_at).where(
            Sponsorship.id.in_(ids)
        ),
    )
    # Stopped, and still active until the notice itself: the portal says nothing sooner.
    assert all(status is SponsorshipStatus.ACTIVE and stopped for status, stopped in final)
    pauses = {
        sub: sum(
            1
            for e in sim.events(("customer.subscription.updated",))
            if e["data"]["object"]["id"] == sub
            and "pause_collection" in e["data"].get("previous_attributes", {})
        )
        for sub in subs.values()
    }
    duplicates = sum(n - 1 for n in pauses.values() if n > 1)
    missing = sum(1 for n in pauses.values() if n == 0)
    assert duplicates == 0 and missing == 0, pauses
    assert count(pay_app, OutboxMessage) == outbox_before  # stopping mails nobody
    report(
        "stop_collection_after_exits",
        backend,
        1,
        "Stripe paused 3 / recorded 2 (the call in hand)",
        duplicates,
        missing,
    )

    # The neutral notice: one short transaction per notice (no payment since the exits, so
    # nothing to refund). Killed inside the first notice's transaction, then just after one
    # notice committed, then inside the next.
    from donorhub.sponsorship.models import SponsorMessage

    told_after = []
    for point in ("before-commit", "after-commit", "before-commit"):
        kill_parked(env, tmp_path, point, "jobs", "run-once", "send_sponsor_exit_notices")
        told = count(pay_app, ExitNotice, ExitNotice.sent_at.is_not(None))
        mailed = count(pay_app, OutboxMessage, OutboxMessage.template == "sponsorship/news")
        assert mailed == told, (mailed, told)  # each notice and its mail commit together
        told_after.append(told)
    assert told_after == [0, 1, 1], told_after
    kills, landed = (
        3,
        (
            "inside a notice's transaction / after one committed / inside the "
            f"next: {'/'.join(map(str, told_after))} of {how_many} notices kept"
        ),
    )
    run_to_end(env, tmp_path, "jobs", "run-once", "send_sponsor_exit_notices")
    notices = Counter(
        r
        for (r,) in rows(
            pay_app,
            select(OutboxMessage.recipient).where(OutboxMessage.template == "sponsorship/news"),
        )
    )
    messages = Counter(
        r
        for (r,) in rows(
            pay_app, select(SponsorMessage.sponsorship_id).where(SponsorMessage.kind == "moved_on")
        )
    )
    duplicates = sum(n - 1 for n in notices.values()) + sum(n - 1 for n in messages.values())
    missing = (how_many - len(notices)) + (how_many - len(messages))
    assert duplicates == 0 and missing == 0, (notices, messages)
    report("send_sponsor_exit_notices", backend, kills, landed, duplicates, missing)


def test_exit_notice_killed_between_refund_and_purge_refunds_once_and_tells_once(
    pay_app, tmp_path, backend, import_feed, sponsor, sim
):
    """send_sponsor_exit_notices killed as Stripe makes the second refund (our answer not
    recorded), then just after that answer is committed (refunded, not yet told or purged),
    then inside the notice's own transaction: the next run refunds nothing twice and tells
    each sponsor once."""
    from donorhub.children.models import ChildUpdate, ExitNotice, ReviewStatus
    from donorhub.donations.models import Refund
    from donorhub.sponsorship.models import SponsorMessage, Sponsorship

    how_many = 2
    kids = load_children(pay_app, import_feed, 5)  # K look-alikes, so they are listed
    ids = []
    for token in kids.tokens[:how_many]:
        client = signed_in_client(pay_app, sponsor(target_app=pay_app))
        row, postman = sponsor_through_stripe(pay_app, client, sim, token)
        ids.append(row.id)
    taken_a_minute_ago(pay_app)
    import_feed(Batch().add(*[exit_record(ref) for ref in kids.refs[:how_many]]), now=utcnow())
    for sub in subscription_ids(pay_app, ids).values():  # a payment after each exit
        sim.control(f"/_sim/subscriptions/{sub}/renew")
    postman.flush()
    with pay_app.app_context():
        db.session.execute(update(ExitNotice).values(notify_after=utcnow() - timedelta(days=1)))
        db.session.commit()
        db.session.remove()
    env = job_env(pay_app, tmp_path)
    job = ("jobs", "run-once", "send_sponsor_exit_notices")

    def made() -> int:
        return len(sim.api("/v1/refunds?limit=100")["data"])

    def told() -> tuple[int, int, int]:
        return (
            count(pay_app, ExitNotice, ExitNotice.sent_at.is_not(None)),
            count(pay_app, OutboxMessage, OutboxMessage.template == "sponsorship/news"),
            count(pay_app, SponsorMessage, SponsorMessage.kind == "moved_on"),
        )

    landed = []
    kill_parked(env, tmp_path, "stripe-call", *job, nth=2, match="POST /v1/refunds")
    recorded = count(pay_app, Refund, Refund.stripe_refund_id.is_not(None))
    assert (made(), recorded, told()) == (2, 1, (0, 0, 0))
    landed.append("Stripe made 2 refunds / 1 recorded")
    kill_parked(env, tmp_path, "after-commit", *job)  # the second refund's answer committed
    recorded = count(pay_app, Refund, Refund.stripe_refund_id.is_not(None))
    assert (made(), recorded, told()) == (2, 2, (0, 0, 0))
    landed.append("both recorded, nobody told")
    kill_parked(env, tmp_path, "before-commit", *job)  # inside the notice's transaction
    assert (made(), told()) == (2, (0, 0, 0))
    landed.append("notice rolled back")
    run_to_end(env, tmp_path, *job)
    run_to_end(env, tmp_path, *job)
    assert told() == (how_many, how_many, how_many)
    refunds = sim.api("/v1/refunds?limit=100")["data"]
    per_payment = Counter(r["payment_intent"] for r in refunds)
    duplicates = sum(n - 1 for n in per_payment.values())
    missing = how_many - len(per_payment)
    assert duplicates == 0 and missing == 0, per_payment
    purged = rows(
        pay_app,
        select(ChildUpdate.status).where(ChildUpdate.child_id.in_(kids.ids[:how_many])),
    )
    assert all(status is ReviewStatus.WITHDRAWN for (status,) in purged)
    stopped = rows(
        pay_app, select(Sponsorship.collection_stopped_at).where(Sponsorship.id.in_(ids))
    )
    assert all(at is not None for (at,) in stopped)
    report(
        "send_sponsor_exit_notices (refunds)", backend, 3, " / ".join(landed), duplicates, missing
    )


def test_lapse_killed_mid_stripe_call_lapses_each_once(
    pay_app, tmp_path, backend, import_feed, sponsor, sim
):
    from donorhub.sponsorship.models import SponsorMessage, Sponsorship, SponsorshipStatus

    how_many = 6
    _kids, ids = sponsored(pay_app, import_feed, sponsor, sim, how_many)
    subs = subscription_ids(pay_app, ids)
    with pay_app.app_context():
        db.session.execute(
            update(Sponsorship)
            .where(Sponsorship.id.in_(ids))
            .values(status=SponsorshipStatus.PAST_DUE, past_due_since=utcnow() - timedelta(days=20))
        )
        db.session.commit()
        db.session.remove()
    before = api_calls(sim, "DELETE", "/v1/subscriptions/")
    env = job_env(pay_app, tmp_path)
    # Parked as the 3rd cancellation returns from Stripe: Stripe has acted, our commit not made.
    kill_parked(
        env,
        tmp_path,
        "stripe-call",
        "jobs",
        "run-once",
        "lapse_sponsorships",
        nth=3,
        match="DELETE /v1/subscriptions/",
    )
    assert api_calls(sim, "DELETE", "/v1/subscriptions/") - before == 3
    lapsed = count(pay_app, Sponsorship, Sponsorship.status == SponsorshipStatus.LAPSED)
    assert lapsed == 2, lapsed
    run_to_end(env, tmp_path, "jobs", "run-once", "lapse_sponsorships")
    assert (
        count(
            pay_app,
            Sponsorship,
            Sponsorship.id.in_(ids),
            Sponsorship.status == SponsorshipStatus.LAPSED,
        )
        == how_many
    )
    mails = Counter(
        r
        for (r,) in rows(
            pay_app,
            select(OutboxMessage.recipient).where(OutboxMessage.template == "sponsorship/lapsed"),
        )
    )
    messages = Counter(
        r
        for (r,) in rows(
            pay_app, select(SponsorMessage.sponsorship_id).where(SponsorMessage.kind == "lapsed")
        )
    )
    cancels = {sub: events_for(sim, "customer.subscription.deleted", sub) for sub in subs.values()}
    duplicates = sum(n - 1 for c in (mails, messages, cancels) for n in c.values() if n > 1)
    missing = 3 * how_many - len(mails) - len(messages) - sum(1 for n in cancels.values() if n)
    assert duplicates == 0 and missing == 0, (mails, messages, cancels)
    report("lapse_sponsorships", backend, 1, "Stripe cancelled 3 / recorded 2", duplicates, missing)


@pytest.mark.slow  # seeds live sponsorships or gifts through Stripe; ~1 min
def test_hold_release_killed_mid_stripe_call_releases_each_once(
    pay_app, tmp_path, backend, import_feed, sponsor, sim
):
    from donorhub.sponsorship.models import Sponsorship, SponsorshipPlace, SponsorshipStatus

    how_many = 6
    kids = load_children(pay_app, import_feed, how_many)
    sessions = []
    for token in kids.tokens:
        response = choose(signed_in_client(pay_app, sponsor(target_app=pay_app)), token)
        assert response.status_code == 303
        sessions.append(response.headers["Location"].rstrip("/").rsplit("/", 1)[-1])
    with pay_app.app_context():
        db.session.execute(
            update(Sponsorship).values(hold_expires_at=utcnow() - timedelta(minutes=1))
        )
        db.session.commit()
        db.session.remove()
    before = api_calls(sim, "POST", "/v1/checkout/sessions/", "/expire")
    env = job_env(pay_app, tmp_path)
    # Parked as the 3rd expiry returns from Stripe: Stripe has acted, our commit not made.
    kill_parked(
        env,
        tmp_path,
        "stripe-call",
        "jobs",
        "run-once",
        "release_sponsorship_holds",
        nth=3,
        match="POST /v1/checkout/sessions/",
    )
    assert api_calls(sim, "POST", "/v1/checkout/sessions/", "/expire") - before == 3
    released = count(pay_app, Sponsorship, Sponsorship.status == SponsorshipStatus.EXPIRED)
    assert released == 2, released
    run_to_end(env, tmp_path, "jobs", "run-once", "release_sponsorship_holds")
    assert count(pay_app, Sponsorship) == how_many
    assert count(pay_app, Sponsorship, Sponsorship.status == SponsorshipStatus.EXPIRED) == how_many
    assert count(pay_app, SponsorshipPlace) == 0  # every place given back
    expired = {s: events_for(sim, "checkout.session.expired", s) for s in sessions}
    duplicates = sum(n - 1 for n in expired.values() if n > 1)
    missing = sum(1 for n in expired.values() if n == 0)
    assert duplicates == 0 and missing == 0, expired
    report(
        "release_sponsorship_holds",
        backend,
        1,
        "Stripe expired 3 / released 2",
        duplicates,
        missing,
    )


# reconcile_stripe ----------------------------------------------------------------------------


@pytest.mark.slow  # seeds live sponsorships or gifts through Stripe; ~1 min
def test_reconcile_killed_mid_run_applies_each_event_once(
    pay_app, pay_client, tmp_path, backend, sim
):
    from donorhub.donations.models import Donation, DonationStatus
    from donorhub.payments.models import StripeEvent

    gifts = 8
    for n in range(gifts):
        sim.pay(checkout_url(give(pay_client, email=f"giver{n}@example.org")))
    events = {e["id"] for e in sim.events()}  # none delivered: the webhook "was down"
    env = job_env(pay_app, tmp_path)
    # Parked just after the 8th unit of work (one event each) committed.
    kill_parked(env, tmp_path, "after-commit", "jobs", "run-once", "reconcile_stripe", nth=8)
    applied = count(pay_app, StripeEvent)
    assert applied == 8 < len(events), applied
    run_to_end(env, tmp_path, "jobs", "run-once", "reconcile_stripe")
    held = Counter(r for (r,) in rows(pay_app, select(StripeEvent.event_id)))
    duplicates = sum(n - 1 for n in held.values())
    missing = len(events - set(held))
    assert duplicates == 0 and missing == 0, (duplicates, missing)
    assert count(pay_app, Donation) == gifts
    assert count(pay_app, Donation, Donation.status == DonationStatus.PAID) == gifts
    receipts = Counter(
        r
        for (r,) in rows(
            pay_app,
            select(OutboxMessage.recipient).where(OutboxMessage.template == "donations/receipt"),
        )
    )
    assert sorted(receipts.values()) == [1] * gifts, receipts  # one receipt per gift
    report(
        "reconcile_stripe",
        backend,
        1,
        f"{applied}/{len(events)} events applied",
        duplicates,
        missing,
    )


# Single-transaction jobs: publish_updates, publish_releases ------------------------------


def test_publish_updates_killed_inside_its_transaction_publishes_once(
    app, tmp_path, backend, import_feed
):
    from donorhub.children.models import ChildUpdate
    from donorhub.updates.models import Publication

    records = crowd(20)
    batch = Batch().add(*records)
    for record in records:  # coded updates, approved by the job itself (auto-approve on)
        batch.add(*[update_record(record["ref"]) for _ in range(10)])
    import_feed(batch)
    waiting = count(app, ChildUpdate, ChildUpdate.published_at.is_(None))
    assert waiting == 200
    env = job_env(app, tmp_path, UPDATES_AUTO_APPROVE_CODED="1")
    # Parked inside its one transaction, every write flushed, the commit not yet made.
    kill_parked(env, tmp_path, "before-commit", "jobs", "run-once", "publish_updates")
    publications = count(app, Publication)
    still_waiting = count(app, ChildUpdate, ChildUpdate.published_at.is_(None))
    assert (publications, still_waiting) == (0, waiting)  # nothing of it stays
    kills, landed = 1, "killed inside its write transaction: 0 published, 0 publications"
    run_to_end(env, tmp_path, "jobs", "run-once", "publish_updates")
    assert count(app, Publication) == 1
    published = Counter(
        r
        for (r,) in rows(
            app, select(ChildUpdate.publication_id).where(ChildUpdate.published_at.is_not(None))
        )
    )
    assert sum(published.values()) == waiting and len(published) == 1
    assert scalar(app, select(Publication.updates_published)) == waiting
    report("publish_updates", backend, kills, landed, 0, waiting - sum(published.values()))


def test_publish_releases_killed_inside_its_transaction_decides_each_child_once(
    app, tmp_path, backend, import_feed
):
    from donorhub.children.models import Child, ChildRelease

    import_feed(Batch().add(*crowd(30), *crowd(30, age_band="9-11")))
    with app.app_context():  # the younger group's consent ran out last quarter
        db.session.execute(
            update(Child).where(Child.age_band == "9-11").values(consent_expires="2026-Q3")
        )
        db.session.commit()
        db.session.remove()
    listed_query = select(Child.age_band).join(ChildRelease).where(ChildRelease.is_listed.is_(True))
    before = Counter(r for (r,) in rows(app, listed_query))
    assert before == {"12-14": 30, "9-11": 30}
    env = job_env(app, tmp_path)
    decided = Counter({"12-14": 30})
    # Parked inside its one transaction, every write flushed, the commit not yet made.
    kill_parked(env, tmp_path, "before-commit", "jobs", "run-once", "publish_releases")
    at_kill = Counter(r for (r,) in rows(app, listed_query))
    assert at_kill == before, at_kill  # the listing as it was: no child decided
    kills, landed = 1, "killed inside its write transaction: listing unchanged"
    run_to_end(env, tmp_path, "jobs", "run-once", "publish_releases")
    after = Counter(r for (r,) in rows(app, listed_query))
    assert after == decided
    assert count(app, ChildRelease) == 60  # one release row per child, none doubled
    report("publish_releases", backend, kills, landed, 0, 0)


def test_shuffle_listing_killed_inside_its_transaction_orders_each_card_once(
    app, tmp_path, backend, import_feed
):
    from donorhub.children.models import ChildRelease

    import_feed(Batch().add(*crowd(30)))  # published on the feed fixture's day, not today
    ordered = select(ChildRelease.list_day, ChildRelease.list_order).where(
        ChildRelease.is_listed.is_(True)
    )
    before = sorted(rows(app, ordered))
    assert len(before) == 30 and len({day for day, _ in before}) == 1
    env = job_env(app, tmp_path)
    # Parked inside its one transaction, every key flushed, the commit not yet made.
    kill_parked(env, tmp_path, "before-commit", "jobs", "run-once", "shuffle_listing")
    assert sorted(rows(app, ordered)) == before  # the stored order as it was
    kills, landed = 1, "killed inside its write transaction: stored order unchanged"
    run_to_end(env, tmp_path, "jobs", "run-once", "shuffle_listing")
    after = sorted(rows(app, ordered))
    assert len({day for day, _ in after}) == 1 and after[0][0] != before[0][0]
    assert len({key for _, key in after}) == 30  # every card keyed once for the new day
    report("shuffle_listing", backend, kills, landed, 0, 0)


# purge_mail_throttle ------------------------------------------------------------------------


def test_purge_mail_throttle_killed_inside_its_transaction_purges_nothing_then_all(
    app, tmp_path, backend
):
    from donorhub.accounts.models import MailThrottle

    now = utcnow()
    with app.app_context():
        db.session.add_all(
            [
                MailThrottle(
                    recipient_hash=f"{n:064x}",
                    kind="reset",
                    created_at=now - timedelta(minutes=10 if n < 10 else 130),
                )
                for n in range(40)
            ]
        )
        db.session.commit()
        db.session.remove()
    env = job_env(app, tmp_path)
    # Parked inside its one transaction, the delete flushed, the commit not yet made.
    kill_parked(env, tmp_path, "before-commit", "jobs", "run-once", "purge_mail_throttle")
    assert count(app, MailThrottle) == 40  # nothing purged
    run_to_end(env, tmp_path, "jobs", "run-once", "purge_mail_throttle")
    assert count(app, MailThrottle) == 10  # the ten of the last hour stay
    assert count(app, MailThrottle, MailThrottle.created_at < now - timedelta(hours=1)) == 0
    report("purge_mail_throttle", backend, 1, "killed inside its write transaction: 0 purged", 0, 0)


# import_feed (the drop directory) ----------------------------------------------------------


@pytest.mark.slow  # three batches, two imports (tests/feed/test_atomicity.py covers kill -9)
def test_import_feed_killed_between_batches_imports_each_batch_once(app, tmp_path, backend):
    from donorhub.children.models import Child
    from donorhub.feed.models import FeedRun, FeedRunStatus

    drop = tmp_path / "drop"
    drop.mkdir()
    per_batch, batches = 100, 3
    for b in range(batches):
        records = [
            child(f"c-kill{b}-{n:05d}", about="Loves football and maths.") for n in range(per_batch)
        ]
        (drop / f"batch-{b}.jsonl").write_bytes(Batch(batch=f"kill-{b}").add(*records).bytes())
    env = job_env(app, tmp_path, FEED_DIR=str(drop))
    completed = FeedRun.status == FeedRunStatus.COMPLETED
    # Parked just after the first batch committed, before its file is taken out of the drop
    # directory: the next run finds that batch already imported.
    kill_parked(env, tmp_path, "after-commit", "jobs", "run-once", "import_feed")
    done = count(app, FeedRun, completed)
    files_left = sorted(p.name for p in drop.glob("*.jsonl"))
    assert done == 1 and len(files_left) == batches, (done, files_left)
    assert count(app, Child) == done * per_batch  # whole batches only
    run_to_end(env, tmp_path, "jobs", "run-once", "import_feed")
    runs = Counter(r for (r,) in rows(app, select(FeedRun.batch).where(completed)))
    duplicates = sum(n - 1 for n in runs.values())
    missing = batches - len(runs)
    assert duplicates == 0 and missing == 0, runs
    assert count(app, Child) == batches * per_batch
    assert not list(drop.glob("*.jsonl"))  # the drop directory is consumed
    report(
        "import_feed",
        backend,
        1,
        f"{done} batch(es) committed, files left {files_left}",
        duplicates,
        missing,
    )


@pytest.mark.slow  # four more kills per job, each a fresh process
@pytest.mark.parametrize("job", ["publish_updates", "publish_releases"])
def test_single_transaction_jobs_killed_at_each_step_leave_before_or_after(
    app, tmp_path, backend, import_feed, job
):
    """A kill at each step of the run (as the job starts, inside its transaction, just after
    its commit, as it returns) leaves exactly the state before the job or after it."""
    from donorhub.children import services as children
    from donorhub.children.models import Child, ChildRelease, ChildUpdate, ReviewStatus
    from donorhub.updates.models import Publication

    records = crowd(20) + crowd(20, age_band="9-11")
    import_feed(
        Batch().add(*records, *[update_record(r["ref"]) for r in records for _ in range(5)])
    )

    def expire_younger(expires: str) -> None:  # publish_releases' work: consent ran out
        db.session.execute(
            update(Child).where(Child.age_band == "9-11").values(consent_expires=expires)
        )

    def reset() -> None:
        with app.app_context():
            db.session.execute(
                update(ChildUpdate).values(
                    published_at=None, publication_id=None, status=ReviewStatus.PENDING
                )
            )
            db.session.execute(Publication.__table__.delete())
            expire_younger("2027-Q2")
            children.publish_releases(utcnow())
            expire_younger("2026-Q3")
            db.session.commit()
            db.session.remove()

    def state():
        return (
            count(app, Publication),
            count(app, ChildUpdate, ChildUpdate.published_at.is_not(None)),
            count(app, ChildRelease, ChildRelease.is_listed.is_(True)),
        )

    reset()
    before = state()
    env = job_env(app, tmp_path, UPDATES_AUTO_APPROVE_CODED="1")
    run_to_end(env, tmp_path, "jobs", "run-once", job)
    after = state()
    assert after != before
    reset()
    assert state() == before
    landed = []
    for point, expected in (
        ("job-start", before),
        ("before-commit", before),
        ("after-commit", after),
        ("job-end", after),
    ):
        kill_parked(env, tmp_path, point, "jobs", "run-once", job)
        now = state()
        assert now == expected, (point, now)
        landed.append(f"{point}: left {'before' if now == before else 'after'}")
        reset()
    run_to_end(env, tmp_path, "jobs", "run-once", job)
    assert state() == after
    report(f"{job} (every step)", backend, len(landed), ", ".join(landed), 0, 0)


def test_every_job_has_a_kill_test():
    """A job added to JOB_MODULES without a kill test here fails this."""
    from donorhub import create_app
    from donorhub.jobs.registry import all_jobs

    with create_app(TestingConfig).app_context():
        names = {job.name for job in all_jobs()}
    source = Path(__file__).read_text()
    untested = sorted(name for name in names if f'"{name}"' not in source)
    assert not untested, untested
