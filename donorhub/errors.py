"""Domain errors and the handlers that turn every error into a page or a problem document."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from markupsafe import escape
from werkzeug.exceptions import HTTPException, InternalServerError

from donorhub.logs import log_security_event

log = logging.getLogger(__name__)


class DomainError(Exception):
    """A business rule was broken. The message is safe to show to the person who acted."""


class IllegalTransition(DomainError):
    """A status field was asked to move where its state machine does not allow."""


class NotPermitted(DomainError):
    """The acting user may not do this."""


class GatewayError(Exception):
    """Stripe did not do what we asked. `message` is safe to show to a donor.

    Raised by donorhub/payments/gateway.py; defined here so that the request's commit point
    (donorhub/commit_point.py) can answer it without importing the payments feature."""

    def __init__(self, message: str, *, retryable: bool, kind: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        #: True for timeouts, connection failures, 5xx, 409 and 429: the same request (same
        #: idempotency key) may be sent again. False when Stripe refused it for good.
        self.retryable = retryable
        self.kind = kind
        self.status = status

    @property
    def key_spent(self) -> bool:
        """Stripe kept this answer under the idempotency key (for 24 hours): a refusal, or a
        5xx once execution began (Stripe replays a saved 500). Retrying with the same key
        only replays it, so the next try needs a new key, once we know the first took no
        effect (or that an effect nobody saw does no harm). Timeouts, connection failures,
        409 and 429 are not saved: retry with the same key."""
        return not self.retryable or (self.status is not None and self.status >= 500)


def wants_json() -> bool:
    return request.path.startswith("/api/") or (request.accept_mimetypes.best == "application/json")


def problem(status: int, title: str, detail: str | None = None, **extra):
    """An RFC 9457 problem document."""
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "request_id": getattr(g, "request_id", None),
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


_MESSAGES = {
    400: ("Bad request", "We could not understand that request."),
    403: ("Not allowed", "You do not have permission to see this page."),
    404: (
        "Page not found",
        "We could not find that page. It may have moved, or the link may be incomplete.",
    ),
    405: ("Not allowed", "That action is not available here."),
    413: ("Too large", "What you sent is larger than we accept."),
    422: ("Not done", "We could not do that. Nothing has changed."),
    429: (
        "Too many attempts",
        "You have tried that too many times. Please wait a few minutes and try again.",
    ),
    500: (
        "Something went wrong",
        "Something went wrong on our side. Nothing you entered was "
        "lost; please try again in a moment.",
    ),
}


def render_error(status: int, detail: str | None = None):
    """Our error page (or problem document); `detail` is a message safe to show, such as a
    `DomainError`'s, in place of the status's general one."""
    title, message = _MESSAGES.get(status, _MESSAGES[500] if status >= 500 else _MESSAGES[400])
    message = detail or message
    if wants_json():
        return problem(status, title, message)
    try:
        return render_template(
            "errors/error.html", status=status, title=title, message=message
        ), status
    except Exception:
        # The layout needs the database (the signed-in person, say), and the database may be
        # what failed: still our page, with the request id and, through after_request, every
        # security header, never the server's bare one.
        log.warning("error page rendered without its layout", exc_info=True)
        return _bare_error_page(status, title, message), status


def _bare_error_page(status: int, title: str, message: str) -> Response:
    request_id = escape(getattr(g, "request_id", "") or "")
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head><body><main><h1>{escape(title)}</h1>"
        f"<p>{escape(message)}</p><p>Reference: {request_id}</p></main></body></html>"
    )
    return Response(body, status=status, mimetype="text/html")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_failed(error: CSRFError):
        log_security_event("csrf_failure", reason=error.description[:64])
        if wants_json():
            return problem(400, "Form expired", "The form expired or was not sent from our site.")
        return render_template(
            "errors/error.html",
            status=400,
            title="This form has expired",
            message="For your security, forms expire. Please go back, "
            "reload the page and try again.",
        ), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        if status == 429:
            log_security_event("rate_limited", endpoint=request.endpoint or "")
        return render_error(status)

    @app.errorhandler(Exception)
    def unhandled(error: Exception):
        if isinstance(error, HTTPException):
            return http_error(error)
        # The request id ties the page the person sees to this log record.
        log.exception("unhandled error", extra={"error_type": type(error).__name__})
        return render_error(InternalServerError.code)
