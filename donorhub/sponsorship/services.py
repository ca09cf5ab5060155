"""Sponsorship rules: public profiles, matching, holds with a database-enforced cap, payment
through the donations plan machinery, the sponsor portal, the ledger, lifecycle and exits.

Everything a sponsor or the public sees of a child is built here from `ChildRelease` (the
release checks' output), approved text and approved, published updates: never from the
child's raw attributes. Services flush, never commit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, TypeGuard

from flask import current_app
from sqlalchemy import Text, cast, delete, func, select
from sqlalchemy.exc import IntegrityError

from donorhub.audit import record_audit
from donorhub.children import services as children
from donorhub.children.models import (
    Child,
    ChildRelease,
    ChildStatus,
    ChildText,
    ExitNotice,
    ReviewStatus,
)
from donorhub.children.release import consent_current
from donorhub.children.services import HomeNews, UpdateView
from donorhub.database import utcnow
from donorhub.donations import services as donations
from donorhub.donations.models import (
    SPONSORSHIP_DESIGNATION,
    Donation,
    Frequency,
    PlanStatus,
    RecurringPlan,
)
from donorhub.errors import DomainError, NotPermitted
from donorhub.extensions import db
from donorhub.mail.services import queue_mail
from donorhub.money import format_money
from donorhub.payments.events import (
    DisputeData,
    HandlerOutcome,
    InvoiceData,
    PaymentEvent,
    SubscriptionData,
)
from donorhub.payments.gateway import CheckoutRequest, GatewayError, get_gateway
from donorhub.sponsorship import conduct
from donorhub.sponsorship.models import (
    AWAITS_CHOICE,
    PLACE_HOLDING,
    SHOWS_CHILD,
    ConductAcceptance,
    Disclosure,
    SponsorMessage,
    Sponsorship,
    SponsorshipPlace,
    SponsorshipStatus,
    SponsorSuspension,
)
from donorhub.urls import external_url

if TYPE_CHECKING:
    from donorhub.accounts.models import User

log = logging.getLogger(__name__)

INTEREST_NAMES = {"writing_stories": "writing stories", "kho_kho": "kho kho"}
#: Generic on purpose (R7): the only product name Stripe and bank statements ever see.
PRODUCT_NAME = "Monthly sponsorship"
#: The exact neutral words of an exit (R23).
MOVED_ON_WORDS = "has moved on from this part of our programme"
NEWS_MAIL_SUBJECT = "We have news about your sponsorship"
CHOICES = ("new_match", "general_fund", "stop")
SUSPENSION_REASONS = ("concern_raised", "conduct_breach", "vetting_review", "other")

_S = SponsorshipStatus


# Errors ------------------------------------------------------------------------------------


class ChildTaken(DomainError):
    """Every place of this child was taken a moment ago."""


class ChildUnavailable(DomainError):
    """No listed child with a free place has this token."""


class NotEligible(DomainError):
    """The account may not start a sponsorship yet; `reason` says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# Public profiles ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileCard:
    """Everything a sponsor or the public may see of one child. Nothing else exists for them.

    `token` is the public profile token; the portal builds cards with token "" (a sponsor
    must not be able to link their child to a public card). `about`, the approved free text,
    is for the child's sponsors only: public cards never carry it (it is unique to one
    child, so no crowd could hide her behind it). `sponsored`: a public card that offers no
    sponsorship until the next publication."""

    token: str
    alias: str
    illustration: int
    age_text: str | None
    gender_text: str | None
    region_text: str | None
    stage_text: str | None
    joined_text: str | None
    interests: tuple[str, ...]
    about: str | None
    sponsored: bool = False

    @property
    def summary(self) -> str:
        who = self.gender_text or "child"
        parts = [f"{self.alias} is a {who}"]
        if self.age_text:
            parts.append(f"aged {self.age_text}")
        if self.stage_text:
            parts.append(self.stage_text)
        parts.append(f"at a safe home in {self.region_text or 'India'}")
        return " ".join(parts) + "."

    @property
    def interests_text(self) -> str | None:
        if not self.interests:
            return None
        names = [interest_name(i) for i in self.interests]
        if len(names) == 1:
            return f"Enjoys {names[0]}."
        return f"Enjoys {', '.join(names[:-1])} and {names[-1]}."

    def shown_fields(self) -> dict:
        """The facts on the card, for the disclosure ledger (the token is not a fact)."""
        return {
            "alias": self.alias,
            "illustration": self.illustration,
            "age": self.age_text,
            "gender": self.gender_text,
            "region": self.region_text,
            "stage": self.stage_text,
            "joined": self.joined_text,
            "interests": list(self.interests),
            "about": self.about,
        }


def interest_name(code: str) -> str:
    return INTEREST_NAMES.get(code, code.replace("_", " "))


def _card(
    child: Child, released: ChildRelease, about: ChildText | None, *, token: str | None = None
) -> ProfileCard:
    approved_about = (
        about.approved if about is not None and about.status == ReviewStatus.APPROVED else None
    )
    return ProfileCard(
        token=child.public_token if token is None else token,
        alias=child.alias,
        illustration=child.illustration,
        age_text=released.age_text,
        gender_text=released.gender_text,
        region_text=released.region_text,
        stage_text=released.stage_text,
        joined_text=released.joined_text,
        interests=tuple(released.interests),
        about=approved_about,
    )


def _places_taken():
    return (
        select(func.count(SponsorshipPlace.id))
        .where(SponsorshipPlace.child_id == Child.id)
        .scalar_subquery()
    )


def _public_card(child: Child, released: ChildRelease) -> ProfileCard:
    """A card as the public sees it: the published release, never the about text, and
    "sponsored" as it was at the publication (whatever happened since)."""
    return replace(_card(child, released, None), sponsored=not released.shown_open)


def _shown_query():
    """Every card of the last publication. A child who left since stays until the next
    one, exactly as published: her leaving must not show before it."""
    return (
        select(Child, ChildRelease)
        .join(ChildRelease, ChildRelease.child_id == Child.id)
        .where(ChildRelease.is_listed.is_(True))
    )


def fully_sponsored_child_ids() -> set[int]:
    """Children whose every place a sponsorship has taken (a hold in progress does not
    count: it may run out, and her card would read "sponsored" for a week)."""
    cap = current_app.config["SPONSORS_PER_CHILD"]
    rows = db.session.execute(
        select(SponsorshipPlace.child_id, func.count(SponsorshipPlace.id))
        .join(Sponsorship, Sponsorship.id == SponsorshipPlace.sponsorship_id)
        .where(Sponsorship.status != _S.PENDING)
        .group_by(SponsorshipPlace.child_id)
    ).all()
    return {child_id for child_id, taken in rows if taken >= cap}


@dataclass(frozen=True)
class Filters:
    """A visitor's choices. Every value is compared with RELEASED text only: filtering on a
    raw attribute would let someone learn an unreleased fact from which cards appear."""

    age: str | None = None
    region: str | None = None
    stage: str | None = None
    interest: str | None = None

    def matches(self, card: ProfileCard) -> bool:
        return (
            (not self.age or card.age_text == self.age)
            and (not self.region or card.region_text == self.region)
            and (not self.stage or card.stage_text == self.stage)
            and (not self.interest or self.interest in card.interests)
        )

    @property
    def any(self) -> bool:
        return bool(self.age or self.region or self.stage or self.interest)

    def where(self) -> list:
        """The same choices as SQL conditions on the release."""
        conditions = []
        if self.age:
            conditions.append(ChildRelease.age_text == self.age)
        if self.region:
            conditions.append(ChildRelease.region_text == self.region)
        if self.stage:
            conditions.append(ChildRelease.stage_text == self.stage)
        if self.interest:
            # The JSON list as stored ('["drawing", "kho_kho"]'): the quoted code is one item.
            code = self.interest.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(cast(ChildRelease.interests, Text).like(f'%"{code}"%', escape="\\"))
        return conditions


#: Cards on one page of /sponsor.
PAGE_SIZE = 24
#: No listing has more pages than this; a larger number is read as the first page.
MAX_PAGE = 10_000


@dataclass(frozen=True)
class ListingPage:
    """One page of the listing: its cards in today's order, and whether there is a page
    before and after it. `any_listed`: some card is listed at all (with or without filters)."""

    cards: list[ProfileCard]
    number: int
    has_previous: bool
    has_next: bool
    any_listed: bool


def _listing_state(day: date) -> tuple[bool, bool]:
    """(any card listed, every listed card ordered for `day`), from the indexes alone."""
    listed = ChildRelease.is_listed.is_(True)
    oldest = select(func.min(ChildRelease.list_day)).where(listed).scalar_subquery()
    newest = select(func.max(ChildRelease.list_day)).where(listed).scalar_subquery()
    unordered = select(ChildRelease.id).where(listed, ChildRelease.list_order.is_(None)).exists()
    first, last, any_unordered = db.session.execute(select(oldest, newest, unordered)).one()
    return (first is not None or any_unordered, first == last == day and not any_unordered)


def listed_page(
    filters: Filters | None = None, number: int = 1, now: datetime | None = None
) -> ListingPage:
    """Page `number` of the cards of the last publication that fit `filters`, open and
    "sponsored", in today's order. Ordered and cut in SQL by the day's stored keys; if the
    day's keys are not stored yet (between midnight and the `shuffle_listing` job), the
    same keys are computed here, so a page shows the same cards all day either way."""
    filters = filters or Filters()
    day = (now or utcnow()).date()
    any_listed, ordered = _listing_state(day)
    skip = (number - 1) * PAGE_SIZE
    query = _shown_query().where(*filters.where())
    if ordered:
        # The page's releases first (narrow rows, by the index), then their children.
        page = (
            select(ChildRelease.id)
            .where(ChildRelease.is_listed.is_(True), *filters.where())
            .order_by(ChildRelease.list_order)
            .offset(skip)
            .limit(PAGE_SIZE + 1)
            .subquery()
        )
        rows = db.session.execute(
            _shown_query()
            .join(page, page.c.id == ChildRelease.id)
            .order_by(ChildRelease.list_order)
        ).all()
    else:
        rows = sorted(
            db.session.execute(query).all(),
            key=lambda row: children.listing_order_key(row[0].public_token, day),
        )[skip : skip + PAGE_SIZE + 1]
    return ListingPage(
        cards=[_public_card(child, released) for child, released in rows[:PAGE_SIZE]],
        number=number,
        has_previous=number > 1,
        has_next=len(rows) > PAGE_SIZE,
        any_listed=any_listed,
    )


def listed_profiles(
    filters: Filters | None = None, now: datetime | None = None
) -> list[ProfileCard]:
    """Every card of the last publication that fits `filters`, open and "sponsored", in
    today's order: all the pages of the listing one after the other."""
    day = (now or utcnow()).date()
    rows = sorted(
        db.session.execute(_shown_query().where(*(filters or Filters()).where())).all(),
        key=lambda row: children.listing_order_key(row[0].public_token, day),
    )
    return [_public_card(child, released) for child, released in rows]


def filter_options() -> dict[str, list[str]]:
    """The values a visitor may filter on: every text a released card can show (fixed
    vocabularies), not the values of the cards listed now."""
    return children.released_vocabulary()


def profile_by_token(token: str) -> ProfileCard | None:
    """A public profile: any card of the last publication, open or "sponsored"."""
    if not token or len(token) > 64:
        return None
    row = db.session.execute(_shown_query().where(Child.public_token == token)).first()
    return _public_card(*row) if row is not None else None


#: "Match me" prefers children who have been on the listing at least this long.
LONG_WAIT = children.LONG_WAIT
#: "Match me" draws this many random places of a band at once (one statement).
MATCH_DRAWS = 32


def match(filters: Filters) -> ProfileCard | None:
    """ "Match me": a random open card among those that fit the preferences, from the
    children listed for more than three months if any fit, else from the others.

    Only what the public already saw decides: the open state and the waiting band are as of
    the last publication, and waiting counts from the first publication that listed the
    child. A finer order (days waited, arrival) pressed over and over would reveal what
    the cards hide; a choice among live states would reveal a sponsorship or an exit.

    Each publication gives the open cards of each band a random place 0..n-1
    (`ChildRelease.match_rank`). MATCH_DRAWS places are drawn at once, uniformly and
    independently, and the first drawn whose card fits is chosen: uniform among the cards
    that fit, at a cost that does not grow with the number of children. Only when no draw
    fits (a narrow choice) are the fitting cards counted and one taken at a random position.
    """
    fits = [ChildRelease.is_listed.is_(True), ChildRelease.shown_open.is_(True), *filters.where()]

    def places(long_wait: bool):
        return (
            select(func.max(ChildRelease.match_rank))
            .where(ChildRelease.long_wait.is_(long_wait), ChildRelease.match_rank.is_not(None))
            .scalar_subquery()
        )

    highest = db.session.execute(select(places(True), places(False))).one()
    for long_wait, top in zip((True, False), highest, strict=True):
        if top is None:
            continue
        band = [*fits, ChildRelease.long_wait.is_(long_wait)]
        draws = [secrets.randbelow(top + 1) for _ in range(MATCH_DRAWS)]
        found = {
            released.match_rank: (child, released)
            for child, released in db.session.execute(
                _shown_query().where(*band, ChildRelease.match_rank.in_(set(draws)))
            ).all()
        }
        for place in draws:
            if place in found:
                return _public_card(*found[place])
        band.append(ChildRelease.match_rank.is_not(None))
        size = db.session.scalar(select(func.count(ChildRelease.id)).where(*band))
        if size:
            picked = (
                select(ChildRelease.id)
                .where(*band)
                .order_by(ChildRelease.match_rank)
                .offset(secrets.randbelow(size))
                .limit(1)
                .scalar_subquery()
            )
            row = db.session.execute(_shown_query().where(ChildRelease.id == picked)).first()
            if row is not None:
                return _public_card(*row)
    return None


# Eligibility: verified e-mail, code of conduct, suspension ---------------------------------


def is_suspended(user_id: int) -> bool:
    return (
        db.session.scalar(
            select(SponsorSuspension.id)
            .where(SponsorSuspension.user_id == user_id, SponsorSuspension.lifted_at.is_(None))
            .limit(1)
        )
        is not None
    )


def accepted_current_conduct(user_id: int) -> bool:
    return (
        db.session.scalar(
            select(ConductAcceptance.id)
            .where(
                ConductAcceptance.user_id == user_id,
                ConductAcceptance.version == conduct.CURRENT_VERSION,
            )
            .limit(1)
        )
        is not None
    )


def accept_conduct(user, version: str, now: datetime | None = None) -> ConductAcceptance:
    """Record that `user` accepted `version` (only the current version can be accepted)."""
    if version != conduct.CURRENT_VERSION:
        raise DomainError("The code of conduct has changed. Please read the new version.")
    row = db.session.scalar(
        select(ConductAcceptance).where(
            ConductAcceptance.user_id == user.id, ConductAcceptance.version == version
        )
    )
    if row is not None:
        return row
    row = ConductAcceptance(user_id=user.id, version=version, accepted_at=now or utcnow())
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:  # the same person, accepting twice at the same moment
        row = db.session.scalar(
            select(ConductAcceptance).where(
                ConductAcceptance.user_id == user.id, ConductAcceptance.version == version
            )
        )
        if row is None:  # the other request's row, whose insert made this one fail
            raise RuntimeError("conduct acceptance vanished") from None
    return row


def may_see_children(user) -> bool:
    """Child content (even an alias) is shown only to sponsors who are not suspended and
    who accepted the code of conduct in force."""
    return (
        user is not None
        and user.is_authenticated
        and not is_suspended(user.id)
        and accepted_current_conduct(user.id)
    )


def check_can_sponsor(user) -> None:
    if user is None or not user.is_authenticated:
        raise NotEligible("sign_in", "Please sign in first.")
    if not user.is_verified:
        raise NotEligible(
            "unverified",
            "Please confirm your e-mail address first: we sent "
            "you a link when you created your account.",
        )
    if is_suspended(user.id):
        raise NotEligible(
            "suspended", "Your account cannot start a sponsorship at the moment. Please contact us."
        )
    if not accepted_current_conduct(user.id):
        raise NotEligible("conduct", "Please read and accept our code of conduct first.")


# Holds and places --------------------------------------------------------------------------


def _claim_place(child_id: int, sponsorship: Sponsorship) -> bool:
    """INSERT a place row for the first free place number. The unique constraint on
    (child_id, place_number) is the guard: a concurrent claim of the same place fails here
    (PostgreSQL makes the second insert wait for the first transaction, then refuses it)."""
    cap = current_app.config["SPONSORS_PER_CHILD"]
    taken = set(
        db.session.scalars(
            select(SponsorshipPlace.place_number).where(SponsorshipPlace.child_id == child_id)
        )
    )
    for number in range(1, cap + 1):
        if number in taken:
            continue
        try:
            with db.session.begin_nested():
                db.session.add(
                    SponsorshipPlace(
                        child_id=child_id, place_number=number, sponsorship_id=sponsorship.id
                    )
                )
        except IntegrityError:
            continue
        return True
    return False


def _free_place(sponsorship: Sponsorship) -> None:
    db.session.execute(
        delete(SponsorshipPlace).where(SponsorshipPlace.sponsorship_id == sponsorship.id)
    )


def _child_open(child: Child | None) -> TypeGuard[Child]:
    # Her card stays until the next publication, but a withdrawal of profile consent closes
    # her for sponsors at the import that brings it.
    return (
        child is not None
        and child.status == ChildStatus.ACTIVE
        and child.consent_profile
        and child.release is not None
        and child.release.is_listed
    )


def hold_child(user, token: str, currency: str, now: datetime | None = None) -> Sponsorship:
    """Hold a place of the child with public `token` for SPONSORSHIP_HOLD_MINUTES.

    :raises NotEligible: no verified e-mail, no current code-of-conduct acceptance, suspended.
    :raises ChildUnavailable: no listed child with a free place has that token.
    :raises ChildTaken: someone else took the last place a moment ago (roll back).
    :raises donations.CheckoutAlreadyPaid: the old hold (another currency) was paid meanwhile.
    :raises HoldRefused: the account let too many holds run out lately, or another choose of
        the same account won a race a moment ago.

    An account holds at most one child at a time: choosing another child ends the hold on
    the first, as a sponsor who changed their mind expects. A unique index on open holds per
    account enforces it under any timing. The old hold is ended under lock_sponsorship in
    this transaction, and its Checkout Session is expired at Stripe only once the new hold
    has its place: a new hold that fails (child taken, refused, Stripe unreachable) rolls
    back and leaves the old hold exactly as it was, payable and not timed out.
    """
    check_can_sponsor(user)
    now = now or utcnow()
    _check_hold_allowance(user, now)
    amounts = current_app.config["SPONSORSHIP_MONTHLY_AMOUNTS"]
    if currency not in amounts:
        raise DomainError("Choose pounds, dollars, euros or rupees.")
    if not token or len(token) > 64:
        raise ChildUnavailable("That child is no longer waiting for a sponsor.")
    child = db.session.scalar(
        select(Child)
        .join(ChildRelease)
        .where(Child.public_token == token, ChildRelease.is_listed.is_(True))
    )
    if child is None or child.release is None:
        raise ChildUnavailable("That child is no longer waiting for a sponsor.")
    # A card shown as sponsored, a child who left or whose consent ended since the
    # publication: refused below exactly as a child whose last place was just taken, at the
    # same point and with the same words, so no one can tell these apart by trying.
    may_take_place = (
        child.release.shown_open
        and child.status == ChildStatus.ACTIVE
        and child.consent_profile
        and consent_current(child.consent_expires, now.date())
    )
    mine = db.session.scalar(
        select(Sponsorship).where(
            Sponsorship.user_id == user.id,
            Sponsorship.child_id == child.id,
            Sponsorship.status.in_(PLACE_HOLDING),
        )
    )
    if mine is not None:
        if mine.status is _S.PENDING and mine.currency == currency:
            return mine  # back again within the hold: carry on with the same place
        if mine.status is not _S.PENDING:
            raise DomainError("You already sponsor this child.")
    # One hold per account: the earlier choice (or this child's hold in another currency)
    # gives its place back, in this transaction only; its session is expired below.
    replaced = []
    for hold_id in db.session.scalars(
        select(Sponsorship.id).where(
            Sponsorship.user_id == user.id, Sponsorship.status == _S.PENDING
        )
    ).all():
        old = lock_sponsorship(Sponsorship.id == hold_id)
        if old is not None and old.status is _S.PENDING:
            _end_hold(old, now)  # ended by the sponsor's choice: not a hold that timed out
            replaced.append(old)
    donor = donations.donor_for_user(user) or donations.find_or_create_donor(
        user.email, user.full_name
    )
    plan = RecurringPlan(
        donor=donor,
        amount_minor=amounts[currency],
        currency=currency,
        frequency=Frequency.MONTHLY,
        designation=SPONSORSHIP_DESIGNATION,
        status=PlanStatus.PENDING,
    )
    hold = timedelta(minutes=current_app.config["SPONSORSHIP_HOLD_MINUTES"])
    sponsorship = Sponsorship(
        user_id=user.id,
        child_id=child.id,
        plan=plan,
        amount_minor=amounts[currency],
        currency=currency,
        status=_S.PENDING,
        hold_expires_at=now + hold,
    )
    db.session.add_all([plan, sponsorship])
    try:
        db.session.flush()
    except IntegrityError:
        # Another choose of this account (a second tab, a double click) holds a child now.
        raise HoldRefused(
            "You are already choosing a child in another window. Finish "
            "there, or choose again in a moment."
        ) from None
    if not may_take_place or not _claim_place(child.id, sponsorship):
        raise ChildTaken("Someone else has just chosen this child.")
    for old in replaced:
        # The new hold is secured: now the old checkout must not stay payable. If Stripe
        # cannot be asked, or the sponsor paid it meanwhile, all of this rolls back.
        try:
            _close_previous_session(old)
        except GatewayError as error:
            raise DomainError(
                "We could not reach our payment provider. Please try again in a moment."
            ) from error
    return sponsorship


class HoldRefused(DomainError):
    """This account may not hold a child right now; the message says why and until when."""


def _check_hold_allowance(user, now: datetime) -> None:
    """An account that let SPONSORSHIP_HOLD_TIMEOUTS_PER_DAY holds run out in the last 24
    hours waits until the oldest of them is a day old: holding children without paying
    hides them from every other sponsor."""
    allowed = current_app.config["SPONSORSHIP_HOLD_TIMEOUTS_PER_DAY"]
    recent = db.session.scalars(
        select(Sponsorship.hold_timed_out_at)
        .where(
            Sponsorship.user_id == user.id,
            Sponsorship.hold_timed_out_at > now - timedelta(hours=24),
        )
        .order_by(Sponsorship.hold_timed_out_at.desc())
        .limit(allowed)
    ).all()
    if len(recent) >= allowed:
        oldest = recent[-1]
        if oldest is None:
            raise RuntimeError("hold time-out without its time")  # selected by its time
        until = oldest + timedelta(hours=24)
        raise HoldRefused(
            f"You have let {allowed} holds run out in the last day without completing "
            f"them, so other sponsors get a turn. You can choose a child again after "
            f"{until:%H:%M} UTC on {until:%-d %B}."
        )


def open_checkout(sponsorship: Sponsorship, now: datetime | None = None) -> str:
    """Create (or fetch again, by idempotency key) the subscription's Checkout Session.

    Stripe is told: "Monthly sponsorship", the amount, and {"sponsorship": <opaque id>}.
    Nothing about the child. The caller commits the hold BEFORE calling this, so a slow
    Stripe never keeps a place row locked against other sponsors.
    """
    now = now or utcnow()
    if (
        sponsorship.status is not _S.PENDING
        or sponsorship.hold_expires_at is None
        or sponsorship.hold_expires_at <= now
    ):
        raise DomainError("This hold has ended. Please choose again.")
    if not _child_open(sponsorship.child):
        raise DomainError("This child is no longer waiting for a sponsor.")
    plan = sponsorship.plan
    # Stripe wants expires_at at least 30 minutes ahead, and a repeated request with the
    # same key must be identical: a session too close to its end needs a new attempt.
    if sponsorship.checkout_expires_at is None or sponsorship.checkout_expires_at < now + timedelta(
        minutes=31
    ):
        # The previous session must not stay payable beside the new one (two
        # subscriptions): expire it first. Paid meanwhile -> CheckoutAlreadyPaid, nothing
        # opened; Stripe unreachable -> GatewayError, nothing opened.
        _close_previous_session(sponsorship)
        if sponsorship.checkout_expires_at is not None:
            sponsorship.checkout_attempt += 1
        minutes = max(current_app.config["CHECKOUT_EXPIRY_MINUTES"], 35)
        sponsorship.checkout_expires_at = (now + timedelta(minutes=minutes)).replace(microsecond=0)
    if plan is not None:
        # The plan's sessions are recorded with the sponsorship's attempt number, so the
        # donations handlers know an expiry of a session we replaced is not an end.
        plan.checkout_attempt = sponsorship.checkout_attempt
    request = CheckoutRequest(
        idempotency_key=_checkout_key(sponsorship),
        mode="subscription",
        amount_minor=sponsorship.amount_minor,
        currency=sponsorship.currency,
        product_name=PRODUCT_NAME,
        success_url=external_url("sponsorship.portal", welcome="1"),
        cancel_url=external_url("sponsorship.portal"),
        expires_at=int(sponsorship.checkout_expires_at.timestamp()),
        customer_email=sponsorship.user.email,
        metadata={"sponsorship": sponsorship.public_id},
        interval="month",
    )
    try:
        session = get_gateway().create_checkout(request)
    except GatewayError as error:
        if error.key_spent:  # a refusal or a saved 5xx: the next try needs a new key
            sponsorship.checkout_attempt += 1
            sponsorship.checkout_expires_at = None
            if plan is not None:
                plan.checkout_attempt = sponsorship.checkout_attempt
        log.warning("sponsorship checkout not created", extra={"kind": error.kind})
        raise
    sponsorship.stripe_checkout_session_id = session.id
    if plan is not None:
        plan.stripe_checkout_session_id = session.id
        donations.remember_session(plan, session.id)  # every session stays findable
    db.session.flush()
    return session.url


def _checkout_key(sponsorship: Sponsorship) -> str:
    return f"sponsorship-{sponsorship.public_id}-checkout-{sponsorship.checkout_attempt}"


def _close_previous_session(sponsorship: Sponsorship) -> None:
    """Expire the sponsorship's stored session at Stripe (donations' machinery) before a
    new attempt or a new hold replaces it.

    :raises donations.CheckoutAlreadyPaid: the sponsor paid it meanwhile.
    :raises GatewayError: Stripe could not be asked.
    """
    donations.close_session(
        sponsorship.stripe_checkout_session_id, f"{_checkout_key(sponsorship)}-expire"
    )


def _end_hold(sponsorship: Sponsorship, now: datetime) -> None:
    """The hold is over unpaid: free the place in this transaction."""
    sponsorship.move(_S.EXPIRED)
    sponsorship.hold_expires_at = None
    sponsorship.ended_at = now
    _free_place(sponsorship)


def expired_hold_ids(now: datetime) -> list[int]:
    """Pending sponsorships whose hold is past its time, or whose child is no longer listed
    (the job releases each with `release_hold`)."""
    return list(
        db.session.scalars(
            select(Sponsorship.id)
            .outerjoin(Child, Child.id == Sponsorship.child_id)
            .outerjoin(ChildRelease, ChildRelease.child_id == Child.id)
            .where(Sponsorship.status == _S.PENDING)
            .where(
                (Sponsorship.hold_expires_at <= now)
                | (Child.status != ChildStatus.ACTIVE)
                | (Child.consent_profile.is_not(True))
                | (ChildRelease.is_listed.is_not(True))
            )
        ).all()
    )


def release_hold(sponsorship_id: int, now: datetime) -> bool:
    """A hold past its time, or of a child no longer listed, gives its place back; True when
    released (False: no longer pending). One unit of work each (the job commits).

    The Checkout Session is expired at Stripe first, so it cannot be paid afterwards; if that
    fails, or the sponsor paid at the same moment, the payment webhook finds the hold gone
    and re-places or asks the sponsor to choose (status unplaced)."""
    row = db.session.get_one(Sponsorship, sponsorship_id)
    session_id = row.stripe_checkout_session_id
    if session_id:
        try:
            get_gateway().expire_checkout(session_id)
        except GatewayError as error:
            log.warning("could not expire a sponsorship checkout", extra={"kind": error.kind})
    sponsorship = _lock_again(row)
    if sponsorship.status is not _S.PENDING:
        return False
    if sponsorship.hold_expires_at is not None and sponsorship.hold_expires_at <= now:
        sponsorship.hold_timed_out_at = now  # ran out unpaid (not: the child left)
    _end_hold(sponsorship, now)
    return True


# Stripe's events ---------------------------------------------------------------------------
# The sponsorship owns a RecurringPlan (designation "sponsorship"), and the donations
# handlers record the money (plan status, instalments, receipts, failure mail). Stripe's
# objects carry {"sponsorship": <public id>} only, so events with that key come here first:
# we link the plan to the subscription, let the donations handler apply the money, then
# derive the sponsorship's status from the plan's. Like the donations handlers this is
# idempotent and order-independent: the status is derived from facts that only move one way.


def sponsorship_first(
    donations_handler: Callable[[PaymentEvent], HandlerOutcome], event: PaymentEvent
) -> HandlerOutcome:
    """Apply an event: one about a sponsorship reaches the sponsorship first (which then
    hands the money to the donations handler); any other goes to the donations handler."""
    refs = getattr(event.subject, "refs", None)
    if refs is None or not refs.sponsorship:
        return donations_handler(event)
    return _apply(event, donations_handler)


def _for_plan(event: PaymentEvent, plan: RecurringPlan) -> PaymentEvent:
    """The event as the donations handlers expect a plan's: refs naming the plan, so they
    find it by our reference (not by a subscription id that may be a second one)."""
    # route() sends only events whose object carries our refs.
    if event.subject is None or isinstance(event.subject, DisputeData):
        raise RuntimeError("sponsorship event without refs")
    refs = replace(event.subject.refs, plan=plan.public_id)
    return replace(event, subject=replace(event.subject, refs=refs))


def lock_sponsorship(where) -> Sponsorship | None:
    """Lock a sponsorship, then its plan, re-read from the database: THE lock order of the
    money rows, everywhere (docs/donations.md, "Lock order"): sponsorship, then its plan,
    then the plan's gifts, then the receipt counter. Every path that writes a sponsorship
    and its plan (the sponsor's cancel and choice, the lapse and exit jobs, the webhooks)
    takes its locks through here, so two of them never wait for each other in a circle."""
    sponsorship = db.session.scalar(
        select(Sponsorship).where(where).with_for_update().execution_options(populate_existing=True)
    )
    if sponsorship is not None and sponsorship.plan_id is not None:
        db.session.scalar(
            select(RecurringPlan)
            .where(RecurringPlan.id == sponsorship.plan_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    return sponsorship


def _lock_again(sponsorship: Sponsorship) -> Sponsorship:
    """lock_sponsorship for a row this transaction has already read."""
    locked = lock_sponsorship(Sponsorship.id == sponsorship.id)
    if locked is None:
        raise RuntimeError("sponsorship row vanished")  # sponsorship rows are never deleted
    return locked


def _price_mismatch(sponsorship: Sponsorship, subject) -> str | None:
    """What Stripe reports that differs from the sponsorship's fixed monthly price."""
    if isinstance(subject, SubscriptionData) and subject.amount is not None:
        found = (subject.amount, subject.currency, subject.interval, subject.interval_count or 1)
        fixed = (sponsorship.amount_minor, sponsorship.currency, "month", 1)
        if found != fixed:
            return (
                f"Stripe's subscription is {subject.amount} {subject.currency} every "
                f"{subject.interval_count or 1} {subject.interval}; the sponsorship is "
                f"{sponsorship.amount_minor} {sponsorship.currency} a month"
            )
    if (
        isinstance(subject, InvoiceData)
        and subject.amount_paid
        and (subject.amount_paid, subject.currency)
        != (sponsorship.amount_minor, sponsorship.currency)
    ):
        return (
            f"Stripe charged {subject.amount_paid} {subject.currency}; the sponsorship "
            f"is {sponsorship.amount_minor} {sponsorship.currency} a month"
        )
    return None


def _apply(
    event: PaymentEvent, donations_handler: Callable[[PaymentEvent], HandlerOutcome]
) -> HandlerOutcome:
    """The donations handler records the money exactly as for a regular gift: every session
    of the plan maps to it, an expiry is a fact that a payment overrides (and the expiry of a
    session we replaced is no fact at all), a second subscription is never linked and each
    invoice it charges becomes a gift flagged for staff to refund. Then the sponsorship's
    status follows the plan's (`sync_status_with_plan`), re-placing or unplacing a
    sponsorship paid after its hold ended."""
    # sponsorship_first sends only events whose object carries our refs.
    if event.subject is None or isinstance(event.subject, DisputeData):
        raise RuntimeError("sponsorship event without refs")
    sponsorship = lock_sponsorship(Sponsorship.public_id == event.subject.refs.sponsorship)
    if sponsorship is None or sponsorship.plan is None:
        return HandlerOutcome.IGNORED
    plan = sponsorship.plan
    mismatch = (
        _price_mismatch(sponsorship, event.subject)
        if plan.designation == SPONSORSHIP_DESIGNATION
        else None
    )
    if mismatch:
        # The fixed price is never given up silently: staff look at it, and a subscription
        # at another price is not adopted as the plan's amount or frequency.
        donations.flag_plan(plan, mismatch, event.type)
        if isinstance(event.subject, SubscriptionData):
            event = replace(event, subject=replace(event.subject, amount=None, interval=None))
    outcome = donations_handler(_for_plan(event, plan))
    sync_status_with_plan(sponsorship, event.created)
    if mismatch and outcome is HandlerOutcome.APPLIED:
        return HandlerOutcome.FLAGGED
    return outcome


def _plan_started(plan: RecurringPlan) -> bool:
    return plan.checkout_completed or plan.latest_invoice_state is not None


def sync_status_with_plan(
    sponsorship: Sponsorship, now: datetime | None = None
) -> SponsorshipStatus:
    """Derive the sponsorship's status from its plan's (which the webhooks keep current)."""
    now = now or utcnow()
    plan = sponsorship.plan
    current = sponsorship.status
    if plan is None or current in (_S.MOVED_ON, _S.UNPLACED, _S.ENDED, _S.LAPSED, _S.CANCELLED):
        return current
    if sponsorship.collection_stopped_at is not None:
        # Paused by the exit notice's first step: the pause is ours, not a failed payment,
        # and the notice itself moves it on.
        return current
    status = plan.status
    if status is PlanStatus.PENDING:
        return current
    if status is PlanStatus.CANCELLED:
        target = _S.CANCELLED if current is not _S.EXPIRED else _S.EXPIRED
    elif status is PlanStatus.ENDED:
        # Stripe ended it. Paid at least once: lapsed, whatever order the events came in
        # (an end heard before the payment first made it look like an unpaid hold).
        if _plan_started(plan):
            target = _S.LAPSED
        else:
            target = _S.EXPIRED if current is _S.PENDING else current
    elif status is PlanStatus.ACTIVE:
        target = _S.ACTIVE
    else:  # past due, or paused from the donations pages: the grace period runs
        target = _S.PAST_DUE
    if current is _S.EXPIRED and target in (_S.ACTIVE, _S.PAST_DUE):
        # Paid after the hold had gone: take a place again if the child is still open.
        if not (_child_open(sponsorship.child) and _claim_place(sponsorship.child.id, sponsorship)):
            sponsorship.move(_S.UNPLACED)
            sponsorship.notified_at = now
            _message(sponsorship, "unplaced")
            _news_mail(sponsorship)
            return sponsorship.status
    if target is current:
        if target is _S.ACTIVE:
            sponsorship.past_due_since = None
        return current
    sponsorship.move(target)
    if target in (_S.ACTIVE, _S.PAST_DUE):
        sponsorship.hold_expires_at = None
        sponsorship.started_at = sponsorship.started_at or now
        sponsorship.past_due_since = (
            (sponsorship.past_due_since or now) if target is _S.PAST_DUE else None
        )
    elif target is _S.CANCELLED:
        sponsorship.cancelled_at = sponsorship.cancelled_at or now
        _free_place(sponsorship)
    elif target is _S.LAPSED:
        sponsorship.lapsed_at = now
        sponsorship.ended_at = None  # not an unpaid hold after all
        _free_place(sponsorship)
        _message(sponsorship, "lapsed")
    elif target is _S.EXPIRED:
        _end_hold(sponsorship, now)
    return sponsorship.status


# Mail and portal messages (no child content, ever) ----------------------------------------


def _message(sponsorship: Sponsorship, kind: str) -> None:
    db.session.add(
        SponsorMessage(user_id=sponsorship.user_id, sponsorship_id=sponsorship.id, kind=kind)
    )


def _news_mail(sponsorship: Sponsorship, *, refunded: bool = False) -> None:
    """The only mail about a child's sponsorship news: it says nothing but "sign in" (and,
    for an exit, that the payments since then were refunded)."""
    queue_mail(
        sponsorship.user.email,
        "sponsorship/news",
        subject=NEWS_MAIL_SUBJECT,
        name=sponsorship.user.full_name,
        portal_url=external_url("sponsorship.portal"),
        refunded=refunded,
    )


# Sponsor actions ---------------------------------------------------------------------------


def own_sponsorship(user, token: str) -> Sponsorship | None:
    """The user's own sponsorship with this portal token, or None (the view answers 404)."""
    if user is None or not user.is_authenticated or not token or len(token) > 64:
        return None
    return db.session.scalar(
        select(Sponsorship).where(
            Sponsorship.portal_token == token,
            Sponsorship.user_id == user.id,
            Sponsorship.status != _S.EXPIRED,
        )
    )


def cancel(user, sponsorship: Sponsorship, now: datetime | None = None) -> None:
    """The sponsor stops: Stripe stops collecting, the place is freed. Locks in the one
    order (sponsorship, then plan) and decides under the lock, so a double-click cancels
    once and the webhook Stripe sends for it waits for this commit."""
    if sponsorship.user_id != user.id:
        raise NotPermitted("That sponsorship is not yours.")
    sponsorship = _lock_again(sponsorship)
    if sponsorship.status is _S.CANCELLED:
        return  # the same wish, already carried out (a second click)
    if sponsorship.status not in (_S.ACTIVE, _S.PAST_DUE, _S.PENDING):
        raise DomainError("This sponsorship is not running.")
    now = now or utcnow()
    if sponsorship.plan is not None:
        donations.cancel_plan(sponsorship.plan, user)
    sponsorship.move(_S.CANCELLED)
    sponsorship.cancelled_at = now
    sponsorship.hold_expires_at = None
    _free_place(sponsorship)


def card_update_url(sponsorship: Sponsorship, return_url: str) -> str:
    if sponsorship.plan is None:
        raise DomainError("There is no card on file for this sponsorship yet.")
    return donations.card_update_url(sponsorship.plan, return_url)


def choose_after_exit(
    user, sponsorship: Sponsorship, choice: str, now: datetime | None = None
) -> None:
    """After the neutral notice: a new match, the safe homes' general fund, or stop.

    Nothing more is charged for the old sponsorship unless the sponsor chooses the general
    fund, which resumes the same monthly gift as a regular gift to the general fund."""
    if sponsorship.user_id != user.id:
        raise NotPermitted("That sponsorship is not yours.")
    sponsorship = _lock_again(sponsorship)
    if sponsorship.status not in AWAITS_CHOICE or sponsorship.notified_at is None:
        raise DomainError("There is nothing to choose for this sponsorship.")
    if choice not in CHOICES:
        raise DomainError("Choose one of the three options.")
    now = now or utcnow()
    plan = sponsorship.plan
    if choice == "general_fund":
        if plan is None or not plan.is_live or not plan.stripe_subscription_id:
            raise DomainError("Your monthly gift cannot be moved; please start a new gift.")
        plan.designation = "general"
        donations.resume_plan(plan, user)
    elif plan is not None and plan.status not in (PlanStatus.CANCELLED, PlanStatus.ENDED):
        donations.cancel_plan(plan, user)
    sponsorship.outcome = choice
    sponsorship.ended_at = now
    sponsorship.move(_S.ENDED)
    _free_place(sponsorship)


# Lifecycle jobs ----------------------------------------------------------------------------


def overdue_ids(now: datetime) -> list[int]:
    """Past-due sponsorships older than the grace period (the job lapses each with
    `lapse_sponsorship`)."""
    cutoff = now - timedelta(days=current_app.config["SPONSORSHIP_GRACE_DAYS"])
    return list(
        db.session.scalars(
            select(Sponsorship.id).where(
                Sponsorship.status == _S.PAST_DUE, Sponsorship.past_due_since <= cutoff
            )
        ).all()
    )


def lapse_sponsorship(sponsorship_id: int, now: datetime) -> bool:
    """A sponsorship past due longer than the grace period lapses: Stripe stops, the place is
    freed (the child is listed again), the sponsor gets a mail and a portal message. True
    when lapsed (False: no longer past due). One unit of work each (the job commits).

    :raises GatewayError: Stripe could not stop it; the job rolls back and tries next run.
    """
    sponsorship = lock_sponsorship(Sponsorship.id == sponsorship_id)
    if sponsorship is None or sponsorship.status is not _S.PAST_DUE:
        return False
    if sponsorship.plan is not None:
        donations.cancel_plan(sponsorship.plan, None, notify=False)
    sponsorship.move(_S.LAPSED)
    sponsorship.lapsed_at = now
    _free_place(sponsorship)
    _message(sponsorship, "lapsed")
    queue_mail(
        sponsorship.user.email,
        "sponsorship/lapsed",
        subject="Your sponsorship has ended",
        name=sponsorship.user.full_name,
        grace_days=current_app.config["SPONSORSHIP_GRACE_DAYS"],
        portal_url=external_url("sponsorship.portal"),
    )
    return True


def exited_ids(now: datetime) -> list[int]:
    """Sponsorships whose collection must stop: those still collecting for a child whose
    neutral notice is due (never sooner: until the notice, the sponsorship runs exactly as
    before the exit), and unplaced ones not stopped yet (the job stops each with
    `stop_collection_after_exit`)."""
    ids = list(
        db.session.scalars(
            select(Sponsorship.id)
            .join(ExitNotice, ExitNotice.child_id == Sponsorship.child_id)
            .where(
                ExitNotice.notify_after <= now,
                ExitNotice.sent_at.is_(None),
                Sponsorship.status.in_([_S.ACTIVE, _S.PAST_DUE]),
                Sponsorship.collection_stopped_at.is_(None),
            )
        ).all()
    )
    ids += db.session.scalars(
        select(Sponsorship.id).where(
            Sponsorship.status == _S.UNPLACED, Sponsorship.collection_stopped_at.is_(None)
        )
    ).all()
    return ids


def stop_collection_after_exit(sponsorship_id: int, now: datetime) -> bool:
    """The first step of the neutral notice (or of an unplaced payment): pause the
    sponsorship's collection at Stripe, with no mail. The status is left as it is, so the
    portal goes on showing what it showed until the notice itself (send_exit_notice) moves
    it to moved_on. True when stopped (False: stopped before). One unit of work each (the
    job commits).

    :raises GatewayError: Stripe could not pause it; the job rolls back and tries next run.
    """
    sponsorship = lock_sponsorship(Sponsorship.id == sponsorship_id)
    if sponsorship is None:
        raise RuntimeError("sponsorship row vanished")  # sponsorship rows are never deleted
    if sponsorship.collection_stopped_at is not None:
        return False
    plan = sponsorship.plan
    if plan is not None and plan.is_live and plan.stripe_subscription_id:
        donations.pause_plan(plan, None, notify=False)
    sponsorship.collection_stopped_at = now
    return True


def _exit_refund_token(gift_public_id: str) -> str:
    """The request-token prefix of the automatic refunds of one gift after an exit."""
    return f"exit-{gift_public_id}"


def _post_exit_gifts(
    now: datetime, child_id: int | None = None, sponsorship_id: int | None = None
) -> list[tuple[int, str]]:
    """(id, public id) of every sponsorship payment taken after the child's exit, for
    exits whose notice is due. Stripe dates a payment to the whole second, so a payment in
    the second of the exit counts as after it (refunding one too many, never one too few)."""
    query = (
        select(Donation.id, Donation.public_id, Donation.paid_at, Child.exited_at)
        .join(Sponsorship, Sponsorship.plan_id == Donation.plan_id)
        .join(Child, Child.id == Sponsorship.child_id)
        .join(ExitNotice, ExitNotice.child_id == Child.id)
        .where(
            ExitNotice.notify_after <= now,
            Child.exited_at.is_not(None),
            Donation.paid_at.is_not(None),
            Donation.designation == SPONSORSHIP_DESIGNATION,
        )
        .order_by(Donation.id)
    )
    if child_id is not None:
        query = query.where(Child.id == child_id)
    if sponsorship_id is not None:
        query = query.where(Sponsorship.id == sponsorship_id)
    return [
        (gift_id, public_id)
        for gift_id, public_id, paid_at, exited_at in db.session.execute(query).all()
        if paid_at is not None  # both NOT NULL by the query
        and exited_at is not None
        and paid_at >= exited_at.replace(microsecond=0)
    ]


def exit_refund_ids(
    now: datetime, child_id: int | None = None, sponsorship_id: int | None = None
) -> list[int]:
    """Payments taken for a sponsorship after its child's exit, once the exit's notice is due,
    that still need refunding (the job refunds each with `ask_exit_refund`, then sends it).
    Checked on every run, so a payment whose news reaches us late is refunded too."""
    return [
        gift_id
        for gift_id, public_id in _post_exit_gifts(now, child_id, sponsorship_id)
        if not donations.automatic_refund_settled(gift_id, _exit_refund_token(public_id))
    ]


def ask_exit_refund(gift_id: int) -> int | None:
    """The refund row of a payment taken after the child's exit: the one in flight, a new
    one, or None (nothing left to refund). One unit of work: the row and its idempotency key
    are committed before Stripe is called."""
    gift = db.session.get_one(Donation, gift_id)
    row = donations.request_automatic_refund(
        gift.id,
        _exit_refund_token(gift.public_id),
        "Sponsorship payment taken after the child moved on",
    )
    return row.id if row is not None else None


def due_exit_notice_ids(now: datetime) -> list[int]:
    """Exit notices whose notify_after has passed and that are not sent yet (the job sends
    each with `send_exit_notice`)."""
    return list(
        db.session.scalars(
            select(ExitNotice.id).where(
                ExitNotice.notify_after <= now, ExitNotice.sent_at.is_(None)
            )
        ).all()
    )


def _told_of_exit(sponsorship: Sponsorship, exited_at: datetime | None) -> str | None:
    """Which notice this sponsorship gets: "moved_on" (with the three choices), "moved_on_ended"
    (the sponsor ended it after the exit: told, and refunded, without a choice), or None."""
    if sponsorship.notified_at is not None:
        return None
    if sponsorship.status in (_S.ACTIVE, _S.PAST_DUE, _S.MOVED_ON):
        return "moved_on"
    ended_at = sponsorship.cancelled_at or sponsorship.lapsed_at
    if (
        sponsorship.status in (_S.CANCELLED, _S.LAPSED)
        and exited_at is not None
        and ended_at is not None
        and ended_at >= exited_at
    ):
        return "moved_on_ended"
    return None


def send_exit_notice(notice_id: int, now: datetime) -> int:
    """The neutral notice, once ExitNotice.notify_after has passed and after its two first
    steps for a sponsorship: collection stopped (stop_collection_after_exit) and every payment
    taken since the exit refunded (ask_exit_refund). In this one unit of work, each sponsor
    whose steps are done and who is not told yet is told: a sponsorship still collecting
    moves to moved_on (the place is freed), and the sponsor gets the content-free mail and
    the portal message, both saying the payments since then were refunded. A sponsor whose
    refund Stripe has not made yet waits for the next run (each is told as soon as their own
    refund is made, so no refund arrives long before its notice). Once every sponsor is told,
    the child's words are purged and the notice is marked sent. Returns how many sponsors
    were told."""
    notice = db.session.get_one(ExitNotice, notice_id)
    if notice.sent_at is not None:
        return 0
    child = db.session.get(Child, notice.child_id)
    exited_at = child.exited_at if child is not None else None
    rows = db.session.scalars(
        select(Sponsorship).where(Sponsorship.child_id == notice.child_id)
    ).all()
    sent = 0
    waiting = 0
    for sponsorship in rows:
        kind = _told_of_exit(sponsorship, exited_at)
        if kind is None:
            continue
        stopping = sponsorship.status in (_S.ACTIVE, _S.PAST_DUE)
        if (stopping and sponsorship.collection_stopped_at is None) or exit_refund_ids(
            now, notice.child_id, sponsorship.id
        ):
            waiting += 1  # collection not stopped, or a payment not refunded yet
            continue
        sponsorship = _lock_again(sponsorship)
        if sponsorship.status in (_S.ACTIVE, _S.PAST_DUE):
            sponsorship.move(_S.MOVED_ON)
            _free_place(sponsorship)
        sponsorship.notified_at = now
        _message(sponsorship, kind)
        _news_mail(sponsorship, refunded=True)
        sent += 1
    if waiting:
        return sent
    if child is not None:
        children.purge_exited_child(child)
    notice.sent_at = now
    return sent


# The portal --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortalEntry:
    sponsorship: Sponsorship
    #: None when nothing of the child may be shown (see portal_entry).
    profile: ProfileCard | None
    updates: tuple[UpdateView, ...]
    payment_text: str
    messages: tuple[str, ...]
    awaits_choice: bool
    #: The safe homes' news and counts at the child's released level (the sponsorship's
    #: own page only; None on the list and when no child content is shown).
    home: HomeNews | None = None


def _release_shown(child: Child | None) -> ChildRelease | None:
    """The release a sponsor is shown: the child's current one while she is open, and, from
    her exit until the neutral notice, the one sponsors saw at the exit (so the portal says
    nothing before the notice does). None: nothing may be shown."""
    if child is None:
        return None
    if _child_open(child):
        return child.release
    if child.status is ChildStatus.EXITED:
        return children.shown_release_at_exit(child)
    return None


def child_content(child: Child | None) -> tuple[ProfileCard | None, tuple[UpdateView, ...]]:
    """What ANY sponsor of this child may see, built from the child alone, so all sponsors
    of a child see the same facts: the released fields, the approved about text, and the
    approved, published updates (when the release allows updates), oldest first."""
    released = _release_shown(child)
    if child is None or released is None:
        return None, ()
    profile = _card(child, released, child.about, token="")
    updates = children.approved_updates(child) if released.updates_allowed else ()
    return profile, updates


_PAYMENT_TEXT = {
    _S.PENDING: "We are waiting for Stripe to confirm your first payment.",
    _S.ACTIVE: "Active: {amount} a month.",
    _S.PAST_DUE: "Your last payment did not go through. Please update your card: the "
    "sponsorship stays yours for {grace} days from the failed payment.",
    _S.LAPSED: "This sponsorship has ended because the payments did not go through.",
    _S.CANCELLED: "You cancelled this sponsorship. Nothing more will be taken.",
    _S.MOVED_ON: "Payments for this sponsorship are stopped.",
    _S.UNPLACED: "Payments for this sponsorship are stopped.",
    _S.ENDED: "This sponsorship has ended.",
    _S.EXPIRED: "This hold ended before payment.",
}

#: Said by the exit notice, in the portal as in the mail.
REFUNDED_WORDS = "Every payment taken for this sponsorship since then has been refunded to you."


def _message_text(kind: str, alias: str | None) -> str:
    who = alias or "The child you sponsored"
    if kind == "moved_on":
        return (
            f"{who} {MOVED_ON_WORDS}. Thank you for everything your sponsorship "
            f"gave. {REFUNDED_WORDS} Please choose what happens next: nothing more is "
            "charged for this sponsorship unless you choose to continue."
        )
    if kind == "moved_on_ended":
        return (
            f"{who} {MOVED_ON_WORDS}. Thank you for everything your sponsorship "
            f"gave. {REFUNDED_WORDS} Nothing more will be taken."
        )
    if kind == "unplaced":
        return (
            "Your payment arrived after your hold on this child's place had ended, and "
            "another sponsor had taken the place. Please choose what happens next: "
            "nothing more is charged unless you choose to continue."
        )
    return "This sponsorship has ended because its payments did not go through."


def portal_entry(
    user, sponsorship: Sponsorship, *, show_children: bool, with_home: bool = False
) -> PortalEntry:
    profile: ProfileCard | None = None
    updates: tuple[UpdateView, ...] = ()
    home: HomeNews | None = None
    if show_children and sponsorship.status in SHOWS_CHILD:
        profile, updates = child_content(sponsorship.child)
        if profile is not None and with_home:
            home = children.home_news(profile.region_text)
    alias = sponsorship.child.alias if (show_children and sponsorship.child is not None) else None
    kinds = db.session.scalars(
        select(SponsorMessage.kind)
        .where(SponsorMessage.sponsorship_id == sponsorship.id)
        .order_by(SponsorMessage.created_at, SponsorMessage.id)
    ).all()
    payment = _PAYMENT_TEXT[sponsorship.status].format(
        amount=format_money(sponsorship.amount_minor, sponsorship.currency),
        grace=current_app.config["SPONSORSHIP_GRACE_DAYS"],
    )
    awaits = sponsorship.status in AWAITS_CHOICE and sponsorship.notified_at is not None
    return PortalEntry(
        sponsorship,
        profile,
        updates,
        payment,
        tuple(_message_text(k, alias) for k in kinds),
        awaits,
        home,
    )


def portal(user) -> list[PortalEntry]:
    """The signed-in sponsor's own sponsorships (unpaid holds that ended are left out)."""
    show = may_see_children(user)
    rows = db.session.scalars(
        select(Sponsorship)
        .where(Sponsorship.user_id == user.id, Sponsorship.status != _S.EXPIRED)
        .order_by(Sponsorship.id.desc())
    ).all()
    return [portal_entry(user, s, show_children=show) for s in rows]


def _sha(value) -> str:
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()


def home_hash(home: HomeNews | None) -> str | None:
    """SHA-256 of the homes' news and counts shown (canonical JSON), None when none shown."""
    if home is None:
        return None
    return _sha(
        {
            "region": home.region,
            "stats_period": home.stats_period,
            "stats": [list(pair) for pair in home.stats],
            "news": [
                [i, period, list(sentences)]
                for i, (period, sentences) in zip(home.update_ids, home.news, strict=True)
            ],
        }
    )


def content_hash(
    profile: ProfileCard, updates: tuple[UpdateView, ...], home: HomeNews | None = None
) -> tuple[str, str]:
    profile_hash = _sha(profile.shown_fields())
    shown: list = [profile_hash, [[u.id, list(u.sentences)] for u in updates]]
    if home is not None:
        shown.append(home_hash(home))
    return profile_hash, _sha(shown)


def record_disclosure(user, entry: PortalEntry, now: datetime | None = None) -> None:
    """Append what this sponsor was just shown to the ledger (once per content per day): the
    child's profile and updates, and the homes' news and counts shown beside them."""
    if entry.profile is None:
        return
    now = now or utcnow()
    sponsorship = entry.sponsorship
    profile_hash, full_hash = content_hash(entry.profile, entry.updates, entry.home)
    day = now.date().isoformat()
    exists = db.session.scalar(
        select(Disclosure.id)
        .where(
            Disclosure.sponsorship_id == sponsorship.id,
            Disclosure.content_hash == full_hash,
            Disclosure.shown_on == day,
        )
        .limit(1)
    )
    if exists is not None:
        return
    try:
        with db.session.begin_nested():
            db.session.add(
                Disclosure(
                    user_id=user.id,
                    sponsorship_id=sponsorship.id,
                    child_id=sponsorship.child_id,
                    profile_hash=profile_hash,
                    update_ids=[u.id for u in entry.updates],
                    home_hash=home_hash(entry.home),
                    home_update_ids=list(entry.home.update_ids) if entry.home else [],
                    content_hash=full_hash,
                    shown_on=day,
                    shown_at=now,
                )
            )
    except IntegrityError:
        pass  # the same view in two tabs at once: one row is the record


# Staff -------------------------------------------------------------------------------------


def suspend(
    actor: User | None, email: str, reason: str, now: datetime | None = None
) -> SponsorSuspension:
    """Hide all child content from a sponsor at once (and stop new sponsorships)."""
    from donorhub.accounts.models import User

    if reason not in SUSPENSION_REASONS:
        raise DomainError("Choose a reason from the list.")
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise DomainError("No account has that e-mail address.")
    if user.is_staff:
        raise DomainError("Staff accounts are managed on the staff accounts page.")
    open_row = db.session.scalar(
        select(SponsorSuspension).where(
            SponsorSuspension.user_id == user.id, SponsorSuspension.lifted_at.is_(None)
        )
    )
    if open_row is not None:
        return open_row
    row = SponsorSuspension(
        user_id=user.id,
        reason=reason,
        suspended_at=now or utcnow(),
        suspended_by_id=actor.id if actor else None,
    )
    db.session.add(row)
    db.session.flush()
    record_audit(actor, "sponsorship.sponsor_suspended", "user", user.id, {"reason": reason})
    return row


def lift_suspension(actor: User | None, suspension_id: int, now: datetime | None = None) -> None:
    row = db.session.get(SponsorSuspension, suspension_id)
    if row is None or row.lifted_at is not None:
        raise DomainError("That suspension is not open.")
    row.lifted_at = now or utcnow()
    row.lifted_by_id = actor.id if actor else None
    record_audit(actor, "sponsorship.suspension_lifted", "user", row.user_id, {})


@dataclass(frozen=True)
class StaffOverview:
    waiting: list  # (alias, waiting days, free places)
    by_status: dict  # status -> [(sponsorship, alias)]
    match_days_median: float | None
    matched: int
    suspended: Sequence[SponsorSuspension]


def staff_overview(now: datetime | None = None) -> StaffOverview:
    now = now or utcnow()
    cap = current_app.config["SPONSORS_PER_CHILD"]
    waiting = []
    rows = db.session.execute(
        select(Child.alias, Child.first_seen_at, _places_taken())
        .join(ChildRelease, ChildRelease.child_id == Child.id)
        .where(
            Child.status == ChildStatus.ACTIVE,
            ChildRelease.is_listed.is_(True),
            _places_taken() < cap,
        )
        .order_by(Child.first_seen_at, Child.id)
    ).all()
    for alias, first_seen, taken in rows:
        waiting.append((alias, max(0, (now - first_seen).days), cap - taken))
    by_status: dict = {}
    for status in (_S.ACTIVE, _S.PAST_DUE, _S.LAPSED):
        found = db.session.execute(
            select(Sponsorship, Child.alias)
            .outerjoin(Child, Child.id == Sponsorship.child_id)
            .where(Sponsorship.status == status)
            .order_by(Sponsorship.id.desc())
            .limit(500)
        ).all()
        by_status[status.value] = found
    waits = sorted(
        (started - first_seen).total_seconds() / 86400  # type: ignore[operator]  # NOT NULL below
        for started, first_seen in db.session.execute(
            select(Sponsorship.started_at, Child.first_seen_at)
            .join(Child, Child.id == Sponsorship.child_id)
            .where(Sponsorship.started_at.is_not(None))
        ).all()
    )
    median = None
    if waits:
        middle = len(waits) // 2
        median = waits[middle] if len(waits) % 2 else (waits[middle - 1] + waits[middle]) / 2
    suspended = db.session.scalars(
        select(SponsorSuspension)
        .where(SponsorSuspension.lifted_at.is_(None))
        .order_by(SponsorSuspension.id.desc())
    ).all()
    return StaffOverview(waiting, by_status, median, len(waits), suspended)


def sponsors_to_notify(child_ids: set[int]) -> list[int]:
    """Users with a live sponsorship of any of these children who may see child content
    (for the updates feature's notifications; the mail itself carries no child content)."""
    from donorhub.accounts.models import User

    if not child_ids:
        return []
    user_ids = set(
        db.session.scalars(
            select(Sponsorship.user_id).where(
                Sponsorship.child_id.in_(child_ids),
                Sponsorship.status.in_([SponsorshipStatus.ACTIVE, SponsorshipStatus.PAST_DUE]),
            )
        )
    )
    users = [db.session.get(User, user_id) for user_id in sorted(user_ids)]
    return [
        user.id
        for user in users
        if user is not None
        and not user.is_disabled
        and not is_suspended(user.id)
        and accepted_current_conduct(user.id)
    ]


# For other features (through services only) ------------------------------------------------


@dataclass(frozen=True)
class DonorSponsorship:
    alias: str | None
    status: str


def donor_sponsorships(donor_id: int) -> list[DonorSponsorship]:
    """A donor's sponsorships for the staff donor page: alias and status only."""
    rows = db.session.execute(
        select(Child.alias, Sponsorship.status)
        .join(RecurringPlan, RecurringPlan.id == Sponsorship.plan_id)
        .outerjoin(Child, Child.id == Sponsorship.child_id)
        .where(RecurringPlan.donor_id == donor_id, Sponsorship.status != _S.EXPIRED)
        .order_by(Sponsorship.id.desc())
    ).all()
    return [DonorSponsorship(alias, status.value.replace("_", " ")) for alias, status in rows]


def sponsorship_report_rows(date_from, date_to) -> list[tuple[str, int | str]]:
    """Counts for the staff reports (no child data): started, lapsed, cancelled and moved on
    in the period, and live now."""
    start = datetime.combine(date_from, datetime.min.time()).replace(tzinfo=utcnow().tzinfo)
    end = datetime.combine(date_to, datetime.min.time()).replace(
        tzinfo=utcnow().tzinfo
    ) + timedelta(days=1)

    def between(column) -> int:
        return (
            db.session.scalar(
                select(func.count()).select_from(Sponsorship).where(column >= start, column < end)
            )
            or 0
        )

    live = (
        db.session.scalar(
            select(func.count())
            .select_from(Sponsorship)
            .where(Sponsorship.status.in_([_S.ACTIVE, _S.PAST_DUE]))
        )
        or 0
    )
    return [
        ("sponsorships started", between(Sponsorship.started_at)),
        ("sponsorships lapsed", between(Sponsorship.lapsed_at)),
        ("sponsorships cancelled by the sponsor", between(Sponsorship.cancelled_at)),
        (
            "sponsorships ended after a child moved on",
            db.session.scalar(
                select(func.count())
                .select_from(Sponsorship)
                .where(
                    Sponsorship.outcome.is_not(None),
                    Sponsorship.ended_at >= start,
                    Sponsorship.ended_at < end,
                )
            )
            or 0,
        ),
        ("sponsorships live now (active or past due)", live),
    ]
