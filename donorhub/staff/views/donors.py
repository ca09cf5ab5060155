"""Staff pages for donors: the list, the donor page, notes, consents, offline gifts, refunds."""

from __future__ import annotations

import secrets

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from marshmallow import ValidationError

from donorhub.accounts.models import StaffRole
from donorhub.campaigns import services as campaign_services
from donorhub.commit_point import back_on_error, commit_before_calling_stripe
from donorhub.donations import donors as services
from donorhub.donations import refunds
from donorhub.donations.models import Donation, Donor, RefundStatus
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.forms import flatten_errors, load_form
from donorhub.money import CURRENCIES
from donorhub.payments.gateway import GatewayError
from donorhub.security import staff
from donorhub.sponsorship import services as sponsorship_services
from donorhub.staff import bp
from donorhub.staff.schemas import (
    ConsentSchema,
    DonorFilterSchema,
    NoteSchema,
    OfflineGiftSchema,
    RefundSchema,
)

FUNDRAISING = (StaffRole.FUNDRAISER, StaffRole.ADMIN)


@bp.get("/donors")
@staff(*FUNDRAISING)
def donors():
    """Search and filter donors."""
    try:
        filters = DonorFilterSchema().load(request.args)
        errors = {}
    except ValidationError as error:
        filters, errors = services.DonorFilters(), flatten_errors(error.messages)
    rows = services.search_donors(filters)
    return render_template(
        "staff/donors/list.html",
        rows=rows,
        filters=filters,
        errors=errors,
        campaigns=campaign_services.campaign_choices(),
        args=request.args,
    ), (422 if errors else 200)


@bp.get("/donors/<int:donor_id>")
@staff(*FUNDRAISING)
def donor(donor_id: int):
    """One donor: gifts, plans, sponsorships (aliases only), Gift Aid, consents, notes."""
    row = db.get_or_404(Donor, donor_id)
    page = services.donor_page(row, current_user)
    return render_template(
        "staff/donors/detail.html",
        page=page,
        sponsorships=sponsorship_services.donor_sponsorships(row.id),
        refundable={g.id: refunds.refundable_minor(g) for g in page.gifts},
        reasons=refunds.REFUND_REASONS,
        refund_token=lambda: secrets.token_hex(16),
    )


def _back(donor_id: int):
    return redirect(url_for("staff.donor", donor_id=donor_id), code=303)


@bp.post("/donors/<int:donor_id>/notes")
@staff(*FUNDRAISING)
@back_on_error("staff.donor", "donor_id")
def donor_note(donor_id: int):
    """Add a note to a donor."""
    row = db.get_or_404(Donor, donor_id)
    data, errors = load_form(NoteSchema())
    if errors:
        flash("Write a note of up to 2,000 characters.", "error")
        return _back(donor_id)
    services.add_note(row, data["body"], current_user)
    flash("Note added.", "success")
    return _back(donor_id)


@bp.post("/donors/<int:donor_id>/consents")
@staff(*FUNDRAISING)
def donor_consent(donor_id: int):
    """Record a donor's marketing consent (or its withdrawal) for one channel."""
    row = db.get_or_404(Donor, donor_id)
    data, errors = load_form(ConsentSchema())
    if errors:
        abort(400)
    services.record_consent(
        row, data["channel"], data["granted"] == "yes", data["source"], current_user
    )
    flash("Consent recorded.", "success")
    return _back(donor_id)


def _offline_form(form: dict, errors: dict, status: int = 200):
    donor_row = None
    if form.get("donor_id"):
        try:
            donor_row = db.session.get(Donor, int(form["donor_id"]))
        except ValueError:
            donor_row = None
    return render_template(
        "staff/donors/offline.html",
        form=form,
        errors=errors,
        donor=donor_row,
        currencies=CURRENCIES,
        methods=services.OFFLINE_METHODS,
        campaigns=campaign_services.campaign_choices(),
    ), status


@bp.route("/gifts/offline", methods=["GET", "POST"])
@staff(*FUNDRAISING)
def offline_gift():
    """Enter a cash, cheque or bank-transfer gift, with a receipt if asked."""
    if request.method == "GET":
        form = {
            "entry_key": secrets.token_hex(16),
            "donor_id": request.args.get("donor", ""),
            "currency": "gbp",
            "send_receipt": "on",
        }
        return _offline_form(form, {})
    data, errors = load_form(OfflineGiftSchema())
    if (
        not errors
        and data.campaign_id is not None
        and campaign_services.get_campaign(data.campaign_id) is None
    ):
        errors = {"_schema": ["No such campaign."]}
    if not errors:
        try:
            gift, created = services.record_offline_gift(data, current_user)
        except DomainError as error:
            errors = {"_schema": [str(error)]}
    if errors:
        return _offline_form(dict(request.form), errors, 422)
    flash(
        "Gift recorded." if created else "That gift was already recorded; nothing added.", "success"
    )
    return _back(gift.donor_id)


@bp.post("/gifts/<int:donation_id>/refund")
@staff(*FUNDRAISING)
def refund(donation_id: int):
    """Refund part or all of a gift, with a reason. Two units of work: the refund row (whose
    id is the idempotency key) is committed first, then Stripe is called and its answer
    recorded. A second submit of the same form finds the first row and calls nobody."""
    gift = db.get_or_404(Donation, donation_id)
    donor_id = gift.donor_id
    data, errors = load_form(RefundSchema())
    if errors:
        flash(" ".join(m for ms in errors.values() for m in ms), "error")
        return _back(donor_id)
    try:
        row, created = refunds.request_refund(
            donation_id,
            data["amount_minor"],
            data["reason"],
            data["note"],
            data["request_token"],
            current_user,
        )
    except DomainError as error:
        # Back to the gift's donor, who is not in this URL; the redirect would keep a
        # refund row the service wrote before it refused.
        db.session.rollback()
        flash(str(error), "error")
        return _back(donor_id)
    refund_id, sent = row.id, row.status is not RefundStatus.REQUESTED
    if not created:
        flash("That refund was already asked for; nothing more was sent.", "success")
        return _back(donor_id)
    if sent:
        flash("Refund recorded.", "success")
        return _back(donor_id)
    commit_before_calling_stripe()
    try:
        refunds.send_refund(refund_id)
    except GatewayError as error:
        # The refund row is committed; drop only what recording Stripe's answer wrote.
        db.session.rollback()
        if error.retryable and error.key_spent:
            # Stripe answered with an error it keeps under our key for 24 hours, so this
            # key can never refund: ask Stripe what happened, now.
            _settle_after_server_error(refund_id)
        elif error.retryable:
            flash(
                "Stripe's answer did not arrive, so this refund may or may not have been "
                "made. Do not refund again: DonorHub asks Stripe and records the outcome "
                "within the hour.",
                "error",
            )
        else:
            refunds.refund_refused(refund_id, error.kind)
            flash(f"Stripe did not refund: {error.message}", "error")
        return _back(donor_id)
    except DomainError as error:
        db.session.rollback()
        flash(str(error), "error")
        return _back(donor_id)
    flash("Refund sent to Stripe.", "success")
    return _back(donor_id)


def _settle_after_server_error(refund_id: int) -> None:
    try:
        outcome = refunds.settle_refund(refund_id)
    except GatewayError:
        db.session.rollback()  # the redirect that follows must not keep a half-settled refund
        outcome = None
    if outcome == "recovered":
        flash("Stripe had a problem answering, but the refund was made.", "success")
    elif outcome == "not_sent":
        flash("Stripe had a problem and made no refund. You can refund again.", "error")
    else:
        flash(
            "Stripe had a problem, so this refund may or may not have been made. Do not "
            "refund again: DonorHub asks Stripe and records the outcome within the hour.",
            "error",
        )
