"""Stripe events the worker could not apply: dead letters, and trying one again."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from donorhub.accounts.models import StaffRole
from donorhub.commit_point import back_on_error
from donorhub.payments import event_queue
from donorhub.security import staff
from donorhub.staff import bp


@bp.get("/stripe-events")
@staff(StaffRole.FUNDRAISER, StaffRole.ADMIN)
def stripe_events():
    """The webhook queue: how many events wait, and every dead letter (type, times, error
    class; never the payload, which holds a donor's personal data)."""
    return render_template(
        "staff/stripe_events.html",
        state=event_queue.queue_state(),
        dead=event_queue.dead_letters(),
    )


@bp.post("/stripe-events/<int:event_row_id>/retry")
@staff(StaffRole.FUNDRAISER, StaffRole.ADMIN)
@back_on_error("staff.stripe_events")
def retry_stripe_event(event_row_id: int):
    """Try a dead letter again (after the cause was fixed), with a fresh set of tries."""
    row = event_queue.retry_dead_letter(current_user, event_row_id)
    flash(f"Event {row.event_id} will be tried again in a moment.", "success")
    return redirect(url_for("staff.stripe_events"), code=303)
