"""Benchmark: Stripe's webhook, stored first and applied by the worker, on PostgreSQL.

    .venv/bin/python bench/webhooks.py [--quick]

`measure(quick)` (bench/ratios.py) builds two scratch databases on the machine's PostgreSQL
(donorhub_bench_webhook_app and _reference, dropped first, and afterwards when the run was
right), seeds pending gifts and plans, makes signed events of mixed types in Stripe's current
shapes (checkout sessions, payment intents, refunds, invoices, subscriptions, and types we
ignore) with 10% duplicates, shuffled. Then, with wrk (2 threads, 16 connections) against
gunicorn with 2 sync workers: /healthz; the same events to the verify-and-enqueue reference
(bench/webhook_reference.py: what the peer apps do); the same events to /stripe/webhook
(answered: stored and committed). Then the worker (`flask payments apply-events --once`)
applies everything stored, timed. Two ratios: answered ÷ verify-and-enqueue (goal 1.0) and
applied events/s ÷ /healthz req/s (goal 0.5); every event must be stored once and applied
once, each gift and plan in the state its events lead to (bench/load.py's checks).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import stripe  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from tests.system.stack import WEBHOOK_SECRET as SECRET  # noqa: E402

FIXTURES = json.loads((ROOT / "stripe_simulator/fixtures.json").read_text())["resources"]


def build_app(url: str):
    from config import DevelopmentConfig
    from donorhub import create_app

    return create_app(
        DevelopmentConfig,
        SQLALCHEMY_DATABASE_URI=url,
        LOG_LEVEL="WARNING",
        STRIPE_WEBHOOK_SECRET=SECRET,
    )


def seed(app, gifts: int, plans: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    from flask_migrate import upgrade

    from donorhub.donations.models import (
        Donation,
        DonationKind,
        Frequency,
        RecurringPlan,
    )
    from donorhub.donations.services import find_or_create_donor
    from donorhub.extensions import db

    with app.app_context():
        upgrade()
        donor = find_or_create_donor("bench@example.org", "Bench Donor")
        rows = [
            Donation(donor=donor, kind=DonationKind.ONCE, amount_minor=1000 + i, currency="gbp")
            for i in range(gifts)
        ]
        plan_rows = [
            RecurringPlan(
                donor=donor, amount_minor=2000 + i, currency="gbp", frequency=Frequency.MONTHLY
            )
            for i in range(plans)
        ]
        db.session.add_all(rows + plan_rows)
        db.session.commit()
        out = (
            [(r.public_id, r.amount_minor) for r in rows],
            [(p.public_id, p.amount_minor) for p in plan_rows],
        )
        db.session.remove()
        db.engine.dispose()
    return out


def event(kind: str, obj: dict, n: int) -> dict:
    body = copy.deepcopy(FIXTURES["event"])
    body.update(id=f"evt_bench_{n:06d}", type=kind, created=int(time.time()), livemode=False)
    body["data"] = {"object": obj}
    return body


def make_events(gifts, plans, seed_value: int = 7) -> tuple[list[dict], dict]:
    rng = random.Random(seed_value)
    events: list[dict] = []
    expected = {"paid": 0, "refunded": 0, "plans_active": len(plans)}
    for i, (public_id, amount) in enumerate(gifts):
        session = copy.deepcopy(FIXTURES["checkout.session"])
        session.update(
            id=f"cs_bench_{i}",
            mode="payment",
            status="complete",
            payment_status="paid",
            amount_total=amount,
            currency="gbp",
            metadata={"donation": public_id},
            payment_intent=f"pi_bench_{i}",
            subscription=None,
            customer=None,
        )
        events.append(event("checkout.session.completed", session, len(events)))
        intent = copy.deepcopy(FIXTURES["payment_intent"])
        intent.update(
            id=f"pi_bench_{i}",
            amount=amount,
            amount_received=amount,
            currency="gbp",
            status="succeeded",
            metadata={"donation": public_id},
        )
        events.append(event("payment_intent.succeeded", intent, len(events)))
        if i % 5 == 0:
            charge = copy.deepcopy(FIXTURES["charge"])
            charge.update(
                id=f"ch_bench_{i}",
                payment_intent=f"pi_bench_{i}",
                amount=amount,
                amount_refunded=amount,
                refunded=True,
                currency="gbp",
                status="succeeded",
                metadata={"donation": public_id},
            )
            events.append(event("charge.refunded", charge, len(events)))
            expected["refunded"] += 1
        else:
            expected["paid"] += 1
    for i, (public_id, amount) in enumerate(plans):
        session = copy.deepcopy(FIXTURES["checkout.session"])
        session.update(
            id=f"cs_bench_plan_{i}",
            mode="subscription",
            status="complete",
            payment_status="paid",
            amount_total=amount,
            currency="gbp",
            metadata={"plan": public_id},
            subscription=f"sub_bench_{i}",
            customer=f"cus_bench_{i}",
            payment_intent=None,
        )
        events.append(event("checkout.session.completed", session, len(events)))
        invoice = copy.deepcopy(FIXTURES["invoice"])
        invoice.update(
            id=f"in_bench_{i}",
            status="paid",
            amount_due=amount,
            amount_paid=amount,
            currency="gbp",
            customer=f"cus_bench_{i}",
            billing_reason="subscription_create",
            created=int(time.time()),
        )
        invoice["parent"] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "subscription": f"sub_bench_{i}",
                "metadata": {"plan": public_id},
            },
        }
        events.append(event("invoice.paid", invoice, len(events)))
    for _ in range(len(events) // 10):  # types we only acknowledge
        customer = copy.deepcopy(FIXTURES["customer"])
        events.append(event("customer.created", customer, len(events)))
    unique = len(events)
    duplicates = [copy.deepcopy(rng.choice(events)) for _ in range(unique // 10)]
    deliveries = events + duplicates
    rng.shuffle(deliveries)
    expected["unique"] = unique
    expected["duplicates"] = len(duplicates)
    return deliveries, expected


# The benchmark ---------------------------------------------------------------------------

#: Deliveries built per second of wrk: more than either endpoint can take, so wrk never
#: cycles back to events it sent (a repeat is a duplicate, cheaper than a new event).
DELIVERIES_PER_SECOND = 4000
APP_DATABASE = "donorhub_bench_webhook_app"
REFERENCE_DATABASE = "donorhub_bench_webhook_reference"


def start_reference(url: str, log_dir: Path):
    """bench/webhook_reference.py under gunicorn, 2 sync workers, on its own database."""
    from tests.system.stack import WEBHOOK_SECRET, free_port, spawn, wait_until_up

    table = (
        "CREATE TABLE queued_events (id bigserial PRIMARY KEY, "
        "event_id text UNIQUE NOT NULL, type text NOT NULL, payload text NOT NULL, "
        "received_at timestamptz NOT NULL DEFAULT now())"
    )
    setup = create_engine(url, poolclass=NullPool)
    with setup.begin() as connection:
        connection.execute(text(table))  # bench/webhook_reference.py's table
    setup.dispose()
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "bench.webhook_reference:app",
    ]
    env = {**os.environ, "DATABASE_URL": url, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    service = spawn("reference", command, env, log_dir)
    service.base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(service.base_url + "/healthz")
    except RuntimeError as error:
        service.stop()
        raise RuntimeError(f"{error}\n{service.output()[-3000:]}") from None
    return service


def signed_lines(path: str, bodies: list[str]) -> list[str]:
    from bench.load import line
    from tests.system.stack import WEBHOOK_SECRET

    return [
        line(
            "POST",
            path,
            body,
            Content_Type="application/json",
            Stripe_Signature=stripe.WebhookSignature.generate_signature_header(
                body, WEBHOOK_SECRET
            ),
        )
        for body in bodies
    ]


def drain_with_worker(url: str, **env: str) -> tuple[int, float, str]:
    """`flask payments apply-events --once`: (events applied, seconds, its line)."""
    import re

    from tests.system.stack import run_flask

    output = run_flask(url, "payments", "apply-events", "--once", quiet=True, **env).stdout
    found = re.search(r"(\d+) applied, (\d+) failed .* in ([0-9.]+) s", output)
    if not found:
        raise RuntimeError(f"the worker did not report: {output[-2000:]}")
    if int(found.group(2)):
        raise RuntimeError(f"the worker failed events: {output[-2000:]}")
    return int(found.group(1)), float(found.group(3)), found.group(0)


def queue_left(engine) -> tuple[int, int]:
    """(events not applied, applied events still holding a payload)."""
    with engine.connect() as connection:
        waiting = connection.execute(
            text("SELECT count(*) FROM stripe_events WHERE state <> 'applied'")
        ).scalar()
        payloads = connection.execute(
            text("SELECT count(*) FROM stripe_events WHERE payload IS NOT NULL")
        ).scalar()
    return waiting, payloads


def measure(quick: bool) -> list:
    """The webhook's two ratios, measured in one run (gunicorn 2 sync workers, PostgreSQL):

    - answered: signed deliveries answered per second by /stripe/webhook ÷ by the
      verify-and-enqueue reference (bench/webhook_reference.py), same events, same wrk;
    - applied: events the worker (`flask payments apply-events --once`) applies per second
      ÷ /healthz requests per second.

    Every event stored once, applied once, and each seeded gift and plan in the state its
    events lead to (bench/load.py's checks), else the ratios are marked wrong."""
    import tempfile
    from types import SimpleNamespace

    from bench.load import (
        Target,
        check_webhook_effects,
        complete_partial_rows,
        group_by_subject,
        line,
        run_wrk,
        wait_until_settled,
    )
    from bench.ratios import Ratio
    from tests.system.stack import (
        drop_database,
        fresh_database,
        migrate,
        start_gunicorn,
        start_simulator,
    )

    duration = 5 if quick else 30
    args = SimpleNamespace(threads=2, connections=16, duration=duration, timeout=30)
    work_dir = Path(tempfile.mkdtemp(prefix="donorhub-bench-webhook-"))
    url = fresh_database(APP_DATABASE)
    reference_url = fresh_database(REFERENCE_DATABASE)
    engine = create_engine(url, poolclass=NullPool)
    services = []
    try:
        migrate(url)
        app = build_app(url)
        gift_count = round(DELIVERIES_PER_SECOND * duration / 3.47)
        gifts, plans = seed(app, gift_count, max(1, gift_count // 3))
        deliveries, expected = make_events(gifts, plans)
        groups = group_by_subject(deliveries)
        shares: list[list[str]] = [[] for _ in range(args.threads)]
        for index, events in enumerate(groups.values()):
            shares[index % args.threads].extend(body for _, body in events)

        # A handler may ask Stripe (a refund's list, an invoice): the simulator answers, as
        # Stripe would, instead of a connection that fails after the library's retries.
        sim = start_simulator(work_dir / "logs", None)
        services.append(sim)
        stripe_env = {"STRIPE_API_BASE": sim.base_url}
        web = start_gunicorn(url, work_dir / "logs", workers=2, name="web", **stripe_env)
        services.append(web)
        reference = start_reference(reference_url, work_dir / "logs")
        services.append(reference)
        for _ in range(20):  # both workers of both servers warm
            for base, path in ((web.base_url, "/healthz"), (reference.base_url, "/healthz")):
                urllib_get(base + path)

        healthz = run_wrk(
            web.base_url,
            Target("/healthz", "/healthz", lines=[line("GET", "/healthz")]),
            args,
            work_dir,
        )
        enqueue = run_wrk(
            reference.base_url,
            Target(
                "verify-and-enqueue",
                "/webhook",
                "POST",
                per_thread=[signed_lines("/webhook", share) for share in shares],
            ),
            args,
            work_dir,
        )
        answered = run_wrk(
            web.base_url,
            Target(
                "webhook answered",
                "/stripe/webhook",
                "POST",
                per_thread=[signed_lines("/stripe/webhook", share) for share in shares],
            ),
            args,
            work_dir,
        )
        stored = wait_until_settled(engine)  # requests wrk left in flight end first
        partial, completed, statuses = complete_partial_rows(engine, web.base_url, groups)
        applied, seconds, worker_line = drain_with_worker(url, **stripe_env)
        check = check_webhook_effects(engine, gifts, plans, groups)
        waiting, payloads = queue_left(engine)
    finally:
        for service in services:
            service.stop()
        engine.dispose()
    problems = list(check["problems"])
    for result in (healthz, enqueue, answered):
        if result.errors:
            problems.append(f"{result.name}: {result.errors} errors {result.statuses}")
    if set(statuses) - {200}:
        problems.append(f"completing partial rows: {statuses}")
    if waiting or payloads:
        problems.append(f"{waiting} events not applied, {payloads} payloads kept")
    if applied != check["events_stored"]:
        problems.append(f"{applied} applied by the worker for {check['events_stored']} stored")
    correct = not problems
    if correct:
        drop_database(APP_DATABASE)
        drop_database(REFERENCE_DATABASE)
    applied_rate = applied / seconds if seconds else 0.0
    note = "; ".join(problems[:3])
    print(
        f"webhook: /healthz {healthz.requests_per_s:.0f} req/s; verify-and-enqueue "
        f"{enqueue.requests_per_s:.0f}/s; /stripe/webhook answered {answered.requests_per_s:.0f}/s "
        f"({stored} events stored in the run, {completed} more for {partial} rows wrk left "
        f"half-sent); worker: {worker_line}; checks: "
        f"{check['gifts_paid']} gifts paid, {check['gifts_refunded']} refunded, "
        f"{check['plans_active']} plans active, {check['receipt_mails']} receipt mails"
        + (f"; PROBLEMS: {note}" if note else ""),
        flush=True,
    )
    return [
        Ratio(
            "webhook answered ÷ verify-and-enqueue",
            answered.requests_per_s / enqueue.requests_per_s if enqueue.requests_per_s else 0.0,
            1.0,
            detail=f"{answered.requests_per_s:.0f} vs {enqueue.requests_per_s:.0f} deliveries/s",
            correct=correct,
        ),
        Ratio(
            "webhook events applied ÷ /healthz",
            applied_rate / healthz.requests_per_s if healthz.requests_per_s else 0.0,
            0.5,
            detail=f"{applied_rate:.0f} events/s vs {healthz.requests_per_s:.0f} req/s",
            correct=correct,
        ),
    ]


def urllib_get(address: str) -> int:
    import urllib.request

    with urllib.request.urlopen(address, timeout=10) as response:  # noqa: S310 - loopback
        return response.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per target instead of 30")
    args = parser.parse_args()
    ratios = measure(args.quick)
    for ratio in ratios:
        verdict = "pass" if ratio.passed else "FAIL"
        print(f"{ratio.name}: {ratio.value:.2f} (goal {ratio.goal}) {verdict}  [{ratio.detail}]")
    if not all(r.correct for r in ratios):
        sys.exit(1)


if __name__ == "__main__":
    main()
