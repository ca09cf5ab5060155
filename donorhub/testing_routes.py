"""Routes that exist only under TESTING, to prove defences that real pages never trigger."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template_string, request, session

from donorhub.audit import AuditEvent, record_audit
from donorhub.commit_point import back_on_error, commit_before_calling_stripe
from donorhub.errors import DomainError, GatewayError
from donorhub.extensions import db
from donorhub.security import public

bp = Blueprint("testing", __name__, url_prefix="/_testing")


@bp.get("/reflect")
@public
def reflect():
    """Echo a payload unescaped, so a test can prove the CSP stops what escaping missed."""
    payload = request.args.get("payload", "")
    return f"<!doctype html><title>reflect</title><p>{payload}</p>"


@bp.get("/boom")
@public
def boom():
    """Raise, so a test can see the 500 page leaks nothing."""
    raise RuntimeError("secret detail: sk_test_boom and postgres://u:p@db/x")


#: Accessibility flaws that the axe-core fixture must catch (tests/browser/test_axe_fixture.py).
A11Y_FLAWS = {
    "none": "",
    "unlabelled-input": '<form><input type="text" name="q"></form>',
    "image-without-alt": '<img src="/static/favicon.svg" width="32" height="32">',
    # An attribute, not a style: the CSP (style-src 'self') would drop an inline style.
    "low-contrast": '<p><font color="#b8b8b8">Pale grey text on white.</font></p>',
    "chart-without-name": '<svg role="img" width="40" height="40"><rect width="40" '
    'height="40"/></svg>',
}


@bp.get("/a11y/<flaw>")
@public
def a11y_flaw(flaw: str):
    """A real page of the site (base layout) with one planted accessibility flaw."""
    if flaw not in A11Y_FLAWS:
        abort(404)
    return render_template_string(
        '{% extends "base.html" %}{% block title %}Flaw{% endblock %}'
        "{% block content %}<h1>A page with a flaw</h1>{{ flaw|safe }}{% endblock %}",
        flaw=A11Y_FLAWS[flaw],
    )


@bp.post("/write/<outcome>")
@public
@back_on_error("testing.reflect")
def write_then(outcome: str):
    """Write one audit row, then answer as `outcome` says: proves the request's commit point
    keeps the row exactly when the answer is a success."""
    record_audit(None, "testing.write", "testing", None, {"outcome": outcome})
    if outcome == "page":
        return "written"
    if outcome == "redirect":
        return redirect("/", code=303)
    if outcome == "form-errors":
        return "the form again, with its errors", 422
    if outcome == "refused":
        raise DomainError("That is not allowed.")
    if outcome == "provider-down":
        raise GatewayError("down", retryable=True, kind="connection")
    if outcome == "kept-then-provider-down":
        commit_before_calling_stripe()
        raise GatewayError("down", retryable=True, kind="connection")
    if outcome == "crash":
        raise RuntimeError("a bug")
    if outcome == "commit-fails":
        # Signed in and told "done" by the view, but the commit is refused (no such user).
        session["testing_signed_in"] = True
        flash("Done.", "success")
        record_audit(None, "testing.write", "testing", None, {"outcome": "second"})
        db.session.add(
            AuditEvent(
                actor_id=2_000_000_000,
                action="testing.write",
                subject_type="testing",
                subject_id=None,
                detail={},
            )
        )
        return "written"
    abort(404)
