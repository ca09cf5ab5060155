"""Reports at /staff/reports (SVG chart + CSV each) and the exports page."""

from __future__ import annotations

from flask import abort, current_app, render_template, request
from flask_login import current_user
from marshmallow import ValidationError

from donorhub.accounts.models import StaffRole
from donorhub.csv import to_csv
from donorhub.forms import flatten_errors, load_form
from donorhub.reports import exports
from donorhub.reports import services as reports
from donorhub.security import staff
from donorhub.staff import bp
from donorhub.staff.schemas import DateRangeSchema, ExportSchema

FUNDRAISING = (StaffRole.FUNDRAISER, StaffRole.ADMIN)


def _csv_response(name: str, columns, rows):
    response = current_app.response_class(to_csv(columns, rows), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/reports")
@staff(*FUNDRAISING)
def reports_index():
    """The list of reports."""
    return render_template("staff/reports/index.html", reports=reports.REPORTS)


@bp.get("/reports/<key>")
@staff(*FUNDRAISING)
def report(key: str):
    """One report for a date range: table, SVG chart, CSV download (?format=csv)."""
    if key not in reports.REPORTS:
        abort(404)
    try:
        data = DateRangeSchema().load(request.args)
        errors = {}
    except ValidationError as error:
        data, errors = DateRangeSchema().load({}), flatten_errors(error.messages)
    result = reports.build(key, data["date_from"], data["date_to"], data["period"])
    if request.args.get("format") == "csv" and not errors:
        return _csv_response(
            f"{key}-{data['date_from']}-{data['date_to']}", result.columns, result.rows
        )
    return render_template(
        "staff/reports/report.html",
        report=result,
        range=data,
        errors=errors,
        bars=reports.bars(result),
        reports=reports.REPORTS,
    ), (422 if errors else 200)


@bp.route("/exports", methods=["GET", "POST"])
@staff(*FUNDRAISING)
def exports_page():
    """Donations and donors as CSV (audited); the Gift Aid claim lives with donations."""
    if request.method == "GET":
        return render_template("staff/exports.html", errors={}, form={})
    data, errors = load_form(ExportSchema())
    if errors:
        return render_template("staff/exports.html", errors=errors, form=request.form), 422
    if data["kind"] == "donations":
        columns, rows = exports.donations_export(data["date_from"], data["date_to"], current_user)
    else:
        columns, rows = exports.donors_export(
            data["date_from"], data["date_to"], data["audience"], current_user
        )
    return _csv_response(f"{data['kind']}-{data['date_from']}-{data['date_to']}", columns, rows)
