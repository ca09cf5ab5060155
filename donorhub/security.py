"""Security on every response: access classification, session checks, headers, request ids."""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeGuard, TypeVar
from urllib.parse import unquote, urlsplit

from flask import Blueprint, Flask, abort, current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_login import current_user, logout_user
from itsdangerous import URLSafeTimedSerializer

from donorhub.logs import log_security_event
from donorhub.urls import carries_secret

log = logging.getLogger(__name__)
View = TypeVar("View", bound=Callable[..., Any])
Kept = TypeVar("Kept", bound=Callable[..., Any] | Blueprint)


class Access(StrEnum):
    PUBLIC = "public"
    SIGNED_IN = "signed_in"
    STAFF = "staff"
    #: Machine-to-machine endpoints that authenticate themselves (the Stripe webhook).
    MACHINE = "machine"


def public(view: View) -> View:
    """Anyone may call this view."""
    view.access = Access.PUBLIC  # type: ignore[attr-defined]
    return view


def machine(view: View) -> View:
    """Called by another system that proves itself (e.g. a signed webhook), not by a browser."""
    view.access = Access.MACHINE  # type: ignore[attr-defined]
    return view


def signed_in(view: View) -> View:
    """Only a signed-in account may call this view."""
    view.access = Access.SIGNED_IN  # type: ignore[attr-defined]
    return view


def staff(*roles: str) -> Callable[[View], View]:
    """Only staff holding one of `roles`, signed in with two factors, may call this view."""
    if not roles:
        raise ValueError("name at least one staff role")

    def decorate(view: View) -> View:
        view.access = Access.STAFF  # type: ignore[attr-defined]
        view.roles = frozenset(roles)  # type: ignore[attr-defined]
        return view

    return decorate


def keep_private(target: Kept) -> Kept:
    """Keep every response of this blueprint (its routes now and any added later) or of this
    one view out of every cache and every search engine: `Cache-Control: no-store, private`
    and `X-Robots-Tag: noindex`. For every page that can show anything about a child (the
    public listing and profiles too: a cached or indexed copy is a dated snapshot an
    observer can compare), and for the portal and the staff area."""
    target.keep_private = True  # type: ignore[union-attr]
    return target


def is_kept_private(app: Flask, endpoint: str | None) -> bool:
    """Whether the view behind `endpoint`, or a blueprint it belongs to, was kept private."""
    if endpoint is None:
        return False
    if getattr(app.view_functions.get(endpoint), "keep_private", False):
        return True
    blueprint = endpoint.rpartition(".")[0]
    while blueprint:
        if getattr(app.blueprints.get(blueprint), "keep_private", False):
            return True
        blueprint = blueprint.rpartition(".")[0]
    return False


#: What a kept-private page tells search engines: do not index it, follow nothing on it,
#: keep no copy of it.
NOINDEX = "noindex, nofollow, noarchive"

#: The path under which every staff upload route lives, so that the reverse proxy can give
#: these paths alone a larger body limit (docs/deploy.md, `location /staff/uploads/`).
STAFF_UPLOAD_PREFIX = "/staff/uploads/"


def staff_upload(view: View) -> View:
    """Let this staff view receive bodies up to MAX_UPLOAD_LENGTH instead of
    MAX_CONTENT_LENGTH (file imports, archives). Its route must be under
    STAFF_UPLOAD_PREFIX and the view classified @staff (a test checks both); the larger
    allowance applies only to a signed-in staff session."""
    view.staff_upload = True  # type: ignore[attr-defined]
    return view


def body_limit() -> int | None:
    """The body limit of this request: MAX_UPLOAD_LENGTH on a staff upload route for a
    signed-in staff session, MAX_CONTENT_LENGTH everywhere else."""
    config = current_app.config
    view = current_app.view_functions.get(request.endpoint or "")
    if (
        getattr(view, "staff_upload", False)
        and "_user_id" in session
        and current_user.is_authenticated
        and current_user.staff_roles
    ):
        return config.get("MAX_UPLOAD_LENGTH") or config["MAX_CONTENT_LENGTH"]
    return config["MAX_CONTENT_LENGTH"]


def refuse_large_bodies() -> None:
    """413 from the declared length, before a byte of the body is read; a body without a
    length (chunked) is cut off by Werkzeug at the same limit while it is read."""
    limit = body_limit()
    request.max_content_length = limit
    if limit is not None and request.content_length is not None and request.content_length > limit:
        abort(413)


def view_access(app: Flask, endpoint: str | None) -> tuple[Access | None, frozenset[str]]:
    if endpoint is None:
        return None, frozenset()
    if endpoint == "static" or endpoint.endswith(".static"):
        return Access.PUBLIC, frozenset()
    view = app.view_functions.get(endpoint)
    return getattr(view, "access", None), getattr(view, "roles", frozenset())


def enforce_access() -> Any:
    """Deny by default: a view that was never classified answers 403, whoever asks."""
    if request.endpoint is None:
        return None  # 404/405 are raised by routing itself
    access, roles = view_access(current_app, request.endpoint)
    if access is None:
        log.error("unclassified view", extra={"endpoint": request.endpoint})
        abort(403)
    if access in (Access.PUBLIC, Access.MACHINE):
        return None
    if not current_user.is_authenticated:
        log_security_event("authorization_denied", endpoint=request.endpoint, reason="anonymous")
        return redirect(url_for("accounts.sign_in", next=request.full_path.rstrip("?")))
    if access is Access.STAFF:
        if not current_user.staff_roles & roles:
            log_security_event(
                "authorization_denied",
                user_id=current_user.id,
                endpoint=request.endpoint,
                reason="role",
            )
            abort(403)
        if not session.get("mfa"):
            if current_user.has_totp:
                return redirect(url_for("accounts.two_factor", next=request.full_path))
            return redirect(url_for("accounts.two_factor_setup"))
    return None


def stamp_session(now: datetime | None = None) -> None:
    """Mark the start of an authenticated session (for the absolute timeout)."""
    now = now or datetime.now(UTC)
    session["auth_at"] = int(now.timestamp())
    session["seen_at"] = int(now.timestamp())


def may_be_signed_in() -> bool:
    """Whether the request carries anything that could sign someone in: a user id in the
    session or a remember-me cookie. Without either the visitor is anonymous, and
    `current_user` need not be loaded to know it."""
    remember = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
    return "_user_id" in session or remember in request.cookies


def enforce_session_timeouts() -> Any:
    """End sessions that sat idle too long, or that began too long ago.

    A request that carries nobody's session is anonymous: Flask-Login is told so directly
    (its own anonymous user), instead of working it out from the session on first use."""
    if not may_be_signed_in():
        current_app.login_manager._update_request_context_with_user()  # type: ignore[attr-defined]
        return None
    if not current_user.is_authenticated:
        return None
    now = int(datetime.now(UTC).timestamp())
    config = current_app.config
    idle_minutes = (
        config["STAFF_SESSION_IDLE_MINUTES"]
        if current_user.staff_roles
        else config["SESSION_IDLE_MINUTES"]
    )
    auth_at = session.get("auth_at")
    seen_at = session.get("seen_at")
    expired = (
        auth_at is None
        or seen_at is None
        or now - seen_at > idle_minutes * 60
        or now - auth_at > config["SESSION_ABSOLUTE_HOURS"] * 3600
    )
    if expired:
        user_id = current_user.id
        logout_user()
        session.clear()
        log_security_event("session_expired", user_id=user_id)
        if request.method == "GET":
            return redirect(
                url_for("accounts.sign_in", next=request.full_path.rstrip("?"), expired=1)
            )
        return redirect(url_for("accounts.sign_in", expired=1))
    if seen_at is None:  # a session that has not expired has both stamps
        raise RuntimeError("live session without seen_at")
    # Write at most once a minute, so most requests do not re-issue the cookie.
    if now - seen_at >= 60:
        session["seen_at"] = now
    return None


def assign_request_id() -> None:
    """Our own id for every request: it is the reference shown on error pages, so a visitor
    must not choose it. An id sent by a proxy is kept for the logs only, as
    `upstream_request_id`, and only when it is short and plain."""
    g.request_id = secrets.token_hex(8)
    incoming = request.headers.get("X-Request-ID", "")
    if 1 <= len(incoming) <= 64 and UPSTREAM_ID.fullmatch(incoming):
        g.upstream_request_id = incoming


UPSTREAM_ID = re.compile(r"[A-Za-z0-9._-]+")


def content_security_policy(form_action_extra: list[str]) -> str:
    form_action = " ".join(["'self'", *form_action_extra])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            f"form-action {form_action}",
        ]
    )


#: Where init_app keeps the headers every response carries, built once from the settings.
FIXED_HEADERS = "donorhub.fixed_headers"
#: Where add_security_headers remembers, per endpoint, whether it is kept private.
KEPT_PRIVATE = "donorhub.kept_private"


def fixed_security_headers(config: Any) -> tuple[tuple[str, str, str], ...]:
    """The headers that are the same on every response, from the app's settings, as (name,
    lower-case name, value): built once per app (init_app), not once per request.
    Referrer-Policy is not here: a view may set its own (token pages), so it is a default."""
    headers = [
        ("Content-Security-Policy", content_security_policy(config["CSP_FORM_ACTION"])),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"),
    ]
    if config.get("HSTS"):
        headers.append(("Strict-Transport-Security", "max-age=63072000; includeSubDomains"))
    return tuple((name, name.lower(), value) for name, value in headers)


def add_security_headers(response):
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    config = app.config
    headers = response.headers
    fixed = app.extensions.get(FIXED_HEADERS)
    if fixed is None:  # an app that skipped init_app: build them now, the same way
        fixed = fixed_security_headers(config)
    present = {name.lower() for name in headers.keys()}
    for name, lower, value in fixed:
        # Replaces any value a view set; when there is none (nearly always), one append.
        if lower in present:
            headers[name] = value
        else:
            headers.add(name, value)
    if "referrer-policy" not in present:
        headers.add("Referrer-Policy", "strict-origin-when-cross-origin")
    # From the session cookie, not current_user: loading the person needs the database, and
    # the headers must go out on the error page of a request whose database failed.
    signed_in = (
        "_user_id" in session
        or request.cookies.get(config.get("REMEMBER_COOKIE_NAME", "remember_token")) is not None
    )
    if signed_in or request.path.startswith(("/account", "/staff")):
        headers["Cache-Control"] = "no-store"
    if carries_secret():  # a token in the address: no cache keeps it, no Referer repeats it
        headers["Cache-Control"] = "no-store"
        headers["Referrer-Policy"] = "no-referrer"
    # Whether an endpoint is kept private is fixed once the app is wired: asked once each.
    kept_private = app.extensions.setdefault(KEPT_PRIVATE, {})
    endpoint = request.endpoint
    private = kept_private.get(endpoint)
    if private is None:
        private = kept_private[endpoint] = is_kept_private(app, endpoint)
    if private:
        headers["Cache-Control"] = "no-store, private"
        headers["X-Robots-Tag"] = NOINDEX
    headers["X-Request-ID"] = getattr(g, "request_id", "")
    if "server" in present:
        headers.pop("Server", None)
    if "x-powered-by" in present:
        headers.pop("X-Powered-By", None)
    return response


def refuse_nul_bytes() -> None:
    """400 for a NUL character in the path, the query or a form field: no page takes one,
    and PostgreSQL refuses it in a text parameter, which would otherwise surface as a 500."""
    environ = request.environ
    if not environ.get("QUERY_STRING") and not environ.get("CONTENT_TYPE"):
        # No query and no form (most requests): the path is all there is to check.
        if "\x00" in request.path:
            abort(400)
        return
    values = [request.path, *(part for item in request.args.items(multi=True) for part in item)]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        values += [part for item in request.form.items(multi=True) for part in item]
    if any("\x00" in value for value in values):
        abort(400)


def _unsafe_character(ch: str) -> bool:
    """Control, format, separator (any Unicode space) characters, and backslash."""
    return ch == "\\" or ch.isspace() or unicodedata.category(ch)[0] in "CZ"


def is_safe_next(target: str | None) -> TypeGuard[str]:
    """Whether `target` is a path on this site, safe to redirect to after sign-in.

    Browsers and Werkzeug drop tab, CR and LF inside URLs and read a backslash as a slash, so
    a slash, a tab and a slash would become the off-site "//evil.example". So: no control
    character, whitespace, backslash or non-ASCII character anywhere in the value, nor in its
    path once percent-decoded (nor a control character in the decoded rest); then, parsed as
    given and at every level of decoding, no scheme, no host, and a path that starts with
    exactly one "/" and has no empty or dot segments.
    Every redirect to a target that came from a request goes through this one check.
    """
    # Links the site makes itself are ASCII (percent-encoded): anything else is refused too.
    if (
        not target
        or len(target) > 2000
        or not target.isascii()
        or any(_unsafe_character(ch) for ch in target)
    ):
        return False
    # Decode until nothing changes (a double-encoded "%252F" is a "/" to some proxies).
    forms, text = [target], target
    for _ in range(3):
        text = unquote(text)
        if text == forms[-1]:
            break
        forms.append(text)
    else:
        return False
    for decoded in forms[1:]:
        path, _, rest = decoded.partition("?")
        if any(_unsafe_character(ch) for ch in path) or any(
            unicodedata.category(ch)[0] == "C" for ch in rest
        ):
            return False
    for text in forms:
        parts = urlsplit(text)
        if parts.scheme or parts.netloc or text.startswith("//") or not parts.path.startswith("/"):
            return False
        # No empty, "." or ".." segments: a real page's path never has one, and resolving
        # them is how "/.//x/.." tricks rebuild a "//host".
        if any(
            segment in ("", ".", "..") for segment in parts.path.split("/")[1:-1]
        ) or parts.path.endswith(("/.", "/..")):
            return False
    return True


class LazySessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, unchanged, except that a request without a session
    cookie gets its empty session without the signing serializer being built: most
    visitors are anonymous and never send one. Saving is Flask's own, so an empty,
    unmodified session still sets no cookie."""

    def open_session(self, app: Flask, request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """Flask's serializer, made once per key set instead of once per request: the
        same keys (SECRET_KEY first, then its fallbacks), salt and signer."""
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        cached = getattr(self, "_serializer", None)
        if cached is None or cached[0] != key:
            cached = (key, super().get_signing_serializer(app))
            self._serializer = cached
        return cached[1]


def init_app(app: Flask) -> None:
    app.session_interface = LazySessionInterface()
    app.extensions[FIXED_HEADERS] = fixed_security_headers(app.config)
    app.before_request(refuse_nul_bytes)
    app.before_request(enforce_session_timeouts)
    app.before_request(enforce_access)
    app.after_request(add_security_headers)
