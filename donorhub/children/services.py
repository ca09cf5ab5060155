"""The children domain's services: what others may read of a child, and how the feed writes.

Readers (sponsorship, updates, the portal) get APPROVED text only, as view objects that carry
no raw partner text. The feed importer writes children, texts, updates, home counts and exits
through the functions at the end of this module; it decides what to store, these store it.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from donorhub.children import release
from donorhub.children.impact import MEASURES
from donorhub.children.models import (
    Child,
    ChildRelease,
    ChildStatus,
    ChildText,
    ChildUpdate,
    ExitNotice,
    HomeStat,
    ReviewStatus,
)
from donorhub.children.periods import period_label
from donorhub.children.release import suppress_table
from donorhub.children.vocab import MILESTONE_SENTENCES
from donorhub.extensions import db

#: The subject of the milestone sentences of news about a home rather than one child.
HOME_SUBJECT = "The children at the home"


# Reading: approved text only --------------------------------------------------------------


@dataclass(frozen=True)
class UpdateView:
    """One published update as a sponsor reads it."""

    id: int
    period: str
    sentences: tuple[str, ...]


@dataclass(frozen=True)
class HomeNews:
    """What a sponsor may read about the child's safe home: its published news, and its
    latest counts with small cells hidden. Never the home's code or name."""

    stats_period: str | None
    stats: tuple[tuple[str, str], ...]
    news: tuple[tuple[str, tuple[str, ...]], ...]


def update_sentences(subject: str, milestones: list[str], text: str | None) -> list[str]:
    """The sentences of an update: one per milestone code ("Lotus passed the term exams."),
    then the text (the approved text, or what an officer is about to approve)."""
    sentences = [
        f"{subject} {MILESTONE_SENTENCES[code]}."
        for code in milestones
        if code in MILESTONE_SENTENCES
    ]
    if text:
        sentences.append(text)
    return sentences


def _published_approved():
    return select(ChildUpdate).where(
        ChildUpdate.status == ReviewStatus.APPROVED, ChildUpdate.published_at.is_not(None)
    )


def approved_updates(child: Child) -> tuple[UpdateView, ...]:
    """The child's approved, published updates, oldest first. The caller decides whether
    the child's release allows updates at all."""
    rows = db.session.scalars(
        _published_approved()
        .where(ChildUpdate.child_id == child.id)
        .order_by(ChildUpdate.published_at, ChildUpdate.id)
    ).all()
    views = []
    for row in rows:
        sentences = update_sentences(child.alias, row.milestones, row.approved_text)
        if sentences:
            views.append(UpdateView(row.id, period_label(row.period), tuple(sentences)))
    return tuple(views)


def home_news(home_code: str) -> HomeNews:
    """The home's latest published news (at most eight items, newest first) and its latest
    counts, small cells hidden."""
    k = current_app.config["RELEASE_K"]
    latest = db.session.scalars(
        select(HomeStat).where(HomeStat.home_code == home_code).order_by(HomeStat.period.desc())
    ).first()
    stats: tuple[tuple[str, str], ...] = ()
    if latest is not None:
        # One home alone: the row is its own line, so a single small cell drags a second
        # one with it, and no count can be worked out from the others.
        cells = suppress_table({"home": {m: getattr(latest, m) for m in MEASURES}}, k)["home"]
        stats = tuple((label, cells[m].text(k)) for m, label in MEASURES.items())
    rows = db.session.scalars(
        _published_approved()
        .where(ChildUpdate.child_id.is_(None), ChildUpdate.home_code == home_code)
        .order_by(ChildUpdate.published_at.desc(), ChildUpdate.id.desc())
        .limit(8)
    ).all()
    news = []
    for row in rows:
        sentences = update_sentences(HOME_SUBJECT, row.milestones, row.approved_text)
        if sentences:
            news.append((period_label(row.period), tuple(sentences)))
    return HomeNews(period_label(latest.period) if latest else None, stats, tuple(news))


# Writing: what the feed importer stores ---------------------------------------------------


def new_child(
    *, ref_hash: str, alias: str, public_token: str, illustration: int, now: datetime
) -> Child:
    child = Child(
        ref_hash=ref_hash,
        alias=alias,
        public_token=public_token,
        illustration=illustration,
        first_seen_at=now,
    )
    db.session.add(child)
    return child


def set_child_facts(
    child: Child,
    *,
    home_code: str,
    age_band: str,
    gender: str,
    region: str,
    stage: str,
    joined_year: int,
    interests: list[str],
    consent_profile: bool,
    consent_updates: bool,
    consent_basis: str,
    consent_expires: str,
    content_hash: str,
) -> None:
    """The coded facts of a child as the partner last sent them (tier T1)."""
    child.home_code = home_code
    child.age_band = age_band
    child.gender = gender
    child.region = region
    child.stage = stage
    child.joined_year = joined_year
    child.interests = list(interests)
    child.consent_profile = consent_profile
    child.consent_updates = consent_updates
    child.consent_basis = consent_basis
    child.consent_expires = consent_expires
    child.content_hash = content_hash
    if not consent_updates and child.release is not None:
        # Only sponsors read updates, and no public card changes: no need to wait for the
        # publication to honour a withdrawal. Profile consent is checked live when a
        # sponsor chooses, and the card leaves at the next publication.
        child.release.updates_allowed = False


def receive_about(
    child: Child, text: str, findings: list[dict], now: datetime, *, text_hash: str
) -> ReviewStatus:
    """Store a new `about` text for review: QUARANTINED when the PII guard found something,
    PENDING otherwise. Any earlier decision on the child's text is undone. `text_hash` is the
    feed's keyed hash of `text`, kept once the decision erases the text."""
    status = ReviewStatus.QUARANTINED if findings else ReviewStatus.PENDING
    existing = child.about
    if existing is None:
        child.about = ChildText(
            original=text,
            original_hash=text_hash,
            status=status,
            findings=findings,
            received_at=now,
        )
    else:
        existing.original = text
        existing.original_hash = text_hash
        existing.status = status
        existing.findings = findings
        existing.approved = None
        existing.received_at = now
        existing.reviewed_by_id = existing.reviewed_at = None
    return status


def withdraw_about(child: Child) -> None:
    if child.about is not None:
        withdraw_text(child.about)


def withdraw_text(text: ChildText) -> None:
    text.status = ReviewStatus.WITHDRAWN
    text.original = None
    text.approved = None
    text.findings = []


def receive_update(
    update: ChildUpdate | None,
    *,
    source_hash: str,
    child: Child | None,
    home_code: str | None,
    period: str,
    category: str,
    milestones: list[str],
    text: str | None,
    text_hash: str | None,
    findings: list[dict],
    content_hash: str,
    now: datetime,
) -> ChildUpdate:
    """Store a new or replaced update for review (a new one when `update` is None).
    `text_hash` is the feed's keyed hash of `text`, kept once the decision erases it."""
    if update is None:
        update = ChildUpdate(source_hash=source_hash, received_at=now)
        db.session.add(update)
    update.child = child
    update.home_code = home_code if child is None else child.home_code
    update.period = period
    update.category = category
    update.milestones = list(milestones)
    update.original_text = text
    update.original_hash = text_hash
    update.approved_text = None
    update.status = ReviewStatus.QUARANTINED if findings else ReviewStatus.PENDING
    update.findings = findings
    update.content_hash = content_hash
    update.reviewed_by_id = update.reviewed_at = None
    return update


def store_home_stats(home_code: str, period: str, counts: dict[str, int]) -> str:
    """Store a home's counts for a quarter; says "created", "updated" or "unchanged"."""
    row = db.session.scalar(
        select(HomeStat).where(HomeStat.home_code == home_code, HomeStat.period == period)
    )
    if row is None:
        db.session.add(HomeStat(home_code=home_code, period=period, **counts))
        return "created"
    if all(getattr(row, name) == value for name, value in counts.items()):
        return "unchanged"
    for name, value in counts.items():
        setattr(row, name, value)
    return "updated"


def record_exit(child: Child, period: str, now: datetime) -> None:
    """Close her for sponsorship, purge her words, and owe sponsors a neutral notice after a
    random delay, so its timing says nothing about when or why. Her public card leaves at
    the next publication, together with everything else that changed."""
    # A child first seen in this batch has no id yet, and updates added in this transaction
    # are not in the database yet: flush, so the notice can name her and the purge sees them.
    db.session.flush()
    child.status = ChildStatus.EXITED
    child.exited_period = period
    child.exited_at = now
    if child.about is not None:
        withdraw_text(child.about)
    for update in db.session.scalars(select(ChildUpdate).where(ChildUpdate.child_id == child.id)):
        update.status = ReviewStatus.WITHDRAWN
        update.original_text = None
        update.approved_text = None
        update.milestones = []
        update.findings = []
    # Her card stays exactly as published until the next publication (publish_releases):
    # changing it now would tell the world the moment of an exit. Holds are refused on it
    # with the words a sponsored child's card gets, and her sponsors' views are the portal's.
    config = current_app.config
    low, high = config["EXIT_NOTICE_MIN_DAYS"], config["EXIT_NOTICE_MAX_DAYS"]
    delay = timedelta(days=low) + timedelta(
        seconds=secrets.randbelow(int(timedelta(days=high - low).total_seconds()) + 1)
    )
    db.session.add(ExitNotice(child_id=child.id, notify_after=now + delay))


def next_publication(now: datetime) -> datetime:
    """The first moment of the fixed public release schedule after `now` (UTC): weekly, on
    RELEASE_PUBLISH_WEEKDAY (0 = Monday) at RELEASE_PUBLISH_HOUR in RELEASE_PUBLISH_TIMEZONE."""
    config = current_app.config
    zone = ZoneInfo(config["RELEASE_PUBLISH_TIMEZONE"])
    local = now.astimezone(zone)
    days_ahead = (config["RELEASE_PUBLISH_WEEKDAY"] - local.weekday()) % 7
    day = local.date() + timedelta(days=days_ahead)
    moment = datetime.combine(day, time(config["RELEASE_PUBLISH_HOUR"]), zone)
    if moment <= local:
        moment = datetime.combine(
            day + timedelta(days=7), time(config["RELEASE_PUBLISH_HOUR"]), zone
        )
    return moment.astimezone(UTC)


def single_home_states() -> set[str]:
    """States with one safe home (FEED_HOMES): naming the state would name the home."""
    homes_per_state = Counter(current_app.config["FEED_HOMES"].values())
    return {state for state, homes in homes_per_state.items() if homes == 1}


def publish_releases(now: datetime) -> int:
    """Decide, on the fixed public schedule, what the public and sponsors see of every child
    until the next publication; returns how many cards are shown. The only moment anything
    shown of a child changes, apart from sponsors' own portals.

    Everyone who may be shown is in the crowd, sponsored or not, and every released child is
    shown (a fully sponsored one as a "sponsored" card), so the crowd is exactly the cards
    shown. Consent must cover the whole week to the next publication. Exits since the last
    publication leave now, together with arrivals, sponsorships and every other change.
    Nothing is shown finer than before (`release.ChildFacts.floor`).
    """
    k = current_app.config["RELEASE_K"]
    horizon = next_publication(now).date()
    withheld_states = single_home_states()
    children = db.session.scalars(
        select(Child).options(selectinload(Child.release)).order_by(Child.id)
    ).all()
    crowd = [
        release.bounded(
            release.ChildFacts(
                c.id, c.age_band, c.gender, c.region, c.stage, c.joined_year, tuple(c.interests)
            ),
            _bounds(c.release),
            withheld_states,
        )
        for c in children
        if c.status == ChildStatus.ACTIVE
        and c.consent_profile
        and release.consent_current(c.consent_expires, horizon)
    ]
    decided = release.release_children(crowd, k, now.date())
    sponsored = _sponsored_child_ids()
    for child in children:
        row = child.release
        if row is None:
            row = ChildRelease()
            child.release = row  # through the parent, so the save cascade adds it
        released = decided.get(child.id)
        if released is None:
            row.is_listed = False
            row.shown_open = False
            row.updates_allowed = False
            row.age_text = row.gender_text = row.region_text = None
            row.stage_text = row.joined_text = None
            row.interests = []
            row.level = -1
            row.crowd_size = 0
        else:
            row.is_listed = True
            row.shown_open = child.id not in sponsored
            row.updates_allowed = child.consent_updates
            row.age_text, row.gender_text = released.age_text, released.gender_text
            row.region_text, row.stage_text = released.region_text, released.stage_text
            row.joined_text = released.joined_text
            row.interests = list(released.interests)
            row.level, row.crowd_size = released.level, released.crowd_size
            # What this card shows bounds every later card of hers.
            bounds = release.bounds_after(released, _bounds(row))
            row.floor_level = bounds.floor_level
            row.interests_cap = list(bounds.interests_cap)
            row.region_withheld = bounds.region_withheld
            if row.first_listed_at is None:
                row.first_listed_at = now
        row.computed_at = now
    return len(decided)


def _bounds(row: ChildRelease | None) -> release.Bounds | None:
    if row is None or row.floor_level is None:
        return None
    return release.Bounds(row.floor_level, tuple(row.interests_cap or ()), row.region_withheld)


#: The key under app.extensions of the function that names the children whose every place a
#: sponsorship has taken. Sponsorship sits above children, so create_app wires it in.
FULLY_SPONSORED = "donorhub.children.fully_sponsored"


def _sponsored_child_ids() -> set[int]:
    lookup = current_app.extensions.get(FULLY_SPONSORED)
    return set(lookup()) if lookup is not None else set()
