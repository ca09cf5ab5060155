"""Routes that exist only under TESTING, to prove defences that real pages never trigger."""

from __future__ import annotations

from flask import Blueprint, abort, render_template_string, request

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
        flaw=A11Y_FLAWS[flaw])
