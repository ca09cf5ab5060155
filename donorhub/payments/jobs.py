"""Scheduled payments work: reconciliation with Stripe; and the event worker, the thread of
the jobs process (or `flask payments apply-events`) that applies stored webhook events.

The worker drains due events (webhooks.apply_due_events, one commit per batch), then waits:
on PostgreSQL on a LISTEN connection (psycopg 3, autocommit) that the webhook's NOTIFY wakes
as soon as an event is committed, at most WEBHOOK_WORKER_POLL_SECONDS (the safety net, and
when retries come due); on SQLite it polls at that interval.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask, current_app
from sqlalchemy.engine import make_url

from donorhub.extensions import db
from donorhub.jobs.registry import JobSpec, WorkerSpec
from donorhub.payments.event_queue import NOTIFY_CHANNEL
from donorhub.payments.reconcile import reconcile
from donorhub.payments.webhooks import ApplyReport, drain

log = logging.getLogger("donorhub.payments.worker")
#: The channel is a constant (event_queue.NOTIFY_CHANNEL); LISTEN takes no bound parameter.
LISTEN = "LISTEN stripe_events"
if NOTIFY_CHANNEL != "stripe_events":
    raise RuntimeError("LISTEN must name event_queue.NOTIFY_CHANNEL")


def reconcile_stripe() -> str:
    """Store any Stripe events that the webhook missed (the event worker applies them)."""
    return reconcile().summary()


class Listener:
    """A LISTEN connection on PostgreSQL (None elsewhere): `wait(seconds)` returns when a
    NOTIFY arrives or the time is up. It reconnects after the database went away."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.enabled = url.get_backend_name() == "postgresql"
        self.conninfo = (
            url.set(drivername="postgresql").render_as_string(hide_password=False)
            if self.enabled
            else ""
        )
        self.connection: Any = None  # a psycopg.Connection while listening

    def connect(self) -> None:
        import psycopg

        self.close()
        connection = psycopg.connect(self.conninfo, autocommit=True)
        connection.execute(LISTEN)
        self.connection = connection

    def wait(self, seconds: float, stop: threading.Event) -> None:
        if not self.enabled:
            stop.wait(seconds)
            return
        try:
            if self.connection is None or self.connection.closed:
                self.connect()
            for _notify in self.connection.notifies(timeout=seconds, stop_after=1):
                break
            # Every stored event sent one: take those already queued too, so one drain
            # answers them all.
            for _notify in self.connection.notifies(timeout=0):
                pass
        except Exception:  # noqa: BLE001 - the database went away: poll, reconnect next time
            log.warning("event worker: LISTEN connection lost; polling until it is back")
            self.close()
            stop.wait(seconds)

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:  # noqa: BLE001, S110 - closing a dead connection may fail too
                pass
            self.connection = None


def apply_now(app: Flask) -> ApplyReport:
    """Apply every due event now (one batch per commit); the worker's step."""
    with app.app_context():
        try:
            return drain(current_app.config["WEBHOOK_BATCH_SIZE"])
        finally:
            db.session.remove()


def run_event_worker(
    app: Flask, stop: threading.Event, idle: threading.Event | None = None
) -> None:
    """Apply stored events until `stop` is set: drain, then wait for a NOTIFY or the poll
    interval. A failure of the step itself (the database away) is logged and tried again.
    `idle` (for tests) is set each time a drain has finished and the worker starts waiting."""
    listener = Listener(app.config["SQLALCHEMY_DATABASE_URI"])
    poll = float(app.config["WEBHOOK_WORKER_POLL_SECONDS"])
    if listener.enabled:
        try:
            listener.connect()  # before the first drain: no NOTIFY is missed in between
        except Exception:  # noqa: BLE001 - the database is not up yet: the wait retries
            log.warning("event worker: cannot LISTEN yet; polling")
    log.info("event worker started", extra={"listen": listener.enabled, "poll_seconds": poll})
    try:
        while not stop.is_set():
            try:
                report = apply_now(app)
                if report.claimed:
                    log.info("event worker: " + report.summary())
            except Exception:  # noqa: BLE001 - e.g. the database restarting: try again later
                log.exception("event worker step failed")
                stop.wait(poll)
                continue
            if stop.is_set():
                break
            if idle is not None:
                idle.set()
            listener.wait(poll, stop)
    finally:
        listener.close()
        log.info("event worker stopped")


JOBS = [
    JobSpec(
        name="reconcile_stripe",
        func=reconcile_stripe,
        trigger=lambda: {
            "trigger": "interval",
            "minutes": current_app.config["STRIPE_RECONCILE_INTERVAL_MINUTES"],
        },
        description="List recent Stripe events and store any the webhook missed",
    ),
]

#: Threads of the jobs process (`flask jobs run`).
WORKERS = [
    WorkerSpec(
        name="stripe_event_worker",
        run=run_event_worker,
        description="Apply stored Stripe webhook events (woken by NOTIFY on PostgreSQL)",
    ),
]
