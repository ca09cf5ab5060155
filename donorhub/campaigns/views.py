"""Public campaign pages and the embeddable JSON total; staff campaign management."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from donorhub import money
from donorhub.accounts.models import StaffRole
from donorhub.campaigns import bp, services, staff_bp
from donorhub.campaigns.models import Campaign
from donorhub.campaigns.schemas import CampaignSchema, RateSchema
from donorhub.commit_point import back_on_error
from donorhub.errors import DomainError, problem
from donorhub.extensions import db
from donorhub.forms import EmptySchema, load_form
from donorhub.money import CURRENCIES, CURRENCY_NAMES, to_decimal
from donorhub.security import public, staff

FUNDRAISING = (StaffRole.FUNDRAISER, StaffRole.ADMIN)


# Public --------------------------------------------------------------------------------------


@bp.get("/campaigns/<slug>")
@public
def campaign_page(slug: str):
    """A campaign's story, its progress and the giving form preset to it."""
    campaign = services.public_campaign(slug)
    if campaign is None:
        abort(404)
    totals = services.campaign_totals(campaign)
    return render_template(
        "campaigns/public.html",
        campaign=campaign,
        totals=totals,
        body_html=services.render_markdown(campaign.body_md),
        thermometer=services.Thermometer(totals.percent),
        open_for_gifts=services.is_open_for_gifts(campaign),
    )


@bp.get("/api/v1/campaigns/<slug>")
@public
def campaign_api(slug: str):
    """Public totals for embedding: no per-donor data, only sums and a count of donors."""
    campaign = services.public_campaign(slug)
    if campaign is None:
        return problem(404, "Not found", "No published campaign has that address.")
    totals = services.campaign_totals(campaign)
    return {
        "slug": campaign.slug,
        "name": campaign.name,
        "status": campaign.status.value,
        "currency": campaign.goal_currency,
        "raised": str(to_decimal(totals.raised_minor)),
        "raised_minor": totals.raised_minor,
        "goal": str(to_decimal(campaign.goal_minor)),
        "goal_minor": campaign.goal_minor,
        "percent": totals.percent,
        "donors": totals.donors,
        "starts_on": campaign.starts_on.isoformat(),
        "ends_on": campaign.ends_on.isoformat() if campaign.ends_on else None,
    }


@bp.after_request
def cors(response):
    """CORS on the JSON endpoint only: any allowed origin may read, never with cookies."""
    if request.endpoint == "campaigns.campaign_api":
        response.headers["Access-Control-Allow-Origin"] = current_app.config[
            "CAMPAIGN_API_ALLOWED_ORIGINS"
        ]
        response.headers["Access-Control-Allow-Methods"] = "GET"
        response.headers["Access-Control-Max-Age"] = "600"
        response.headers["Vary"] = "Origin"
        response.headers.pop("Set-Cookie", None)
        response.headers.pop("Access-Control-Allow-Credentials", None)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=60"
    return response


# Staff ---------------------------------------------------------------------------------------


def _form_from(campaign: Campaign | None) -> dict:
    if campaign is None:
        return {"goal_currency": current_app.config["DONATION_DEFAULT_CURRENCY"]}
    return {
        "name": campaign.name,
        "slug": campaign.slug,
        "summary": campaign.summary,
        "body_md": campaign.body_md,
        "goal": str(to_decimal(campaign.goal_minor)),
        "goal_currency": campaign.goal_currency,
        "starts_on": campaign.starts_on.isoformat(),
        "ends_on": campaign.ends_on.isoformat() if campaign.ends_on else "",
        "appeal_code": campaign.appeal_code,
    }


def _render_form(campaign, form, errors, status=200):
    return render_template(
        "campaigns/staff_form.html",
        campaign=campaign,
        form=form,
        errors=errors,
        currencies=CURRENCIES,
        currency_names=CURRENCY_NAMES,
    ), status


@staff_bp.get("/campaigns")
@staff(*FUNDRAISING)
def index():
    """Every campaign with its status and progress."""
    campaigns = services.all_campaigns()
    totals = services.totals_for(campaigns)
    rows = [(c, totals[c.id]) for c in campaigns]
    return render_template("campaigns/staff_list.html", rows=rows)


@staff_bp.route("/campaigns/new", methods=["GET", "POST"])
@staff(*FUNDRAISING)
def new():
    """Create a campaign (as a draft)."""
    if request.method == "GET":
        return _render_form(None, _form_from(None), {})
    data, errors = load_form(CampaignSchema())
    if not errors:
        try:
            campaign = services.create_campaign(data, current_user)
        except DomainError as error:
            errors = {"_schema": [str(error)]}
    if errors:
        return _render_form(None, dict(request.form), errors, 422)
    flash("Campaign created as a draft.", "success")
    return redirect(url_for("campaigns_staff.detail", campaign_id=campaign.id))


@staff_bp.get("/campaigns/<int:campaign_id>")
@staff(*FUNDRAISING)
def detail(campaign_id: int):
    """One campaign: totals per currency, converted total, preview of the public text."""
    campaign = db.get_or_404(Campaign, campaign_id)
    totals = services.campaign_totals(campaign)
    return render_template(
        "campaigns/staff_detail.html",
        campaign=campaign,
        totals=totals,
        body_html=services.render_markdown(campaign.body_md),
        thermometer=services.Thermometer(totals.percent),
    )


@staff_bp.route("/campaigns/<int:campaign_id>/edit", methods=["GET", "POST"])
@staff(*FUNDRAISING)
def edit(campaign_id: int):
    """Edit a campaign's text, goal and dates."""
    campaign = db.get_or_404(Campaign, campaign_id)
    if request.method == "GET":
        return _render_form(campaign, _form_from(campaign), {})
    data, errors = load_form(CampaignSchema())
    if not errors:
        try:
            services.update_campaign(campaign, data, current_user)
        except DomainError as error:
            errors = {"_schema": [str(error)]}
    if errors:
        return _render_form(campaign, dict(request.form), errors, 422)
    flash("Campaign saved.", "success")
    return redirect(url_for("campaigns_staff.detail", campaign_id=campaign.id))


def _move(campaign_id: int, action: str):
    campaign = db.get_or_404(Campaign, campaign_id)
    _data, errors = load_form(EmptySchema())
    if errors:
        abort(400)
    if action == "publish":
        services.publish_campaign(campaign, current_user)
    else:
        services.close_campaign(campaign, current_user)
    flash("Campaign published." if action == "publish" else "Campaign closed.", "success")
    return redirect(url_for("campaigns_staff.detail", campaign_id=campaign_id))


@staff_bp.post("/campaigns/<int:campaign_id>/publish")
@staff(*FUNDRAISING)
@back_on_error("campaigns_staff.detail", "campaign_id")
def publish(campaign_id: int):
    """Publish a draft: its page, the home page and the JSON total go live."""
    return _move(campaign_id, "publish")


@staff_bp.post("/campaigns/<int:campaign_id>/close")
@staff(*FUNDRAISING)
@back_on_error("campaigns_staff.detail", "campaign_id")
def close(campaign_id: int):
    """Close a live campaign: it stops taking gifts; its page stays."""
    return _move(campaign_id, "close")


@staff_bp.route("/rates", methods=["GET", "POST"])
@staff(*FUNDRAISING)
def rates():
    """Exchange rates into the reporting currency, set by staff, with their history."""
    reporting = current_app.config["REPORTING_CURRENCY"]
    errors: dict = {}
    if request.method == "POST":
        data, errors = load_form(RateSchema())
        if not errors:
            try:
                money.set_rate(data["currency"], reporting, data["rate"], current_user)
            except DomainError as error:
                errors = {"_schema": [str(error)]}
        if not errors:
            flash("Rate saved.", "success")
            return redirect(url_for("campaigns_staff.rates"))
    return render_template(
        "campaigns/staff_rates.html",
        reporting=reporting,
        current=money.current_rates(reporting),
        history=money.rate_history(),
        errors=errors,
        currencies=[c for c in CURRENCIES if c != reporting],
        form=dict(request.form),
    ), (422 if errors else 200)


# `flask campaigns verify-totals` hangs on bp.cli: imported with the views, before the
# blueprint is registered.
from donorhub.campaigns import cli as _cli  # noqa: E402, F401
