"""Notification preferences and one-click unsubscribe."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from marshmallow import fields, validate

from donorhub.accounts.models import User
from donorhub.extensions import csrf, db
from donorhub.forms import FormSchema, load_form
from donorhub.security import machine, public, signed_in
from donorhub.updates import bp, services
from donorhub.updates.models import NotificationChoice

CHOICES = {
    "each": "Every time there is news about a child I sponsor (at most once per release)",
    "digest": "At most once a quarter",
    "none": "Never: I will sign in when I want to",
}


class PreferenceSchema(FormSchema):
    choice = fields.String(
        required=True,
        validate=validate.OneOf(list(CHOICES)),
        error_messages={"required": "Choose how often we may write."},
    )


@bp.route("/account/notifications", methods=["GET", "POST"])
@signed_in
def preferences():
    """How often we write to say that news is waiting."""
    current = services.current_choice(current_user.id).value
    if request.method == "GET":
        return render_template(
            "updates/preferences.html", choices=CHOICES, current=current, errors={}
        )
    data, errors = load_form(PreferenceSchema())
    if errors:
        return render_template(
            "updates/preferences.html", choices=CHOICES, current=current, errors=errors
        ), 422
    services.set_preference(
        db.session.get_one(User, current_user.id), NotificationChoice(data["choice"])
    )
    flash("Your choice is saved.", "success")
    return redirect(url_for("updates.preferences"))


@bp.get("/updates/unsubscribe/<token>")
@public
def unsubscribe_page(token: str):
    """The link in a notification: a page with one button, because a GET changes nothing.
    A link that is not ours (altered, forged, or for nobody) is refused here already."""
    state, _row = services.read_unsubscribe_link(token)
    if state is services.UnsubscribeLink.INVALID:
        return render_template("updates/unsubscribed.html", done=False), 400
    return render_template("updates/unsubscribe.html", token=token)


@bp.post("/updates/unsubscribe/<token>")
@machine
@csrf.exempt
def unsubscribe(token: str):
    """One-click unsubscribe (RFC 8058): mail providers POST here without a form token; the
    signed token in the address is the proof."""
    done = services.unsubscribe(token)
    return render_template("updates/unsubscribed.html", done=done), (200 if done else 400)
