"""Benchmark: signed Stripe webhooks under gunicorn (2 workers) on PostgreSQL.

    .venv/bin/python bench/webhooks.py [--gifts 600] [--plans 200] [--clients 16]

Builds a fresh PostgreSQL database (BENCH_DATABASE_URL, default
postgresql://postgres@127.0.0.1/donorhub_bench; it is dropped and re-created), seeds pending
gifts and plans, makes signed events of mixed types in Stripe's current shapes (checkout
sessions, payment intents, refunds, invoices, subscriptions, and types we ignore), adds 10%
duplicates, shuffles them, and posts them from concurrent clients. In the same run the same
clients hit a trivial endpoint (/healthz). It prints events per second, the ratio to the
trivial endpoint, and checks that no event was lost and none counted twice.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import stripe  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

SECRET = "whsec_benchmark_only"  # noqa: S105
FIXTURES = json.loads((ROOT / "stripe_simulator/fixtures.json").read_text())["resources"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database(url: str) -> str:
    """Drop and create the benchmark database; returns its psycopg URL."""
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    base, name = url.rsplit("/", 1)
    admin = create_engine(f"{base}/postgres", poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url


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


def post_all(
    port: int, bodies: list[bytes], path: str, clients: int, signed: bool
) -> tuple[float, dict[int, int]]:
    statuses: dict[int, int] = {}

    def send(body: bytes) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}
        if signed:
            headers["Stripe-Signature"] = stripe.WebhookSignature.generate_signature_header(
                body.decode(), SECRET
            )
        method = "POST" if signed else "GET"
        connection.request(method, path, body=body if signed else None, headers=headers)
        status = connection.getresponse().status
        connection.close()
        return status

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for status in pool.map(send, bodies):
            statuses[status] = statuses.get(status, 0) + 1
    return time.perf_counter() - started, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gifts", type=int, default=600)
    parser.add_argument("--plans", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    url = fresh_database(
        os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/donorhub_bench")
    )
    app = build_app(url)
    gifts, plans = seed(app, args.gifts, args.plans)
    deliveries, expected = make_events(gifts, plans)
    bodies = [json.dumps(e).encode() for e in deliveries]

    port = free_port()
    env = {
        **os.environ,
        "DONORHUB_ENV": "development",
        "DATABASE_URL": url,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
        "DONORHUB_INSTANCE_DIR": "/tmp/donorhub-bench",
    }
    server = subprocess.Popen(  # noqa: S603
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        post_all(port, [b""] * 50, "/healthz", args.clients, signed=False)  # warm up
        trivial_seconds, trivial_status = post_all(
            port, [b""] * len(bodies), "/healthz", args.clients, signed=False
        )
        hook_seconds, hook_status = post_all(
            port, bodies, "/stripe/webhook", args.clients, signed=True
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    from donorhub.donations.models import Donation, DonationStatus, PlanStatus, RecurringPlan
    from donorhub.extensions import db
    from donorhub.mail.models import OutboxMessage
    from donorhub.payments.models import StripeEvent

    with app.app_context():
        events_stored = db.session.scalar(select(func.count()).select_from(StripeEvent))
        paid = db.session.scalar(
            select(func.count())
            .select_from(Donation)
            .where(Donation.status == DonationStatus.PAID, Donation.plan_id.is_(None))
        )
        refunded = db.session.scalar(
            select(func.count())
            .select_from(Donation)
            .where(Donation.status == DonationStatus.REFUNDED)
        )
        plans_active = db.session.scalar(
            select(func.count())
            .select_from(RecurringPlan)
            .where(RecurringPlan.status == PlanStatus.ACTIVE)
        )
        instalments = db.session.scalar(
            select(func.count()).select_from(Donation).where(Donation.plan_id.is_not(None))
        )
        receipts_twice = db.session.execute(
            text(
                "SELECT count(*) FROM (SELECT recipient, subject FROM outbox_messages "
                "GROUP BY recipient, subject HAVING count(*) > 1) AS twice"
            )
        ).scalar()
        receipts = db.session.scalar(select(func.count()).select_from(OutboxMessage))
        db.engine.dispose()

    lost = (
        (expected["unique"] - events_stored)
        + (expected["paid"] - paid)
        + (expected["refunded"] - refunded)
        + (expected["plans_active"] - plans_active)
    )
    twice = (
        max(0, events_stored - expected["unique"])
        + receipts_twice
        + max(0, instalments - len(plans))
    )
    hook_rate = len(bodies) / hook_seconds
    trivial_rate = len(bodies) / trivial_seconds
    print(
        f"deliveries: {len(bodies)} ({expected['unique']} unique events, "
        f"{expected['duplicates']} duplicates), {args.clients} concurrent clients, "
        "gunicorn 2 sync workers, PostgreSQL"
    )
    print(f"webhook statuses: {hook_status}; trivial endpoint statuses: {trivial_status}")
    print(f"webhook:  {hook_rate:8.1f} events/s")
    print(f"/healthz: {trivial_rate:8.1f} requests/s")
    print(f"ratio webhook / trivial: {hook_rate / trivial_rate:.2f}")
    print(
        f"receipts queued: {receipts}; events stored: {events_stored}; "
        f"lost: {lost}; counted twice: {twice}"
    )
    if lost or twice or set(hook_status) != {200}:
        sys.exit(1)


if __name__ == "__main__":
    main()
