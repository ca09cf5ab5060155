"""Giving pages: the donate form, thank-you, history, statements, plans; staff exports."""

from __future__ import annotations

import secrets
from datetime import date

from flask import (
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from donorhub.accounts.models import StaffRole
from donorhub.campaigns import services as campaign_services
from donorhub.commit_point import (
    back_on_error,
    commit_before_calling_stripe,
    commit_before_refusing,
)
from donorhub.csv import to_csv
from donorhub.database import uk_today
from donorhub.donations import bp, giftaid, services, staff_bp
from donorhub.donations.models import Donation, PlanStatus, RecurringPlan
from donorhub.donations.schemas import GiftAidExportSchema, NewGiftSchema, PlanChangeSchema
from donorhub.errors import DomainError, NotPermitted
from donorhub.extensions import db
from donorhub.forms import EmptySchema, load_form
from donorhub.money import CURRENCIES, CURRENCY_NAMES
from donorhub.payments.gateway import GatewayError
from donorhub.security import public, signed_in, staff


def form_context(form: dict, errors: dict) -> dict:
    config = current_app.config
    currency = form.get("currency")
    if currency not in CURRENCIES:
        currency = config["DONATION_DEFAULT_CURRENCY"]
    presets = config["DONATION_PRESETS"]
    fee_examples = {c: {p: services.fee_cover_for(c, p) for p in presets[c]} for c in CURRENCIES}
    campaign = (
        campaign_services.campaign_for_gift(form["campaign"]) if form.get("campaign") else None
    )
    return {
        "campaign": campaign,
        # A new one-time token on every page: the same page sent twice starts one gift.
        "form_token": secrets.token_urlsafe(24),
        "form": form,
        "errors": errors,
        "currency": currency,
        "currencies": CURRENCIES,
        "currency_names": CURRENCY_NAMES,
        "presets": presets,
        "limits": {c: services.amount_limits(c) for c in CURRENCIES},
        "fee_examples": fee_examples,
        "fee_rules": config["DONATION_FEE_COVER"],
        "fee_percent": {
            c: f"{rule[0] / 100:.1f}"  # basis points, shown as "1.5"
            for c, rule in config["DONATION_FEE_COVER"].items()
        },
        "declaration": giftaid.declaration_text(
            config["GIFT_AID_DECLARATION_VERSION"],
            amount="this gift",
            charity=config["CHARITY_NAME"],
        ),
        "declaration_note": giftaid.DECLARATION_NOTE,
    }


def gateway_failure_page(row, error: GatewayError):
    """Stripe could not open the checkout: say so plainly and offer to try again."""
    # Kept although the page answers 502/503: the gift (and its attempt number) must be
    # there when the donor tries again, so the retry reuses its idempotency key.
    commit_before_refusing()
    status = 503 if error.retryable else 502
    return render_template("donations/try_again.html", row=row, error=error), status


@bp.route("/donate", methods=["GET", "POST"])
@public
def donate():
    """Give once, monthly or yearly."""
    if request.method == "GET":
        form = {
            "frequency": request.args.get("frequency", "monthly"),
            "currency": request.args.get("currency", "")
            if request.args.get("currency") in CURRENCIES
            else "",
        }
        if current_user.is_authenticated:
            form["full_name"] = current_user.full_name
        if request.args.get("campaign"):
            form["campaign"] = request.args.get("campaign", "")[:64]
        return render_template("donations/donate.html", **form_context(form, {}))
    data, errors = load_form(NewGiftSchema())
    started = None
    if not errors:
        try:
            campaign = campaign_services.campaign_for_gift(data.campaign) if data.campaign else None
            started = services.start_donation(
                data, current_user, campaign_id=campaign.id if campaign is not None else None
            )
        except services.GiftRejected as error:
            errors = {error.field: [str(error)]}
    if errors:
        form = {k: v for k, v in request.form.items() if k not in ("csrf_token", "form_token")}
        return render_template("donations/donate.html", **form_context(form, errors)), 422
    if started is None:
        raise RuntimeError("gift not started")  # no errors: the gift was started
    row = started.row
    if started.repeated:
        # The same form again (a double click): the gift the first one started, and its
        # checkout (the same idempotency key gives the same session). Nothing new is kept:
        # this drops what this request wrote (a donor, a declaration) before it found that.
        db.session.rollback()
        first = services.find_by_form_token(data.form_token)
        if first is None:  # the form token clashed with the first request's gift
            raise RuntimeError("first request's gift not found")
        row = first
    return to_checkout(row)


def to_checkout(row):
    """Send the donor to Stripe's Checkout for this gift or plan (opened again under the same
    idempotency key when it was opened before); a gift that needs no checkout any more goes
    to its thank-you page."""
    try:
        url = services.open_checkout(row)
    except DomainError:
        return redirect(url_for("donations.thank_you", ref=row.public_id))
    except GatewayError as error:
        return gateway_failure_page(row, error)
    return redirect(url, code=303)


@bp.post("/donate/retry/<public_id>")
@public
def retry(public_id: str):
    """Try again to open the checkout of a gift; the same idempotency key is sent."""
    load_form(EmptySchema())
    row = services.find_by_public_id(public_id)
    if row is None:
        abort(404)
    return to_checkout(row)


def _returning_gift() -> tuple[Donation | RecurringPlan, bool]:
    """The gift or plan Checkout sent the donor back for, and whether it is confirmed."""
    row = services.find_by_session(
        request.args.get("session_id", "")
    ) or services.find_by_public_id(request.args.get("ref", ""))
    if row is None:
        abort(404)
    if isinstance(row, Donation):
        return row, row.is_paid
    return row, row.status not in (PlanStatus.PENDING,)


@bp.get("/donate/thank-you")
@public
def thank_you():
    """Where Checkout sends the donor back. The webhook's event, applied by the event
    worker, confirms the gift; while it is not, the page asks `thank_you_status`."""
    row, confirmed = _returning_gift()
    return render_template(
        "donations/thank_you.html",
        row=row,
        confirmed=confirmed,
        is_plan=isinstance(row, RecurringPlan),
    )


@bp.get("/donate/thank-you/status")
@public
def thank_you_status():
    """Whether the thank-you page's gift is confirmed yet: the page's script asks this (a few
    bytes, one query) until the event worker has applied Stripe's event."""
    _row, confirmed = _returning_gift()
    return jsonify(confirmed=confirmed)


@bp.get("/donate/cancelled")
@public
def cancelled():
    """Checkout's cancel link: nothing was taken; offer to go back."""
    row = services.find_by_public_id(request.args.get("ref", ""))
    return render_template("donations/cancelled.html", row=row)


# Signed-in donors --------------------------------------------------------------------------


@bp.get("/donate/history")
@signed_in
def history():
    """Your gifts, regular gifts and Gift Aid declarations."""
    donor = services.donor_for_user(current_user)
    data = services.history(donor) if donor else {"gifts": [], "plans": [], "declarations": []}
    today = uk_today()
    uk_year = today.year if today >= date(today.year, 4, 6) else today.year - 1
    in_year = today.year if today.month >= 4 else today.year - 1
    return render_template(
        "donations/history.html", donor=donor, uk_year=uk_year, in_year=in_year, **data
    )


@bp.get("/donate/statement/<region>/<int:year>")
@signed_in
def statement(region: str, year: int):
    """A printable statement of one tax year (UK: 6 April to 5 April; India: April to March)."""
    if region not in ("uk", "in") or not 2000 <= year <= 2100:
        abort(404)
    donor = services.donor_for_user(current_user)
    period = services.tax_year(region, year)
    data = services.statement(donor, period) if donor else {"rows": [], "totals": {}}
    return render_template(
        "donations/statement.html", donor=donor, period=period, year=year, **data
    )


def _own_plan(public_id: str) -> RecurringPlan:
    plan = db.session.scalar(db.select(RecurringPlan).where(RecurringPlan.public_id == public_id))
    if plan is None:
        abort(404)
    try:
        services.check_owner(plan, current_user)
    except NotPermitted:
        abort(404)  # the same answer as for a plan that does not exist
    return plan


@bp.get("/donate/plans/<public_id>")
@signed_in
def plan(public_id: str):
    """Change, pause, resume or cancel one regular gift."""
    row = _own_plan(public_id)
    return render_template(
        "donations/plan.html",
        plan=row,
        errors={},
        form={},
        action_base=url_for("donations.plan", public_id=public_id),
    )


#: What the donation pages do to a regular gift (besides changing it). A sponsorship's plan
#: only updates its card here: the rest goes through the sponsorship's pages.
PLAN_ACTIONS = ("pause", "resume", "cancel", "card")


def _plan_action(plan_row: RecurringPlan, action: str, back: str, card_return: str | None = None):
    """`card_return`: where Stripe's Billing Portal sends the donor back (never a manage
    token URL: the portal's page would then hold a live token). A refusal (`DomainError`)
    goes back to `back` through each calling view's `back_on_error`."""
    load_form(EmptySchema())
    if action not in PLAN_ACTIONS:
        abort(404)
    if action in ("pause", "resume", "cancel"):
        # A double click: the second request waits here for the first and sees its effect.
        plan_row = services.lock_plan_for_change(plan_row)
    try:
        if action != "card":
            services.check_donation_plan(plan_row)
        if action == "pause":
            services.pause_plan(plan_row, current_user if current_user.is_authenticated else None)
            message = "Your regular gift is paused. Nothing more will be taken until you resume."
        elif action == "resume":
            services.resume_plan(plan_row, current_user if current_user.is_authenticated else None)
            message = "Your regular gift is running again."
        elif action == "cancel":
            services.cancel_plan(plan_row, current_user if current_user.is_authenticated else None)
            message = "Your regular gift is cancelled. Nothing more will be taken."
        elif action == "card":
            url = services.card_update_url(
                plan_row, current_app.config["PUBLIC_BASE_URL"] + (card_return or back)
            )
            return redirect(url, code=303)
    except services.PlanOutcomeUnknown:
        # Stripe may still act on it: its event then records the outcome and mails the donor.
        # The redirect would keep what the service wrote before it failed: drop that first.
        db.session.rollback()
        flash(
            "Our payment provider has not confirmed this yet, so this page still shows "
            "your regular gift as it was. If it goes through, this page will show it and "
            "we will e-mail you; if it has not changed in a few minutes, please try again.",
            "error",
        )
        return redirect(back)
    except GatewayError:
        db.session.rollback()  # as above: the redirect must not keep the failed change
        flash(
            "We could not reach our payment provider, so nothing has changed. Please try "
            "again in a minute.",
            "error",
        )
        return redirect(back)
    flash(message, "success")
    return redirect(
        back
        if action != "cancel" or current_user.is_authenticated
        else url_for("donations.manage_done")
    )


@bp.post("/donate/plans/<public_id>/<action>")
@signed_in
@back_on_error("donations.plan", "public_id", code=302)
def plan_action(public_id: str, action: str):
    """Pause, resume, cancel, or update the card of your regular gift."""
    row = _own_plan(public_id)
    return _plan_action(row, action, url_for("donations.plan", public_id=public_id))


@bp.post("/donate/plans/<public_id>/change")
@signed_in
def change_plan(public_id: str):
    """Change the amount or switch between monthly and yearly."""
    row = _own_plan(public_id)
    data, errors = load_form(PlanChangeSchema())
    if not errors:
        try:
            services.prepare_plan_change(row, data.amount_minor, data.frequency)
        except services.GiftRejected as error:
            errors = {"amount": [str(error)]}
        except DomainError as error:
            errors = {"_schema": [str(error)]}
    if errors:
        return render_template(
            "donations/plan.html",
            plan=row,
            errors=errors,
            form=request.form,
            action_base=url_for("donations.plan", public_id=public_id),
        ), 422
    # The amount asked for is committed before Stripe is called, so an invoice that Stripe
    # raises at once for the new amount is recognised by the webhook, not flagged.
    commit_before_calling_stripe()
    back = url_for("donations.plan", public_id=public_id)
    try:
        services.apply_plan_change(row, data.amount_minor, data.frequency, current_user)
    except GatewayError as error:
        # Drop what the failed change wrote; what follows is kept by the redirect.
        db.session.rollback()
        if not error.retryable:  # Stripe refused it: nothing changed there
            services.abandon_plan_change(row)
            flash(
                "Our payment provider did not accept the change, so nothing has changed.", "error"
            )
            return redirect(back)
        # A timeout or a 5xx: Stripe may have applied it (and charged at once). Ask Stripe.
        confirmed = services.confirm_plan_change(
            row, data.amount_minor, data.frequency, current_user
        )
        if not confirmed:
            flash(
                "We could not confirm the change with our payment provider yet. If it goes "
                "through we will e-mail you to confirm it; if no e-mail comes within an "
                "hour, please check this page before trying again.",
                "error",
            )
            return redirect(back)
    flash("Your regular gift is changed.", "success")
    return redirect(back)


@bp.post("/donate/gift-aid/<int:declaration_id>/cancel")
@signed_in
def cancel_gift_aid(declaration_id: int):
    """Cancel a Gift Aid declaration: later gifts are not claimed."""
    load_form(EmptySchema())
    donor = services.donor_for_user(current_user)
    if donor is None:
        abort(404)
    try:
        services.cancel_declaration(donor, declaration_id)
    except NotPermitted:
        abort(404)
    flash(
        "Your Gift Aid declaration is cancelled. We will not claim Gift Aid on gifts from today.",
        "success",
    )
    return redirect(url_for("donations.history"))


@bp.route("/donate/gift-aid/confirm/<token>", methods=["GET", "POST"])
@public
def confirm_gift_aid(token: str):
    """The link in a receipt that extends a Gift Aid declaration to all the donor's gifts.
    GET only shows the question; the POST (CSRF-protected) confirms."""
    declaration = services.declaration_for_confirm_token(token)
    if declaration is None:
        return render_template("donations/gift_aid_confirm.html", declaration=None), 400
    if request.method == "POST":
        load_form(EmptySchema())
        services.confirm_declaration(declaration)
        return render_template(
            "donations/gift_aid_confirm.html", declaration=declaration, done=True
        )
    return render_template(
        "donations/gift_aid_confirm.html", declaration=declaration, token=token, done=False
    )


# The signed link in every receipt: pause or cancel without signing in ---------------------


def _plan_from_token(token: str) -> RecurringPlan | None:
    return services.plan_for_manage_token(token)


@bp.get("/donate/manage/<token>")
@public
def manage(token: str):
    """Pause or cancel a regular gift from the link in a receipt (no sign-in needed)."""
    row = _plan_from_token(token)
    if row is None:
        return render_template("donations/manage_invalid.html"), 400
    return render_template("donations/manage.html", plan=row, token=token)


@bp.post("/donate/manage/<token>/<action>")
@public
@back_on_error("donations.manage", "token", code=302)
def manage_action(token: str, action: str):
    """Carry out the donor's choice from the receipt link (POST, CSRF-protected)."""
    row = _plan_from_token(token)
    if row is None:
        return render_template("donations/manage_invalid.html"), 400
    if action not in PLAN_ACTIONS:
        abort(404)
    return _plan_action(
        row,
        action,
        url_for("donations.manage", token=token),
        card_return=url_for("donations.card_done"),
    )


@bp.get("/donate/manage-done")
@public
def manage_done():
    """After cancelling from a receipt link (which then stops working)."""
    return render_template("donations/manage_done.html")


@bp.get("/donate/manage/done")
@public
def card_done():
    """Where Stripe's Billing Portal sends a donor who came from a receipt link."""
    return render_template("donations/card_done.html")


# Staff: flagged gifts and the Gift Aid claim -----------------------------------------------


@staff_bp.get("")
@staff(StaffRole.FUNDRAISER, StaffRole.ADMIN)
def staff_home():
    """Gifts that need a person: amount mismatches and disputes."""
    return render_template(
        "donations/staff/home.html",
        flagged=services.flagged_gifts(),
        flagged_plans=services.flagged_plans(),
    )


@staff_bp.route("/gift-aid", methods=["GET", "POST"])
@staff(StaffRole.FUNDRAISER, StaffRole.ADMIN)
def gift_aid_export():
    """Check, then export, a Gift Aid claim in HMRC's schedule columns."""
    if request.method == "GET":
        form = {
            "date_from": request.args.get("date_from", ""),
            "date_to": request.args.get("date_to", ""),
        }
        preview = None
        if form["date_from"] and form["date_to"]:
            try:
                preview = services.preview_claim(
                    date.fromisoformat(form["date_from"]), date.fromisoformat(form["date_to"])
                )
            except ValueError:
                preview = None
        return render_template(
            "donations/staff/gift_aid.html",
            form=form,
            errors={},
            preview=preview,
            columns=giftaid.SCHEDULE_COLUMNS,
            claims=services.recent_claims(),
        )
    data, errors = load_form(GiftAidExportSchema())
    preview = None
    if not errors:
        preview = services.preview_claim(data["date_from"], data["date_to"])
        try:
            claim = services.record_claim(preview, current_user)
        except DomainError as error:
            # The page below lists the recent claims: not the one this export just wrote.
            db.session.rollback()
            errors = {"_schema": [str(error)]}
    if errors:
        return render_template(
            "donations/staff/gift_aid.html",
            form=request.form,
            errors=errors,
            preview=preview,
            columns=giftaid.SCHEDULE_COLUMNS,
            claims=services.recent_claims(),
        ), 422
    if preview is None:
        raise RuntimeError("claim not previewed")  # no errors: the claim was previewed
    body = _claim_csv([row for row, _amount, _gift in preview.rows])
    return _csv_response(body, claim.id)


@staff_bp.get("/gift-aid/claims/<int:claim_id>.csv")
@staff(StaffRole.FUNDRAISER, StaffRole.ADMIN)
def gift_aid_claim_file(claim_id: int):
    """Download an exported claim's file again (the same rows; nothing is claimed)."""
    rows = services.claim_rows(claim_id)
    if rows is None:
        abort(404)
    return _csv_response(_claim_csv(rows), claim_id)


def _claim_csv(rows) -> str:
    return to_csv(list(giftaid.SCHEDULE_COLUMNS), [row.cells() for row in rows])


def _csv_response(body: str, claim_id: int):
    response = current_app.response_class(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="gift-aid-claim-{claim_id}.csv"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response
