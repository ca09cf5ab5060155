"""Routes that exist only under TESTING, to prove defences that real pages never trigger."""

from __future__ import annotations

from flask import Blueprint, request

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
