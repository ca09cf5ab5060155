"""Data protection pages: staff carry out donors' erasure requests."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user

from donorhub.accounts.models import DataRequest, StaffRole
from donorhub.commit_point import back_on_error
from donorhub.donations import data_protection as services
from donorhub.donations.models import Donor
from donorhub.extensions import db
from donorhub.forms import EmptySchema, load_form
from donorhub.payments.gateway import GatewayError
from donorhub.security import staff
from donorhub.staff import bp

DATA_PROTECTION = (StaffRole.ADMIN,)


@bp.get("/data-requests")
@staff(*DATA_PROTECTION)
def data_requests():
    """Open erasure and export requests from donors."""
    rows = [(r, services.donor_for_request(r)) for r in services.open_requests()]
    return render_template("staff/data_requests.html", rows=rows)


@bp.get("/donors/<int:donor_id>/data-protection")
@staff(*DATA_PROTECTION)
def data_protection(donor_id: int):
    """Erase a donor's personal data (financial records are kept)."""
    donor = db.get_or_404(Donor, donor_id)
    return render_template("staff/data_protection.html", donor=donor)


@bp.post("/donors/<int:donor_id>/erase")
@staff(*DATA_PROTECTION)
@back_on_error("staff.data_protection", "donor_id")
def erase(donor_id: int):
    """Carry out erasure: overwrite personal data, delete the Stripe customer, audit."""
    donor = db.get_or_404(Donor, donor_id)
    _data, errors = load_form(EmptySchema())
    if errors:
        abort(400)
    request_row = None
    if donor.user_id is not None:
        request_row = db.session.scalar(
            db.select(DataRequest).where(
                DataRequest.user_id == donor.user_id, DataRequest.status == "requested"
            )
        )
    try:
        services.erase_donor(donor, current_user, request_row)
    except GatewayError as error:
        # Staff are shown Stripe's own message, not the standard one a donor sees. Stripe is
        # called before the erasure writes anything, so the redirect keeps nothing.
        flash(error.message, "error")
        return redirect(url_for("staff.data_protection", donor_id=donor_id), code=303)
    flash("Personal data erased; financial records kept.", "success")
    return redirect(url_for("staff.donor", donor_id=donor_id), code=303)
