"""Regular gifts (plans) as the donor runs them: the signed link to manage a plan, changes
of amount or interval, pause, resume and cancel, and plans flagged for staff.

Services flush, never commit. A change is two steps around the call to Stripe: the pending
change is committed first, then applied (docs/donations.md).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select, update

from donorhub.accounts.models import User
from donorhub.audit import record_audit
from donorhub.database import utcnow
from donorhub.donations.checkout import check_amount
from donorhub.donations.donor_records import donor_for_user
from donorhub.donations.models import SPONSORSHIP_DESIGNATION, Frequency, PlanStatus, RecurringPlan
from donorhub.errors import DomainError, NotPermitted
from donorhub.extensions import db
from donorhub.mail.services import queue_mail
from donorhub.money import format_money
from donorhub.payments.gateway import GatewayError, SubscriptionChange, get_gateway
from donorhub.urls import external_url

log = logging.getLogger(__name__)


def _manage_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        current_app.config["SECRET_KEY"], salt="donorhub.donations.manage-plan"
    )


def manage_token(plan: RecurringPlan) -> str:
    """The signed token of the link that manages a plan without signing in. It names the
    plan by its random public id: a row id counts up, so it would tell whoever sees the link
    how many plans came before this one."""
    return _manage_serializer().dumps({"p": plan.public_id, "v": plan.manage_version})


def manage_url(plan: RecurringPlan) -> str:
    """The link that manages a plan without signing in (for mail)."""
    return external_url("donations.manage", token=manage_token(plan))


def plan_for_manage_token(token: str) -> RecurringPlan | None:
    """The plan a manage link is for; None when invalid, expired or revoked."""
    max_age = current_app.config["PLAN_MANAGE_LINK_MAX_AGE"]
    try:
        payload = _manage_serializer().loads(token, max_age=int(max_age.total_seconds()))
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(payload, dict):
        return None
    reference = payload.get("p")
    if isinstance(reference, str):
        plan = db.session.scalar(select(RecurringPlan).where(RecurringPlan.public_id == reference))
    elif isinstance(reference, int) and not isinstance(reference, bool):
        # Links mailed before public ids named the plan by row id. They are honoured until
        # they expire (PLAN_MANAGE_LINK_MAX_AGE): a donor without an account has no other way
        # to stop a gift, and checking the signature shows nobody anything new.
        plan = db.session.get(RecurringPlan, reference)
    else:
        return None
    if plan is None or plan.manage_version != payload.get("v"):
        return None
    return plan


def flag_plan(plan: RecurringPlan, reason: str, event_type: str) -> None:
    """Staff must look at this plan (listed on the staff page); the first reason is kept."""
    if not plan.review_reason:
        plan.review_reason = reason[:200]
        record_audit(None, "plan.flagged", "plan", plan.id, {"event": event_type})
        log.warning("plan flagged for staff", extra={"plan_id": plan.id, "event_type": event_type})


def flagged_plans() -> Sequence[RecurringPlan]:
    """Plans flagged for staff, newest first."""
    return db.session.scalars(
        select(RecurringPlan)
        .where(RecurringPlan.review_reason.is_not(None))
        .order_by(RecurringPlan.id.desc())
        .limit(200)
    ).all()


def lock_plan_for_change(plan: RecurringPlan) -> RecurringPlan:
    """Hold the plan's row until the commit and read it afresh, so a second request for the
    same change (a double click) waits for the first and then sees its effect: no second
    Stripe call, no second mail. SQLite has no row locks: a write takes its database lock
    (reads there run outside any transaction, so the fresh read sees the first commit)."""
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(
            update(RecurringPlan)
            .where(RecurringPlan.id == plan.id)
            .values(revision=RecurringPlan.revision)
            .execution_options(synchronize_session=False)
        )
    fresh = db.session.scalar(
        select(RecurringPlan)
        .where(RecurringPlan.id == plan.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if fresh is None:  # the caller's plan row; plan rows are never deleted
        raise RuntimeError("plan row vanished")
    return fresh


def frequency_of(interval: str) -> Frequency:
    """The plan frequency of a Stripe interval ("month" or "year")."""
    return Frequency.MONTHLY if interval == "month" else Frequency.YEARLY


def check_owner(plan: RecurringPlan, user) -> None:
    """Refuse unless the plan is the signed-in donor's own."""
    donor = donor_for_user(user)
    if donor is None or donor.id != plan.donor_id:
        raise NotPermitted("That regular gift is not yours.")


def is_sponsorship_plan(plan: RecurringPlan) -> bool:
    """The plan pays for a child's sponsorship (its price is fixed)."""
    return plan.designation == SPONSORSHIP_DESIGNATION


def check_donation_plan(plan: RecurringPlan) -> None:
    """A sponsorship's plan has the sponsorship's fixed amount and is run from the
    sponsorship's pages (which free the child's place); no donation route changes it."""
    if is_sponsorship_plan(plan):
        raise DomainError(
            "This regular gift is a child's sponsorship. Its amount is fixed; "
            "you can stop it or update your card from your sponsorship page."
        )


def _require_live(plan: RecurringPlan) -> str:
    if not plan.is_live or not plan.stripe_subscription_id:
        raise DomainError("This regular gift is not running, so it cannot be changed.")
    return plan.stripe_subscription_id


def prepare_plan_change(plan: RecurringPlan, amount_minor: int, frequency: str) -> None:
    """Step 1 (committed before Stripe is called): note the amount we are about to ask for,
    so an invoice Stripe raises at once for it is recognised, not flagged, and a change
    Stripe applied without our hearing its answer is settled by its event."""
    check_donation_plan(plan)
    _require_live(plan)
    check_amount(plan.currency, amount_minor, field="amount")
    plan.pending_amount_minor = amount_minor
    plan.pending_frequency = Frequency(frequency).value
    plan.revision += 1


def apply_plan_change(
    plan: RecurringPlan, amount_minor: int, frequency: str, actor: User | None
) -> None:
    """Step 2: ask Stripe, then record what it accepted (unless its event already did)."""
    check_donation_plan(plan)
    sub_id = _require_live(plan)
    key = f"plan-{plan.public_id}-change-{plan.revision}-{amount_minor}-{frequency}"
    interval = Frequency(frequency).stripe_interval
    get_gateway().change_subscription(
        SubscriptionChange(
            subscription_id=sub_id,
            idempotency_key=key,
            amount_minor=amount_minor,
            currency=plan.currency,
            interval=interval,
        )
    )
    settle_plan_change(lock_plan_for_change(plan), amount_minor, frequency, actor)


def confirm_plan_change(
    plan: RecurringPlan, amount_minor: int, frequency: str, actor: User | None
) -> bool:
    """After an answer from Stripe that leaves the outcome unknown (a timeout, a 5xx, a 409
    for a request still running): ask Stripe for the subscription. True: the change is
    applied, and recorded here. False: not (yet) applied; the amount asked for stays pending,
    so the event of a change Stripe applies later settles it (and mails the donor)."""
    plan = lock_plan_for_change(plan)
    if not plan.stripe_subscription_id:
        return False
    try:
        sub = get_gateway().subscription(plan.stripe_subscription_id)
    except GatewayError:
        return False
    interval = Frequency(frequency).stripe_interval
    if sub is None or (sub.amount, sub.currency, sub.interval) != (
        amount_minor,
        plan.currency,
        interval,
    ):
        return False
    settle_plan_change(plan, amount_minor, frequency, actor)
    return True


def abandon_plan_change(plan: RecurringPlan) -> None:
    """Stripe refused the change for good: nothing is pending any more."""
    plan = lock_plan_for_change(plan)
    plan.pending_amount_minor = None
    plan.pending_frequency = None


def is_pending_change(plan: RecurringPlan, amount_minor: int, frequency: str) -> bool:
    """The change the donor asked for and we have not recorded: amount and interval both
    (a change of interval alone keeps the amount)."""
    if plan.pending_amount_minor is None or plan.pending_amount_minor != amount_minor:
        return False
    return plan.pending_frequency is None or plan.pending_frequency == frequency


def settle_plan_change(
    plan: RecurringPlan, amount_minor: int, frequency: str, actor: User | None
) -> bool:
    """Record a change Stripe applied, once: by the request that asked for it, or by the
    subscription's event when that request never heard Stripe's answer. The donor is mailed
    once, by whichever comes first. False if it was already recorded (or another change is
    the one pending)."""
    if not is_pending_change(plan, amount_minor, frequency):
        return False
    plan.amount_minor = amount_minor
    plan.fee_cover_minor = 0
    plan.frequency = Frequency(frequency)
    plan.pending_amount_minor = None
    plan.pending_frequency = None
    record_audit(
        actor,
        "plan.changed",
        "plan",
        plan.id,
        {"amount_minor": amount_minor, "frequency": frequency},
    )
    queue_mail(
        plan.donor.email,
        "donations/plan_changed",
        subject="Your regular gift is changed",
        name=plan.payer_name,
        amount=format_money(amount_minor, plan.currency),
        frequency=frequency,
        manage_url=manage_url(plan),
    )
    return True


def _state_change_key(plan: RecurringPlan, action: str) -> str:
    """A key of its own for each try at pausing or resuming. Stripe keeps a 5xx under its key
    for 24 hours, and a failed try rolls back the revision, so a key made of the revision
    alone would replay that 5xx to every try for a day. Setting the same state twice does no
    harm, and the plan's row lock already makes a double click act once, so nothing needs
    the same key across tries; the library's own retries within one try keep it."""
    return f"plan-{plan.public_id}-{action}-{plan.revision}-{secrets.token_hex(6)}"


class PlanOutcomeUnknown(GatewayError):
    """A pause, resume or cancel whose answer from Stripe never came (a timeout, a 5xx) and
    which Stripe's copy of the subscription, read back, does not show done (yet). Stripe may
    still act: the subscription's event then records it and tells the donor."""

    def __init__(self, status: int | None = None):
        super().__init__(
            "Our payment provider has not confirmed this yet.",
            retryable=True,
            kind="outcome_unknown",
            status=status,
        )


def _stripe_did(plan: RecurringPlan, action: str, error: GatewayError) -> None:
    """After an unclear answer to a pause, resume or cancel: read the subscription back
    (the plan's row is still held, so its event waits for this answer) and return if Stripe
    did what was asked. A refusal is re-raised (nothing changed); otherwise PlanOutcomeUnknown.
    """
    if not error.retryable:
        raise error
    if plan.stripe_subscription_id is None:  # the change was asked of this subscription
        raise RuntimeError("plan without a subscription")
    try:
        sub = get_gateway().subscription(plan.stripe_subscription_id)
    except GatewayError:
        sub = None
    done = (
        sub is not None
        and {
            "pause": sub.paused and sub.status != "canceled",
            "resume": not sub.paused and sub.status != "canceled",
            "cancel": sub.status == "canceled",
        }[action]
    )
    if not done:
        raise PlanOutcomeUnknown(error.status) from error
    log.info("plan action confirmed by reading back", extra={"plan_id": plan.id, "action": action})


def pause_plan(plan: RecurringPlan, actor: User | None, *, notify: bool = True) -> None:
    """Pause collection. `notify=False`: no mail (a sponsorship paused at a child's exit must
    not tell the sponsor before the delayed neutral notice)."""
    _set_paused(plan, actor, paused=True, notify=notify)


def resume_plan(plan: RecurringPlan, actor: User | None, *, notify: bool = True) -> None:
    """Resume collection of a paused plan."""
    _set_paused(plan, actor, paused=False, notify=notify)


def _set_paused(plan: RecurringPlan, actor: User | None, *, paused: bool, notify: bool) -> None:
    """Ask Stripe to pause or resume, then record it and tell the donor (unless `notify` is
    False). Nothing happens when the plan is already so."""
    sub_id = _require_live(plan)
    if bool(plan.paused) == paused:
        return
    action = "pause" if paused else "resume"
    plan.revision += 1
    gateway = get_gateway()
    ask = gateway.pause_subscription if paused else gateway.resume_subscription
    try:
        ask(sub_id, _state_change_key(plan, action))
    except GatewayError as error:
        _stripe_did(plan, action, error)
    plan.paused = paused
    plan.settle()
    record_audit(actor, "plan.paused" if paused else "plan.resumed", "plan", plan.id, {})
    if notify:
        tell_paused_or_resumed(plan)


def tell_paused_or_resumed(plan: RecurringPlan) -> None:
    """Mail the donor that the plan is now paused, or running again."""
    if plan.paused:
        queue_mail(
            plan.donor.email,
            "donations/plan_paused",
            subject="Your regular gift is paused",
            name=plan.payer_name,
            amount=format_money(plan.amount_minor, plan.currency),
            frequency=plan.frequency.value,
            manage_url=manage_url(plan),
        )
    else:
        queue_mail(
            plan.donor.email,
            "donations/plan_resumed",
            subject="Your regular gift is running again",
            name=plan.payer_name,
            amount=format_money(plan.amount_minor, plan.currency),
            frequency=plan.frequency.value,
            manage_url=manage_url(plan),
        )


def cancel_plan(plan: RecurringPlan, actor: User | None, *, notify: bool = True) -> None:
    """Stop the plan now. The donor's wish is recorded even if Stripe had already ended it.
    `notify=False`: the caller sends its own mail (a sponsorship that lapsed)."""
    if plan.status in (PlanStatus.CANCELLED, PlanStatus.ENDED):
        return
    # The donor's wish is written (flushed) before Stripe is asked: the write holds the plan's
    # row, so the webhook Stripe sends at once for the cancellation waits for this commit and
    # finds a plan the donor cancelled. Asked first, the webhook saw a plan "ended by Stripe"
    # and the donor got "has ended" on top of "is cancelled". The caller rolls back on error.
    plan.cancelled_at = utcnow()
    db.session.flush()
    gateway = get_gateway()
    try:
        if plan.stripe_subscription_id:
            try:
                gateway.cancel_subscription(
                    plan.stripe_subscription_id, f"plan-{plan.public_id}-cancel"
                )
            except GatewayError as error:
                _stripe_did(plan, "cancel", error)  # cancelled after all: carry on
        elif plan.stripe_checkout_session_id:
            gateway.expire_checkout(plan.stripe_checkout_session_id)
    except Exception:  # Stripe unreachable, or the checkout was paid meanwhile
        plan.cancelled_at = None  # nothing changed at Stripe: nor here
        raise
    plan.manage_version += 1  # the links already sent stop working
    plan.settle()
    record_audit(actor, "plan.cancelled", "plan", plan.id, {})
    if notify:
        queue_mail(
            plan.donor.email,
            "donations/plan_cancelled",
            subject="Your regular gift is cancelled",
            name=plan.payer_name,
            amount=format_money(plan.amount_minor, plan.currency),
            frequency=plan.frequency.value,
            donate_url=external_url("donations.donate"),
        )


def card_update_url(plan: RecurringPlan, return_url: str) -> str:
    """Stripe's billing portal link where the donor updates the plan's card."""
    if not plan.stripe_customer_id:
        raise DomainError("There is no card on file for this regular gift yet.")
    return get_gateway().billing_portal_url(plan.stripe_customer_id, return_url)
