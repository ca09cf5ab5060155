"""Park a process at a named point so that a test can kill it exactly there (test-only).

The fault tests SIGKILL jobs and CLI processes "during" something: after the k-th Stripe call
has returned (Stripe has acted, nothing of ours is committed), inside the n-th write
transaction (its writes flushed, its commit not yet made), just after the n-th commit, as a
job starts or ends. Killing after a delay, or when a poll sees a row, races the clock: on a
busy machine the process runs past the point or never reaches it in time. This module makes
the process stop and wait instead, so the kill lands where the test says, every time.

It is driven by the environment only and does nothing unless DONORHUB_TEST_PARK_AT is set:

  DONORHUB_TEST_PARK_AT      the point: one of POINTS below
  DONORHUB_TEST_PARK_NTH     which arrival at that point parks (1 = the first; default 1)
  DONORHUB_TEST_PARK_MATCH   count only arrivals whose detail starts with this, e.g.
                             "DELETE /v1/subscriptions/" for Stripe calls, a job's name
  DONORHUB_TEST_PARK_SOCKET  the test's Unix socket

At the chosen arrival the process connects to the socket, sends one line
("parked POINT N PID DETAIL"), and blocks reading it: the test kills it there, or sends a line
to let it go on (an end of file lets it go on too). Nothing else changes: the arrivals are
counted, and a process that never reaches the n-th arrival runs as it always does.

Production never parks: ProductionConfig.check refuses to start while DONORHUB_TEST_PARK_AT
is set, and this module ignores the settings when DONORHUB_ENV is production or the app's
ENV_NAME is, whichever is consulted.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass

#: Where a process can be parked.
POINTS = (
    "stripe-call",  # a Stripe API request has returned (detail "METHOD /v1/path")
    "before-commit",  # a transaction that wrote is about to commit, its writes flushed
    "after-commit",  # a transaction that wrote has just committed
    "job-start",  # a scheduled job is about to run (detail: the job's name)
    "job-end",  # a scheduled job returned, its work committed (detail: the job's name)
)
SETTINGS = (
    "DONORHUB_TEST_PARK_AT",
    "DONORHUB_TEST_PARK_NTH",
    "DONORHUB_TEST_PARK_MATCH",
    "DONORHUB_TEST_PARK_SOCKET",
)
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "COPY")


@dataclass
class ParkingPlan:
    point: str
    nth: int
    match: str
    socket_path: str
    arrivals: int = 0


class ParkingSettingsError(ValueError):
    """The DONORHUB_TEST_PARK_* settings are incomplete or name no known point."""


_plan: ParkingPlan | None = None
_lock = threading.Lock()
_local = threading.local()  # per thread: whether the open transaction wrote anything
_listeners_installed = False


def requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for parking (production refuses to start when it does)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("DONORHUB_TEST_PARK_AT", "").strip())


def plan_from_environment(environ: Mapping[str, str] | None = None) -> ParkingPlan | None:
    """The plan the environment asks for; None when it asks for none or is production."""
    environ = os.environ if environ is None else environ
    if not requested(environ):
        return None
    if environ.get("DONORHUB_ENV", "development").strip().lower() == "production":
        return None
    point = environ["DONORHUB_TEST_PARK_AT"].strip()
    if point not in POINTS:
        raise ParkingSettingsError(
            f"DONORHUB_TEST_PARK_AT must be one of {', '.join(POINTS)}, not {point!r}."
        )
    nth = environ.get("DONORHUB_TEST_PARK_NTH", "1").strip()
    if not nth.isdigit() or int(nth) < 1:
        raise ParkingSettingsError(
            f"DONORHUB_TEST_PARK_NTH must be a whole number from 1, not {nth!r}."
        )
    socket_path = environ.get("DONORHUB_TEST_PARK_SOCKET", "").strip()
    if not socket_path:
        raise ParkingSettingsError("DONORHUB_TEST_PARK_SOCKET must name the test's Unix socket.")
    return ParkingPlan(point, int(nth), environ.get("DONORHUB_TEST_PARK_MATCH", ""), socket_path)


def install(app) -> None:
    """Called by create_app: read the plan; listen to the database when it parks there."""
    global _plan
    plan = None if app.config.get("ENV_NAME") == "production" else plan_from_environment()
    with _lock:
        _plan = plan
    if plan is not None and plan.point in ("before-commit", "after-commit"):
        _listen_to_transactions()


def active() -> bool:
    return _plan is not None


def arrive(point: str, detail: str = "") -> None:
    """The process has reached `point`; park here if this is the arrival the plan names."""
    plan = _plan
    if plan is None or plan.point != point or not detail.startswith(plan.match):
        return
    with _lock:
        plan.arrivals += 1
        if plan.arrivals != plan.nth:
            return
    _park(plan, detail)


def _park(plan: ParkingPlan, detail: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(plan.socket_path)
        connection.sendall(f"parked {plan.point} {plan.nth} {os.getpid()} {detail}\n".encode())
        with connection.makefile("rb") as replies:
            replies.readline()  # blocks until the test lets go (or kills this process)


def wrap_http_client(client):
    """Make every request of a Stripe HTTP client an arrival at "stripe-call" once it has
    returned. The client is returned unchanged when no Stripe call is to park."""
    plan = _plan
    if plan is None or plan.point != "stripe-call":
        return client
    request = client.request

    def request_then_arrive(method, url, headers, post_data=None, **options):
        response = request(method, url, headers, post_data, **options)
        path = "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        arrive("stripe-call", f"{method.upper()} {path}")
        return response

    client.request = request_then_arrive
    return client


def _listen_to_transactions() -> None:
    """A transaction "wrote" when an INSERT/UPDATE/DELETE ran in it; only those count."""
    global _listeners_installed
    if _listeners_installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    def watching(point: str) -> bool:  # listeners stay once added; they act only when asked
        return _plan is not None and _plan.point == point

    @event.listens_for(Engine, "before_cursor_execute")
    def note_write(_conn, _cursor, statement, _parameters, _context, _executemany):
        words = statement.lstrip().split(None, 1)
        if words and words[0].upper() in WRITES:
            _local.wrote = True

    @event.listens_for(Session, "before_commit")
    def before_commit(session):
        if not watching("before-commit"):
            return
        session.flush()  # the writes reach the database inside the open transaction
        if getattr(_local, "wrote", False):
            arrive("before-commit")

    @event.listens_for(Session, "after_commit")
    def after_commit(_session):
        wrote, _local.wrote = getattr(_local, "wrote", False), False
        if wrote and watching("after-commit"):
            arrive("after-commit")

    @event.listens_for(Session, "after_rollback")
    def after_rollback(_session):
        _local.wrote = False

    _listeners_installed = True
