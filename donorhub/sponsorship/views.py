"""Public pages: children waiting for a sponsor, as anonymized profiles."""

from __future__ import annotations

from flask import abort, render_template

from donorhub.security import public
from donorhub.sponsorship import bp, services


@bp.get("/sponsor")
@public
def waiting_children():
    """Profiles of children waiting for a sponsor."""
    return render_template("sponsorship/waiting.html", profiles=services.listed_profiles())


@bp.get("/sponsor/<token>")
@public
def profile(token: str):
    """One child's anonymized profile."""
    card = services.profile_by_token(token)
    if card is None:
        abort(404)
    return render_template("sponsorship/profile.html", card=card)
