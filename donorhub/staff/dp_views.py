"""Data protection pages: the donor's JSON download; staff carry out erasure requests."""

from __future__ import annotations

import json

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from donorhub.accounts.models import DataRequest, StaffRole
from donorhub.donations.models import Donor
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.forms import EmptySchema, load_form
from donorhub.payments.gateway import GatewayError
from donorhub.security import signed_in, staff
from donorhub.staff import bp as staff_bp
from donorhub.staff import dataprotection as services

bp = Blueprint("privacy", __name__)
DATA_PROTECTION = (StaffRole.ADMIN,)


@bp.get("/account/my-data.json")
@signed_in
def my_data():
    """Download everything we hold about you, as JSON."""
    body = json.dumps(services.export_for_user(current_user), indent=2, sort_keys=True)
    response = current_app.response_class(body, mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="my-donorhub-data.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@staff_bp.get("/data-requests")
@staff(*DATA_PROTECTION)
def data_requests():
    """Open erasure and export requests from donors."""
    rows = [(r, services.donor_for_request(r)) for r in services.open_requests()]
    return render_template("staff/data_requests.html", rows=rows)


@staff_bp.get("/donors/<int:donor_id>/data-protection")
@staff(*DATA_PROTECTION)
def data_protection(donor_id: int):
    """Erase a donor's personal data (financial records are kept)."""
    donor = db.get_or_404(Donor, donor_id)
    return render_template("staff/data_protection.html", donor=donor)


@staff_bp.post("/donors/<int:donor_id>/erase")
@staff(*DATA_PROTECTION)
def erase(donor_id: int):
    """Carry out erasure: overwrite personal data, delete the Stripe customer, audit."""
    donor = db.get_or_404(Donor, donor_id)
    _data, errors = load_form(EmptySchema())
    if errors:
        abort(400)
    request_row = None
    if donor.user_id is not None:
        request_row = db.session.scalar(db.select(DataRequest).where(
            DataRequest.user_id == donor.user_id, DataRequest.status == "requested"))
    try:
        services.erase_donor(donor, current_user, request_row)
    except (DomainError, GatewayError) as error:
        db.session.rollback()
        flash(str(getattr(error, "message", error)), "error")
        return redirect(url_for("staff.data_protection", donor_id=donor_id), code=303)
    db.session.commit()
    flash("Personal data erased; financial records kept.", "success")
    return redirect(url_for("staff.donor", donor_id=donor_id), code=303)
