"""Publishing approved updates on the fixed schedule, and telling people without telling them
anything: the mail says only that news is waiting, never what it is or about whom."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from flask import current_app
from sqlalchemy import select

from donorhub.accounts.models import User
from donorhub.children import review
from donorhub.children import services as children
from donorhub.children.models import ChildStatus, ChildUpdate, ReviewStatus
from donorhub.children.periods import quarter_of
from donorhub.database import utcnow
from donorhub.extensions import db
from donorhub.mail.services import queue_mail
from donorhub.updates.models import (
    NotificationChoice,
    NotificationPreference,
    Publication,
    UpdateNotification,
)
from donorhub.urls import external_url

QUARTER_START_MONTHS = (1, 4, 7, 10)


# The schedule ------------------------------------------------------------------------------


def schedule_dates(year: int) -> list[date]:
    config = current_app.config
    day = config["UPDATES_PUBLICATION_DAY"]
    months = (
        range(1, 13) if config["UPDATES_PUBLICATION_CADENCE"] == "monthly" else QUARTER_START_MONTHS
    )
    return [date(year, month, day) for month in months]


def due_date(today: date) -> date | None:
    """The latest schedule date on or before today (a missed day is caught up, once)."""
    candidates = [
        d for d in schedule_dates(today.year - 1) + schedule_dates(today.year) if d <= today
    ]
    return max(candidates) if candidates else None


def next_publication(today: date) -> date:
    return min(d for d in schedule_dates(today.year) + schedule_dates(today.year + 1) if d > today)


# Publishing --------------------------------------------------------------------------------


def auto_approve_coded(now: datetime) -> int:
    """Updates that carry only milestone codes (DonorHub writes every word of them) may be
    approved without a person when UPDATES_AUTO_APPROVE_CODED is on. Free text never is."""
    if not current_app.config["UPDATES_AUTO_APPROVE_CODED"]:
        return 0
    return review.approve_coded_updates(now)


def publishable(update: ChildUpdate) -> bool:
    if update.child_id is None:
        return True  # home news, reviewed like any other text
    child = update.child
    return (
        child is not None
        and child.status == ChildStatus.ACTIVE
        and child.release is not None
        and child.release.updates_allowed
    )


def publish_due(today: date | None = None, now: datetime | None = None) -> Publication | None:
    """Release every approved, unpublished update together, if a schedule date is due and
    has no publication yet. Updates of children without update consent wait."""
    now = now or datetime.now(UTC)
    today = today or now.date()
    due = due_date(today)
    if (
        due is None
        or db.session.scalar(select(Publication).where(Publication.scheduled_for == due))
        is not None
    ):
        return None
    auto_approve_coded(now)
    publication = Publication(scheduled_for=due, published_at=now)
    db.session.add(publication)
    db.session.flush()  # a concurrent run of this job stops here, on the unique date
    waiting = db.session.scalars(
        select(ChildUpdate).where(
            ChildUpdate.status == ReviewStatus.APPROVED, ChildUpdate.published_at.is_(None)
        )
    ).all()
    for update in waiting:
        if publishable(update):
            update.published_at = now
            update.publication_id = publication.id
            publication.updates_published += 1
    return publication


# Notifications -----------------------------------------------------------------------------


def recipients(publication: Publication) -> set[int]:
    """Sponsors of the children with news in this publication, and of children whose
    released region pools a home with news. Only people who may see child content at all."""
    from donorhub.sponsorship import services as sponsorship

    updates = db.session.scalars(
        select(ChildUpdate).where(ChildUpdate.publication_id == publication.id)
    ).all()
    child_ids = {u.child_id for u in updates if u.child_id is not None}
    homes = {u.home_code for u in updates if u.child_id is None and u.home_code}
    if homes:
        # Home news is shown pooled at each child's released level, so it goes to the
        # sponsors of every child whose pool holds one of these homes: telling only those of
        # the home's own children would name the home a release hides.
        child_ids |= children.children_shown_home_news(homes)
    return set(sponsorship.sponsors_to_notify(child_ids)) if child_ids else set()


def current_choice(user_id: int) -> NotificationChoice:
    """Read-only: the default until the person chooses (pages must not write on GET)."""
    row = db.session.scalar(
        select(NotificationPreference).where(NotificationPreference.user_id == user_id)
    )
    return row.choice if row is not None else NotificationChoice.EACH


def preference(user_id: int) -> NotificationPreference:
    row = db.session.scalar(
        select(NotificationPreference).where(NotificationPreference.user_id == user_id)
    )
    if row is None:
        row = NotificationPreference(user_id=user_id, choice=NotificationChoice.EACH)
        db.session.add(row)
        db.session.flush()
    return row


def _mailed_this_quarter(user_id: int, publication: Publication) -> bool:
    quarter = quarter_of(publication.scheduled_for)
    earlier = db.session.scalars(
        select(Publication.scheduled_for)
        .join(UpdateNotification, UpdateNotification.publication_id == Publication.id)
        .where(
            UpdateNotification.user_id == user_id,
            UpdateNotification.outcome == "mailed",
            Publication.id != publication.id,
        )
    ).all()
    return any(quarter_of(day) == quarter for day in earlier)


def notify_one(user_id: int, publication: Publication) -> str | None:
    """Decide and record one person's notification for a publication; queue its mail.

    Returns None when it was decided already (a re-run), else the outcome. The caller commits
    after each person, so a crash loses at most the person in hand, who is done next run.
    """
    if (
        db.session.scalar(
            select(UpdateNotification.id).where(
                UpdateNotification.user_id == user_id,
                UpdateNotification.publication_id == publication.id,
            )
        )
        is not None
    ):
        return None
    user = db.session.get(User, user_id)
    choice = preference(user_id).choice
    if user is None or user.is_disabled or choice == NotificationChoice.NONE:
        outcome = "opted_out"
    elif choice == NotificationChoice.DIGEST and _mailed_this_quarter(user_id, publication):
        outcome = "digest_later"
    else:
        outcome = "mailed"
        unsubscribe = unsubscribe_url(user_id)
        queue_mail(
            user.email,
            "updates/new_update",
            subject="A new update is waiting for you",
            headers={
                "List-Unsubscribe": f"<{unsubscribe}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            sign_in_url=external("accounts.sign_in", next="/my/sponsorships"),
            preferences_url=external("updates.preferences"),
            unsubscribe_url=unsubscribe,
        )
    db.session.add(
        UpdateNotification(user_id=user_id, publication_id=publication.id, outcome=outcome)
    )
    db.session.flush()
    return outcome


def external(endpoint: str, **values: Any) -> str:
    return external_url(endpoint, **values)


# Unsubscribing -----------------------------------------------------------------------------


class UnsubscribeLink(StrEnum):
    CURRENT = "current"  # made since the person's last choice: it turns mail off
    OLD = "old"  # ours, but made before a later choice, which it cannot undo
    INVALID = "invalid"  # altered, forged, or for nobody


def _link_mac(key: str, version: int) -> str:
    """The keyed MAC that binds a link to its person's key and preference version: without
    SECRET_KEY nobody (not even someone holding a copy of the database) can make a link."""
    secret = current_app.config["SECRET_KEY"].encode()
    message = f"donorhub.updates.unsubscribe|{key}|{version}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def unsubscribe_token(user_id: int) -> str:
    """`<random key>.<MAC>`: no id, count or date of ours, in any encoding."""
    row = preference(user_id)
    return f"{row.unsubscribe_key}.{_link_mac(row.unsubscribe_key, row.version)}"


def unsubscribe_url(user_id: int) -> str:
    return external("updates.unsubscribe", token=unsubscribe_token(user_id))


def read_unsubscribe_link(token: str) -> tuple[UnsubscribeLink, NotificationPreference | None]:
    """Whose link this is, and whether it is still the current one."""
    key, dot, mac = token.partition(".")
    if not dot or not key or len(key) > 32 or len(mac) > 64 or not token.isascii():
        return UnsubscribeLink.INVALID, None
    row = db.session.scalar(
        select(NotificationPreference).where(NotificationPreference.unsubscribe_key == key)
    )
    if row is None:
        return UnsubscribeLink.INVALID, None
    if hmac.compare_digest(mac, _link_mac(key, row.version)):
        return UnsubscribeLink.CURRENT, row
    if any(hmac.compare_digest(mac, _link_mac(key, v)) for v in range(1, row.version)):
        return UnsubscribeLink.OLD, row
    return UnsubscribeLink.INVALID, None


def unsubscribe(token: str) -> bool:
    """Turn notifications off for the person the link was made for. False: a bad link, or
    an old one while notifications are on (a later choice is not undone by an old mail)."""
    state, row = read_unsubscribe_link(token)
    if row is None:
        return False
    if state is UnsubscribeLink.OLD:
        return row.choice == NotificationChoice.NONE
    row.choice = NotificationChoice.NONE
    row.version += 1
    row.updated_at = utcnow()
    return True


def set_preference(user: User, choice: NotificationChoice) -> None:
    row = preference(user.id)
    row.choice = choice
    row.version += 1
