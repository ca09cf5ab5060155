"""The commit point of a web request: one place decides whether a request's writes are kept.

Views call services, and services only flush. When the view has answered, the request's
transaction is committed if the answer says it worked (a 2xx page or a 3xx redirect) and
rolled back otherwise: a form shown again with its errors (422), any other 4xx, a 5xx, an
exception. So a view never commits or rolls back by hand, and a rule a service broke
(`DomainError`) or a payment provider that failed (`GatewayError`) undoes everything the
request wrote before the person is told.

Two exceptions, each a named function: a view that must keep its writes before it calls
Stripe, so that what Stripe does next (a webhook, a retry with the same idempotency key) finds
them (`commit_before_calling_stripe()`), and a refusal that must keep some of its writes (a
failure count, the audit of what an error page shows: `commit_before_refusing()`). Jobs and
CLI commands have their own commit point, `donorhub.database.unit_of_work`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, flash, g, redirect, request, session, url_for

from donorhub.errors import DomainError, GatewayError, problem, render_error, wants_json
from donorhub.extensions import db

View = TypeVar("View", bound=Callable[..., Any])

#: What a person is told when Stripe could not be reached or refused; nothing was changed.
GATEWAY_FAILED = (
    "We could not reach our payment provider, so nothing has changed. Please try "
    "again in a few minutes."
)


def remember_session_at_start() -> None:
    """What the browser's session held before the view ran: restored if the commit fails."""
    g.session_at_start = copy.deepcopy(dict(session)) if session else {}


def finish_request_transaction(response: Response) -> Response:
    """Commit what the request wrote when its answer is a success; otherwise roll it back.

    The session cookie is written after this, so when the commit fails the view's changes to
    the session (a sign-in, a sign-out, a "done" message) are undone too: the browser must
    not believe in a change the database refused. The error then becomes our 500 page.
    A request that never opened a database session (most anonymous pages, static files)
    has nothing to commit or roll back, so none is made just to be closed."""
    if not db.session.registry.has():
        return response
    if response.status_code >= 400:
        db.session.rollback()
        return response
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        session.clear()
        session.update(g.get("session_at_start", {}))
        raise
    return response


def commit_before_calling_stripe() -> None:
    """Keep what the request wrote so far, because Stripe is called next and what it does
    (a webhook that may arrive before this request ends, a retry under the same idempotency
    key) must find our rows."""
    db.session.commit()


def commit_before_refusing() -> None:
    """Keep what the request wrote so far although its answer will be a refusal (>= 400),
    which would roll it back: a count of wrong passwords or codes, a half-finished
    enrolment, or the audit of what an error page shows (an officer's refused decision shows
    the item again, and every view of safeguarding data is audited) must outlast the page.
    The caller has rolled back the refused change itself first, where there was one."""
    db.session.commit()


def back_on_error(endpoint: str, *view_args: str, code: int = 303) -> Callable[[View], View]:
    """Where a person is sent, with the error's message, when a service refuses (a
    `DomainError`) or the payment provider fails: `endpoint`, built with the named arguments
    of the current URL, redirected with `code` (303 See Other; 302 where a page has always
    answered so). A view without it shows the error on a page of its own (422)."""

    def decorate(view: View) -> View:
        view.back_on_error = (endpoint, view_args, code)  # type: ignore[attr-defined]
        return view

    return decorate


def _back_target() -> tuple[str, int] | None:
    """(address, redirect code) the current view declared with `back_on_error`, if any."""
    from flask import current_app

    view = current_app.view_functions.get(request.endpoint or "")
    target = getattr(view, "back_on_error", None)
    if target is None:
        return None
    endpoint, names, code = target
    arguments = {name: (request.view_args or {})[name] for name in names}
    return url_for(endpoint, **arguments), code


def _refused(message: str, status: int):
    db.session.rollback()
    if wants_json():
        return problem(status, "Not done", message)
    target = _back_target()
    if target is None:
        return render_error(status, message)
    address, code = target
    flash(message, "error")
    return redirect(address, code=code)


def init_app(app: Flask) -> None:
    app.before_request(remember_session_at_start)
    app.after_request(finish_request_transaction)

    @app.errorhandler(DomainError)
    def domain_error(error: DomainError):
        return _refused(str(error), 422)

    @app.errorhandler(GatewayError)
    def gateway_error(error: GatewayError):
        return _refused(GATEWAY_FAILED, 503 if error.retryable else 502)
