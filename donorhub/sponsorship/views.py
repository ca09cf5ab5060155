"""Sponsorship pages: public profiles and matching, choosing a child, the code of conduct,
the sponsor portal (/my/sponsorships) and the staff overview (/staff/sponsorship)."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from donorhub.accounts.models import StaffRole
from donorhub.audit import record_audit
from donorhub.commit_point import commit_before_calling_stripe, commit_before_refusing
from donorhub.errors import DomainError
from donorhub.extensions import db, limiter
from donorhub.forms import EmptySchema, load_form
from donorhub.money import CURRENCY_NAMES, format_money
from donorhub.payments.gateway import GatewayError
from donorhub.security import is_safe_next, public, signed_in, staff
from donorhub.sponsorship import bp, conduct, services, staff_bp
from donorhub.sponsorship.schemas import ChoiceSchema, ChooseSchema, ConductSchema, SuspendSchema

FILTER_NAMES = ("age", "region", "stage", "interest")


def _viewer_suspended() -> bool:
    return current_user.is_authenticated and services.is_suspended(current_user.id)


def _filters(options: dict[str, list[str]]) -> services.Filters:
    """Only values that some open card shows are taken; anything else is ignored."""
    chosen = {}
    for name in FILTER_NAMES:
        value = request.args.get(name, "")
        chosen[name] = value if value in options[name] else None
    return services.Filters(**chosen)


def _amounts() -> list[tuple[str, str, str]]:
    return [
        (code, CURRENCY_NAMES.get(code, code), format_money(amount, code))
        for code, amount in current_app.config["SPONSORSHIP_MONTHLY_AMOUNTS"].items()
    ]


def _page_number() -> int:
    """The page asked for; anything but a whole number from 1 to MAX_PAGE is the first."""
    text = request.args.get("page", "")
    if not text.isdigit() or len(text) > 6:
        return 1
    number = int(text)
    return number if 1 <= number <= services.MAX_PAGE else 1


@bp.get("/sponsor")
@public
def waiting_children():
    """Profiles of children waiting for a sponsor, filterable by released values, a page of
    cards at a time (the filters are kept from page to page)."""
    if _viewer_suspended():
        return render_template("sponsorship/suspended.html"), 403
    options = services.filter_options()
    filters = _filters(options)
    page = services.listed_page(filters, _page_number())
    chosen = {name: getattr(filters, name) for name in FILTER_NAMES if getattr(filters, name)}
    return render_template(
        "sponsorship/waiting.html",
        profiles=page.cards,
        page=page,
        chosen=chosen,
        options=options,
        filters=filters,
        total=page.any_listed,
        interest_name=services.interest_name,
        no_match=request.args.get("no_match") == "1",
        page_size=services.PAGE_SIZE,
    )


@bp.get("/sponsor/match")
@public
def match_me():
    """ "Match me": a random open child who fits the optional preferences."""
    if _viewer_suspended():
        return render_template("sponsorship/suspended.html"), 403
    card = services.match(_filters(services.filter_options()))
    if card is None:
        args: dict[str, Any] = {k: v for k, v in request.args.items() if k in FILTER_NAMES}
        return redirect(url_for("sponsorship.waiting_children", no_match="1", **args))
    return redirect(url_for("sponsorship.profile", token=card.token, matched="1"))


@bp.get("/sponsor/<token>")
@public
def profile(token: str):
    """One child's anonymized profile."""
    if _viewer_suspended():
        return render_template("sponsorship/suspended.html"), 403
    card = services.profile_by_token(token)
    if card is None:
        abort(404)
    return render_template(
        "sponsorship/profile.html",
        card=card,
        amounts=_amounts(),
        matched=request.args.get("matched") == "1",
        hold_minutes=current_app.config["SPONSORSHIP_HOLD_MINUTES"],
    )


def _account_key() -> str:
    return f"account:{current_user.get_id()}"


@bp.post("/sponsor/<token>/choose")
@signed_in
@limiter.limit(lambda: current_app.config["RATELIMIT_CHOOSE"])  # per client address
@limiter.limit(lambda: current_app.config["RATELIMIT_CHOOSE_ACCOUNT"], key_func=_account_key)
def choose(token: str):
    """Hold this child's place, then go to Stripe Checkout for the monthly sponsorship."""
    data, errors = load_form(ChooseSchema())
    if errors:
        flash("Choose a currency for your sponsorship.", "error")
        return redirect(url_for("sponsorship.profile", token=token))
    # The refusals that answer with a redirect roll back by hand: a redirect would commit.
    try:
        sponsorship = services.hold_child(current_user, token, data["currency"])
    except services.NotEligible as error:
        if error.reason == "conduct":
            db.session.rollback()
            return redirect(
                url_for(
                    "sponsorship.code_of_conduct", next=url_for("sponsorship.profile", token=token)
                )
            )
        return render_template(
            "sponsorship/not_eligible.html", reason=error.reason, message=str(error)
        ), 403
    except services.ChildTaken:
        return render_template("sponsorship/taken.html"), 409
    except services.ChildUnavailable:
        abort(404)
    except DomainError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("sponsorship.portal"))
    commit_before_calling_stripe()  # the place is ours before Stripe is called
    return _to_checkout(sponsorship)


def _to_checkout(sponsorship):
    try:
        url = services.open_checkout(sponsorship)
    except GatewayError as error:
        # Keep the hold and its attempt number although the page is an error: the retry
        # calls Stripe again with the same idempotency key.
        commit_before_refusing()
        return render_template(
            "sponsorship/try_again.html", sponsorship=sponsorship, error=error
        ), 503 if error.retryable else 502
    except DomainError as error:
        db.session.rollback()  # a redirect would commit what the refused attempt wrote
        flash(str(error), "error")
        return redirect(url_for("sponsorship.waiting_children"))
    return redirect(url, code=303)


def _safe_next(value: str) -> str:
    """Back to the child's page after accepting the code: same-site sponsor pages only."""
    if is_safe_next(value) and value.startswith("/sponsor/"):
        return value
    return url_for("sponsorship.portal")


@bp.route("/sponsor/code-of-conduct", methods=["GET", "POST"])
@signed_in
def code_of_conduct():
    """The child-protection code of conduct; accepting it is required before sponsoring."""
    accepted = services.accepted_current_conduct(current_user.id)
    errors: dict = {}
    if request.method == "POST":
        data, errors = load_form(ConductSchema())
        if not errors and not data["accept"]:
            errors = {"accept": ["Tick the box to accept the code of conduct."]}
        if not errors:
            try:
                services.accept_conduct(current_user, data["version"])
            except DomainError as error:
                errors = {"_schema": [str(error)]}
            else:
                flash("Thank you. You have accepted our code of conduct.", "success")
                return redirect(_safe_next(data["next"]))
    return render_template(
        "sponsorship/conduct.html",
        code=conduct.CURRENT,
        accepted=accepted,
        errors=errors,
        next=request.values.get("next", ""),
    ), 400 if errors else 200


# The sponsor portal ------------------------------------------------------------------------


@bp.get("/my/sponsorships")
@signed_in
def portal():
    """The signed-in sponsor's own sponsorships."""
    entries = services.portal(current_user)
    return render_template(
        "sponsorship/portal.html",
        entries=entries,
        suspended=services.is_suspended(current_user.id),
        conduct_ok=services.accepted_current_conduct(current_user.id),
        welcome=request.args.get("welcome") == "1",
    )


def _own(token: str):
    sponsorship = services.own_sponsorship(current_user, token)
    if sponsorship is None:
        abort(404)  # someone else's token and no token at all look the same
    return sponsorship


@bp.get("/my/sponsorships/<token>")
@signed_in
def portal_sponsorship(token: str):
    """One sponsorship: the released profile, approved updates, payment and controls."""
    sponsorship = _own(token)
    show = services.may_see_children(current_user)
    entry = services.portal_entry(current_user, sponsorship, show_children=show, with_home=True)
    services.record_disclosure(current_user, entry)
    return render_template(
        "sponsorship/sponsorship.html",
        entry=entry,
        token=token,
        home=entry.home,
        suspended=services.is_suspended(current_user.id),
        conduct_ok=services.accepted_current_conduct(current_user.id),
    )


@bp.post("/my/sponsorships/<token>/<action>")
@signed_in
def portal_action(token: str, action: str):
    """Cancel, update the card, or (after a child moved on) choose what happens next."""
    sponsorship = _own(token)
    back = url_for("sponsorship.portal_sponsorship", token=token)
    try:
        if action == "cancel":
            load_form(EmptySchema())
            services.cancel(current_user, sponsorship)
            message = "Your sponsorship is cancelled. Nothing more will be taken."
        elif action == "card":
            load_form(EmptySchema())
            url = services.card_update_url(
                sponsorship, current_app.config["PUBLIC_BASE_URL"] + back
            )
            return redirect(url, code=303)
        elif action == "choice":
            data, errors = load_form(ChoiceSchema())
            if errors:
                flash("Choose one of the three options.", "error")
                return redirect(back)
            services.choose_after_exit(current_user, sponsorship, data["choice"])
            if data["choice"] == "new_match":
                flash('Thank you. Choose a child below, or press "Match me".', "success")
                return redirect(url_for("sponsorship.waiting_children"))
            message = (
                "Thank you. Your monthly gift now goes to the safe homes' general fund."
                if data["choice"] == "general_fund"
                else "Your sponsorship has stopped. Nothing more will be taken."
            )
        elif action == "pay":
            load_form(EmptySchema())
            return _to_checkout(sponsorship)
        else:
            abort(404)
    except GatewayError:
        # A redirect would commit: undo what the service wrote before Stripe failed.
        db.session.rollback()
        flash(
            "We could not reach our payment provider, so nothing has changed. Please try "
            "again in a minute.",
            "error",
        )
        return redirect(back)
    except DomainError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(back)
    flash(message, "success")
    return redirect(back)


# Staff -------------------------------------------------------------------------------------


@staff_bp.get("")
@staff(StaffRole.SAFEGUARDING_OFFICER, StaffRole.ADMIN)
def overview():
    """Waiting children (by alias), sponsorships by status, time to match, suspensions."""
    overview = services.staff_overview()
    record_audit(current_user, "sponsorship.overview_viewed", "sponsorship", None, {})
    return render_template(
        "sponsorship/staff.html", overview=overview, reasons=services.SUSPENSION_REASONS, errors={}
    )


@staff_bp.post("/suspend")
@staff(StaffRole.SAFEGUARDING_OFFICER, StaffRole.ADMIN)
def suspend():
    """Suspend a sponsor: all child content is hidden from them at once."""
    data, errors = load_form(SuspendSchema())
    if errors:
        flash("Enter the sponsor's e-mail address and choose a reason.", "error")
        return redirect(url_for("sponsorship_staff.overview"))
    try:
        services.suspend(current_user, data["email"], data["reason"])
    except DomainError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("sponsorship_staff.overview"))
    flash("The sponsor is suspended: they see no child content from now on.", "success")
    return redirect(url_for("sponsorship_staff.overview"))


@staff_bp.post("/suspensions/<int:suspension_id>/lift")
@staff(StaffRole.SAFEGUARDING_OFFICER, StaffRole.ADMIN)
def lift(suspension_id: int):
    """Lift a suspension."""
    load_form(EmptySchema())
    try:
        services.lift_suspension(current_user, suspension_id)
    except DomainError as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("sponsorship_staff.overview"))
    flash("The suspension is lifted.", "success")
    return redirect(url_for("sponsorship_staff.overview"))
