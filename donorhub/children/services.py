"""The children domain's services: what others may read of a child, and how the feed writes.

Readers (sponsorship, updates, the portal) get APPROVED text only, as view objects that carry
no raw partner text. The feed importer writes children, texts, updates, home counts and exits
through the functions at the end of this module; it decides what to store, these store it.
"""

from __future__ import annotations

import hmac
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import ARRAY, ColumnElement, String, any_, bindparam, insert, or_, select
from sqlalchemy import update as update_rows
from sqlalchemy.orm import InstrumentedAttribute, selectinload

from donorhub.children import release
from donorhub.children.impact import MEASURES
from donorhub.children.models import (
    AliasUse,
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
from donorhub.children.vocab import INTERESTS, MILESTONE_SENTENCES, REGIONS
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
    """What a sponsor may read about the safe homes at the child's released level: the
    published news and the latest counts of every home in the released state (or of all
    homes, when the child is released as "India"), small cells hidden. Never one home's
    code, name or counts unless the released state has only that home."""

    #: The released region the news is pooled over: a state, or "India".
    region: str
    stats_period: str | None
    stats: tuple[tuple[str, str], ...]
    news: tuple[tuple[str, tuple[str, ...]], ...]
    #: The ChildUpdate ids of the news shown, newest first (for the disclosure ledger).
    update_ids: tuple[int, ...] = ()


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


#: The region of a child released without a state: every home is pooled.
COUNTRY = "India"


def home_pool(region_text: str | None) -> tuple[str, frozenset[str] | None]:
    """The released region and the homes pooled under it: the configured homes of a released
    state, or None (every home) when the release shows only the country."""
    if not region_text or region_text == COUNTRY:
        return COUNTRY, None
    homes = current_app.config["FEED_HOMES"]
    return region_text, frozenset(code for code, state in homes.items() if state == region_text)


def _pooled_counts(pool: frozenset[str] | None) -> tuple[str | None, dict[str, int]]:
    """The latest quarter every reporting home of the pool has counts for, and their sums.

    Summing homes that reported different quarters, or showing a pool whose counts come from
    one home of several, would count a single home the release does not show: a pool of a
    region with more than one home needs at least two reporting homes."""
    query = select(HomeStat)
    if pool is not None:
        query = query.where(HomeStat.home_code.in_(sorted(pool)))
    rows = db.session.scalars(query).all()
    by_home: dict[str, dict[str, HomeStat]] = {}
    for row in rows:
        by_home.setdefault(row.home_code, {})[row.period] = row
    configured = len(pool) if pool is not None else len(current_app.config["FEED_HOMES"])
    if len(by_home) < (1 if configured <= 1 else 2):
        return None, {}
    common = set.intersection(*(set(periods) for periods in by_home.values()))
    if not common:
        return None, {}
    period = max(common)
    sums = {m: sum(getattr(periods[period], m) for periods in by_home.values()) for m in MEASURES}
    return period, sums


def home_news(region_text: str | None) -> HomeNews:
    """The published news (at most eight items, newest first) and the latest counts of the
    homes pooled under a released region, small cells hidden."""
    k = current_app.config["RELEASE_K"]
    region, pool = home_pool(region_text)
    period, sums = _pooled_counts(pool)
    stats: tuple[tuple[str, str], ...] = ()
    if period is not None:
        # The pool is one row: a single small cell drags a second one with it, so no count
        # can be worked out from the others.
        cells = suppress_table({"pool": sums}, k)["pool"]
        stats = tuple((label, cells[m].text(k)) for m, label in MEASURES.items())
    query = _published_approved().where(ChildUpdate.child_id.is_(None))
    if pool is not None:
        query = query.where(ChildUpdate.home_code.in_(sorted(pool)))
    rows = db.session.scalars(
        query.order_by(ChildUpdate.published_at.desc(), ChildUpdate.id.desc()).limit(8)
    ).all()
    news = []
    ids = []
    for row in rows:
        sentences = update_sentences(HOME_SUBJECT, row.milestones, row.approved_text)
        if sentences:
            news.append((period_label(row.period), tuple(sentences)))
            ids.append(row.id)
    return HomeNews(
        region,
        period_label(period) if period else None,
        stats,
        tuple(news),
        tuple(ids),
    )


def children_shown_home_news(homes: set[str]) -> set[int]:
    """Children allowed updates whose sponsors see news of any of these homes at the child's
    released level (so a notification never singles out the child's own home). A child who
    exited and whose notice is not sent yet counts at the level her sponsors still see: the
    mails must not stop before the notice says why."""
    rows: list[tuple[int, str | None]] = [
        (child_id, region_text)
        for child_id, region_text in db.session.execute(
            select(Child.id, ChildRelease.region_text)
            .join(ChildRelease, ChildRelease.child_id == Child.id)
            .where(Child.status == ChildStatus.ACTIVE, ChildRelease.updates_allowed.is_(True))
        ).all()
    ]
    for child_id, shown in db.session.execute(
        select(ExitNotice.child_id, ExitNotice.shown_release).where(
            ExitNotice.sent_at.is_(None), ExitNotice.shown_release.is_not(None)
        )
    ).all():
        if shown and shown.get("updates_allowed"):
            rows.append((child_id, shown.get("region_text")))
    found = set()
    for child_id, region_text in rows:
        _, pool = home_pool(region_text)
        if pool is None or pool & homes:
            found.add(child_id)
    return found


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
    received = _as_received_for_review(
        home_code=home_code if child is None else child.home_code,
        period=period,
        category=category,
        milestones=milestones,
        text=text,
        text_hash=text_hash,
        findings=findings,
        content_hash=content_hash,
    )
    for name, value in received.items():
        setattr(update, name, value)
    return update


def _as_received_for_review(
    *,
    home_code: str | None,
    period: str,
    category: str,
    milestones: list[str],
    text: str | None,
    text_hash: str | None,
    findings: list[dict],
    content_hash: str,
) -> dict:
    """What an update holds when it (or its replacement) arrives: the partner's text awaiting
    review, quarantined when the guard found anything, no decision yet. One rule for the
    per-object path and the bulk rows."""
    return {
        "home_code": home_code,
        "period": period,
        "category": category,
        "milestones": list(milestones),
        "original_text": text,
        "original_hash": text_hash,
        "approved_text": None,
        "status": ReviewStatus.QUARANTINED if findings else ReviewStatus.PENDING,
        "findings": findings,
        "content_hash": content_hash,
        "reviewed_by_id": None,
        "reviewed_at": None,
    }


# Children, texts and updates first seen in a batch are stored in bulk: one executemany per
# table, no ORM object per row. The row builders below say what such a row holds; the
# per-object functions above handle what changes an existing row.


def new_child_row(
    *,
    ref_hash: str,
    alias: str,
    public_token: str,
    illustration: int,
    now: datetime,
    facts: dict,
) -> dict:
    """The row of a child first seen in a batch: what `new_child` and `set_child_facts` would
    store (`facts` holds exactly `set_child_facts`' keywords)."""
    return {
        "ref_hash": ref_hash,
        "alias": alias,
        "public_token": public_token,
        "illustration": illustration,
        "status": ChildStatus.ACTIVE,
        "first_seen_at": now,
        "exited_period": None,
        "exited_at": None,
        **facts,
        "interests": list(facts["interests"]),
    }


def new_about_row(
    child_id: int, text: str, findings: list[dict], now: datetime, *, text_hash: str
) -> dict:
    """The `about` text of a child first seen in a batch, as `receive_about` stores it."""
    return {
        "child_id": child_id,
        "original": text,
        "original_hash": text_hash,
        "approved": None,
        "status": ReviewStatus.QUARANTINED if findings else ReviewStatus.PENDING,
        "findings": findings,
        "received_at": now,
        "reviewed_by_id": None,
        "reviewed_at": None,
    }


def new_update_row(
    *,
    source_hash: str,
    child_id: int | None,
    home_code: str | None,
    period: str,
    category: str,
    milestones: list[str],
    text: str | None,
    text_hash: str | None,
    findings: list[dict],
    content_hash: str,
    now: datetime,
) -> dict:
    """An update first seen in a batch, as `receive_update(None, ...)` stores it; `home_code`
    is the child's when the update is about a child."""
    return {
        "source_hash": source_hash,
        "child_id": child_id,
        "received_at": now,
        "published_at": None,
        "publication_id": None,
        **_as_received_for_review(
            home_code=home_code,
            period=period,
            category=category,
            milestones=milestones,
            text=text,
            text_hash=text_hash,
            findings=findings,
            content_hash=content_hash,
        ),
    }


#: Values per IN list on a database without arrays (SQLite).
IN_CHUNK = 500


def one_of(column: InstrumentedAttribute[str], values: list[str]) -> list[ColumnElement[bool]]:
    """Conditions that, one query each, select the rows whose `column` is one of `values`:
    on PostgreSQL a single `= ANY(array)` (one parameter, whatever the count), elsewhere IN
    lists of IN_CHUNK values."""
    if not values:
        return []
    if db.session.get_bind().dialect.name == "postgresql":
        return [column == any_(bindparam(None, list(values), type_=ARRAY(String())))]
    return [
        column.in_(values[start : start + IN_CHUNK]) for start in range(0, len(values), IN_CHUNK)
    ]


def insert_children(rows: list[dict]) -> dict[str, int]:
    """Store children first seen in a batch (`new_child_row`) in one executemany; returns
    their ids by ref_hash, read back in one query (PostgreSQL) or a few."""
    if not rows:
        return {}
    db.session.execute(insert(Child.__table__), rows)
    ids: dict[str, int] = {}
    for condition in one_of(Child.ref_hash, [row["ref_hash"] for row in rows]):
        for ref_hash, child_id in db.session.execute(
            select(Child.ref_hash, Child.id).where(condition)
        ):
            ids[ref_hash] = child_id
    return ids


def insert_about_texts(rows: list[dict]) -> None:
    """Store the `about` texts of children first seen in a batch (`new_about_row`)."""
    if rows:
        db.session.execute(insert(ChildText.__table__), rows)


def insert_updates(rows: list[dict]) -> None:
    """Store updates first seen in a batch (`new_update_row`) in one executemany."""
    if rows:
        db.session.execute(insert(ChildUpdate.__table__), rows)


def record_aliases(aliases: list[str]) -> None:
    """Every alias given out in a batch, so none is ever given out again."""
    if aliases:
        db.session.execute(insert(AliasUse.__table__), [{"alias": alias} for alias in aliases])


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


#: The released fields a sponsor's portal keeps showing from the exit until the notice.
SHOWN_RELEASE_FIELDS = (
    "age_text",
    "gender_text",
    "region_text",
    "stage_text",
    "joined_text",
    "interests",
    "updates_allowed",
)


def _release_as_shown(child: Child) -> dict | None:
    """The release sponsors were shown at this moment, or None when they were shown nothing."""
    row = child.release
    if row is None or not row.is_listed:
        return None
    return {name: getattr(row, name) for name in SHOWN_RELEASE_FIELDS}


def shown_release_at_exit(child: Child) -> ChildRelease | None:
    """What a sponsor of an exited child is shown until the neutral notice goes out: the
    release as it stood at the exit, as a detached row (never added to the session). None
    once the notice has gone, or when nothing was shown at the exit."""
    notice = db.session.scalar(select(ExitNotice).where(ExitNotice.child_id == child.id))
    if notice is None or notice.sent_at is not None or not notice.shown_release:
        return None
    shown = {name: notice.shown_release.get(name) for name in SHOWN_RELEASE_FIELDS}
    shown["interests"] = list(shown["interests"] or [])
    shown["updates_allowed"] = bool(shown["updates_allowed"])
    return ChildRelease(is_listed=True, **shown)


def _withdraw_update(update: ChildUpdate) -> None:
    update.status = ReviewStatus.WITHDRAWN
    update.original_text = None
    update.approved_text = None
    update.milestones = []
    update.findings = []


def record_exit(child: Child, period: str, now: datetime) -> None:
    """Close her for sponsorship, and owe sponsors a neutral notice after a random delay, so
    its timing says nothing about when or why. Her public card leaves at the next
    publication, together with everything else that changed.

    Until the notice, a sponsor's portal shows exactly what it showed before the exit, so the
    release sponsors saw is kept on the notice and the approved text they read stays; every
    text they never saw (waiting for review, approved but not yet published) is purged now,
    so nothing new can reach them. The rest is purged when the notice goes out
    (`purge_exited_child`)."""
    # A child first seen in this batch has no id yet, and updates added in this transaction
    # are not in the database yet: flush, so the notice can name her and the purge sees them.
    db.session.flush()
    shown = _release_as_shown(child)
    child.status = ChildStatus.EXITED
    child.exited_period = period
    child.exited_at = now
    if child.about is not None and child.about.status is not ReviewStatus.APPROVED:
        withdraw_text(child.about)
    for update in db.session.scalars(select(ChildUpdate).where(ChildUpdate.child_id == child.id)):
        if not (update.status is ReviewStatus.APPROVED and update.published_at is not None):
            _withdraw_update(update)
    # Her card stays exactly as published until the next publication (publish_releases):
    # changing it now would tell the world the moment of an exit. Holds are refused on it
    # with the words a sponsored child's card gets, and her sponsors' views are the portal's.
    config = current_app.config
    low, high = config["EXIT_NOTICE_MIN_DAYS"], config["EXIT_NOTICE_MAX_DAYS"]
    delay = timedelta(days=low) + timedelta(
        seconds=secrets.randbelow(int(timedelta(days=high - low).total_seconds()) + 1)
    )
    db.session.add(ExitNotice(child_id=child.id, notify_after=now + delay, shown_release=shown))


def purge_exited_child(child: Child) -> None:
    """The neutral notice has gone out: purge the child's words everywhere (her approved
    about text and every update), so no view can show them again."""
    if child.about is not None:
        withdraw_text(child.about)
    for update in db.session.scalars(select(ChildUpdate).where(ChildUpdate.child_id == child.id)):
        _withdraw_update(update)


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
        if row.is_listed:
            row.list_order = listing_order_key(child.public_token, now.date())
            row.list_day = now.date()
        else:
            row.list_order = row.list_day = None
        row.long_wait = row.first_listed_at is not None and now - row.first_listed_at >= LONG_WAIT
        row.match_rank = None
        row.computed_at = now
    _draw_match_places([c.release for c in children if c.release is not None])
    return len(decided)


#: "Match me" prefers children who have been on the listing at least this long, measured
#: from the publication that first listed them (a moment the public saw).
LONG_WAIT = timedelta(days=91)


def _draw_match_places(rows: list[ChildRelease]) -> None:
    """Give the open cards of each waiting band a random place 0..n-1 ("Match me")."""
    shuffle = secrets.SystemRandom().shuffle
    for long_wait in (True, False):
        band = [r for r in rows if r.is_listed and r.shown_open and r.long_wait is long_wait]
        shuffle(band)
        for place, row in enumerate(band):
            row.match_rank = place


# The listing's order ------------------------------------------------------------------------


def listing_order_key(token: str, day: date) -> str:
    """A card's place in the listing on `day` (UTC): a daily shuffle, the same order all day
    for everyone, a new one each day, unrelated to arrival, the partner's line order or
    anything else about the child (HMAC-SHA256 under a key derived from SECRET_KEY)."""
    key = hmac.new(current_app.config["SECRET_KEY"].encode(), b"listing order", "sha256")
    return hmac.new(key.digest(), f"{day.isoformat()} {token}".encode(), "sha256").hexdigest()


def shuffle_listing(day: date) -> int:
    """Store `day`'s order key on every listed card that does not have it yet (job
    `shuffle_listing`, at the start of each UTC day); returns how many were written. Until it
    has run, readers sort by the same keys computed on the fly, so the order of a day never
    depends on when this ran."""
    rows = db.session.execute(
        select(ChildRelease.id, Child.public_token)
        .join(Child, Child.id == ChildRelease.child_id)
        .where(
            ChildRelease.is_listed.is_(True),
            or_(ChildRelease.list_day.is_(None), ChildRelease.list_day != day),
        )
    ).all()
    if rows:
        db.session.execute(
            update_rows(ChildRelease),
            [
                {"id": row_id, "list_order": listing_order_key(token, day), "list_day": day}
                for row_id, token in rows
            ],
        )
    return len(rows)


def released_vocabulary() -> dict[str, list[str]]:
    """Every text a released card can show, per filter of the listing: fixed by the release
    checks' wordings and the configured homes, whatever is listed now (so the filters of a
    page tell nobody which values the current cards have, and cost nothing to offer)."""
    homes = current_app.config["FEED_HOMES"]
    states = set(homes.values()) if homes else set(REGIONS)
    return {
        "age": list(dict.fromkeys([*release.AGE_EXACT.values(), *release.AGE_WIDE.values()])),
        "region": [*sorted(states - single_home_states() - {"India"}), "India"],
        "stage": list(dict.fromkeys([*release.STAGE_TEXT.values(), *release.STAGE_WIDE.values()])),
        "interest": sorted(INTERESTS),
    }


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
