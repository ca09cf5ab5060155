"""The safeguarding officer's review of child-derived text: nothing reaches a sponsor unseen.

Free text arrives PENDING (the PII guard found nothing) or QUARANTINED (it found something).
An officer approves it as it is, approves an edited version, or rejects it. Flagged spans are
masked on every review screen; seeing them unmasked is a separate, audited action, possible
only while the item waits. The decision erases the partner's original: only its keyed hash
stays (docs/safeguarding.md, "Originals").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from donorhub import guard
from donorhub.accounts.models import User
from donorhub.audit import record_audit
from donorhub.children.models import Child, ChildText, ChildUpdate, ReviewStatus
from donorhub.children.services import HOME_SUBJECT, update_sentences
from donorhub.database import utcnow
from donorhub.errors import DomainError
from donorhub.extensions import db

KINDS = ("about", "update")
OPEN = (ReviewStatus.PENDING, ReviewStatus.QUARANTINED)
REJECTION_REASONS = {
    "identifying": "It could identify the child or someone close to her",
    "sensitive": "It tells something sensitive about her past or health",
    "not_suitable": "It is not suitable for sponsors for another reason",
}
REMOVED = "[removed]"


class NeedsConfirmation(DomainError):
    """The text still has flagged parts: the officer must confirm each one is safe."""

    def __init__(self, findings: list[dict]):
        super().__init__(
            "The guard still flags part of this text. Confirm that you checked "
            "every flagged part, or edit it out."
        )
        self.findings = findings


class NotReviewable(DomainError):
    """The item was decided already, or withdrawn."""


@dataclass(frozen=True)
class Segment:
    text: str
    flagged: bool
    detector: str | None = None


@dataclass(frozen=True)
class ReviewItem:
    kind: str
    id: int
    status: ReviewStatus
    received_at: datetime
    findings: list[dict]
    subject: str  # the alias, or "Home MH-02"
    period: str | None
    category: str | None
    milestones: tuple[str, ...]
    has_text: bool

    @property
    def detectors(self) -> list[str]:
        return sorted({f["detector"] for f in self.findings})


def _row(kind: str, item_id: int) -> ChildText | ChildUpdate:
    row: ChildText | ChildUpdate | None = None
    if kind == "about":
        row = db.session.get(ChildText, item_id)
    elif kind == "update":
        row = db.session.get(ChildUpdate, item_id)
    if row is None:
        raise LookupError(kind)
    return row


def _item(kind: str, row: ChildText | ChildUpdate) -> ReviewItem:
    if isinstance(row, ChildText):  # kind "about"
        return ReviewItem(
            "about",
            row.id,
            row.status,
            row.received_at,
            list(row.findings),
            row.child.alias,
            None,
            None,
            (),
            row.original is not None,
        )
    subject = row.child.alias if row.child is not None else f"Home {row.home_code}"
    return ReviewItem(
        "update",
        row.id,
        row.status,
        row.received_at,
        list(row.findings),
        subject,
        row.period,
        row.category,
        tuple(row.milestones),
        row.original_text is not None,
    )


def review_queue() -> list[ReviewItem]:
    """Open items, quarantined first, oldest first."""
    abouts = db.session.scalars(
        select(ChildText)
        .join(Child)
        .where(ChildText.status.in_(OPEN))
        .order_by(ChildText.received_at, ChildText.id)
    ).all()
    updates = db.session.scalars(
        select(ChildUpdate)
        .where(ChildUpdate.status.in_(OPEN))
        .order_by(ChildUpdate.received_at, ChildUpdate.id)
    ).all()
    items = [_item("about", row) for row in abouts] + [_item("update", row) for row in updates]
    return sorted(
        items, key=lambda i: (i.status != ReviewStatus.QUARANTINED, i.received_at, i.kind, i.id)
    )


def open_item(actor: User, kind: str, item_id: int) -> ReviewItem:
    """One item for review; the view of it is audited."""
    item = _item(kind, _row(kind, item_id))
    record_audit(actor, "safeguarding.item_viewed", f"child_{kind}", item_id, {})
    return item


def original_text(kind: str, item_id: int) -> str | None:
    row = _row(kind, item_id)
    return row.original if isinstance(row, ChildText) else row.original_text


def masked_segments(text: str | None, findings: list[dict]) -> list[Segment]:
    """The text cut into plain and flagged parts; flagged parts carry no characters of the
    original, only the detector's name."""
    if not text:
        return []
    segments, position = [], 0
    for finding in sorted(findings, key=lambda f: f["start"]):
        start, end = max(finding["start"], position), finding["end"]
        if end <= start:
            continue
        if start > position:
            segments.append(Segment(text[position:start], False))
        segments.append(Segment("", True, finding["detector"]))
        position = end
    if position < len(text):
        segments.append(Segment(text[position:], False))
    return segments


def masked_text(text: str | None, findings: list[dict]) -> str:
    return "".join(REMOVED if s.flagged else s.text for s in masked_segments(text, findings))


def forget_original(row: ChildText | ChildUpdate) -> None:
    """Erase the partner's original once it is decided; its keyed hash stays."""
    if isinstance(row, ChildText):
        row.original = None
    else:
        row.original_text = None


def reveal(actor: User, kind: str, item_id: int) -> tuple[str | None, list[dict]]:
    """The unmasked text, for an officer who must judge a flagged part. Always audited.

    :raises NotReviewable: the item was decided (its original is gone) or withdrawn.
    """
    row = _row(kind, item_id)
    if row.status not in OPEN:
        raise NotReviewable("This item was decided already: its original text is not kept.")
    record_audit(actor, "safeguarding.text_revealed", f"child_{kind}", item_id, {})
    return original_text(kind, item_id), list(row.findings)


def sponsor_preview(kind: str, item_id: int, text: str | None) -> list[str]:
    """The sentences a sponsor would read if this were approved with `text`."""
    row = _row(kind, item_id)
    if not isinstance(row, ChildUpdate):  # kind "about"
        return [text] if text else []
    subject = row.child.alias if row.child is not None else HOME_SUBJECT
    return update_sentences(subject, row.milestones, text)


def approve(
    actor: User, kind: str, item_id: int, *, edited_text: str | None = None, confirmed: bool = False
) -> None:
    """Approve the text as sent, or as edited. Flagged parts need an explicit confirmation.

    :raises NeedsConfirmation: flagged parts remain and `confirmed` is false.
    :raises NotReviewable: the item is not open.
    """
    row = _row(kind, item_id)
    if row.status not in OPEN:
        raise NotReviewable("This item was already decided or withdrawn.")
    original = original_text(kind, item_id)
    text = original if edited_text is None else " ".join(edited_text.split())
    if (
        edited_text is not None
        and text is not None
        and len(text) > (280 if kind == "about" else 600)
    ):
        raise DomainError("The text is longer than the feed contract allows.")
    findings = (
        [
            {"detector": f.detector, "start": f.start, "end": f.end, "rule": f.rule}
            for f in guard.scan_text(text)
        ]
        if text
        else []
    )
    if REMOVED in (text or "") and edited_text is not None:
        raise DomainError(f"Replace or delete every {REMOVED} marker before approving.")
    if findings and not confirmed:
        raise NeedsConfirmation(findings)
    if isinstance(row, ChildText):  # kind "about"
        row.approved = text
    else:
        row.approved_text = text
    forget_original(row)
    row.status = ReviewStatus.APPROVED
    row.reviewed_by_id = actor.id
    row.reviewed_at = utcnow()
    record_audit(
        actor,
        "safeguarding.approved",
        f"child_{kind}",
        item_id,
        {"edited": edited_text is not None and text != original, "flags_confirmed": len(findings)},
    )


def approve_coded_updates(now: datetime) -> int:
    """Approve, without a person, the pending updates that carry only milestone codes
    (DonorHub writes every word of them). Free text never is. Returns how many."""
    coded = [
        update
        for update in db.session.scalars(
            select(ChildUpdate).where(
                ChildUpdate.status == ReviewStatus.PENDING, ChildUpdate.original_text.is_(None)
            )
        )
        if update.milestones
    ]
    for update in coded:
        update.status = ReviewStatus.APPROVED
        update.reviewed_at = now
        record_audit(
            None,
            "safeguarding.auto_approved",
            "child_update",
            update.id,
            {"milestones": len(update.milestones)},
        )
    return len(coded)


def reject(actor: User, kind: str, item_id: int, reason: str) -> None:
    if reason not in REJECTION_REASONS:
        raise DomainError("Choose a reason for rejecting.")
    row = _row(kind, item_id)
    if row.status not in OPEN:
        raise NotReviewable("This item was already decided or withdrawn.")
    row.status = ReviewStatus.REJECTED
    if isinstance(row, ChildText):  # kind "about"
        row.approved = None
    else:
        row.approved_text = None
    forget_original(row)
    row.reviewed_by_id = actor.id
    row.reviewed_at = utcnow()
    record_audit(actor, "safeguarding.rejected", f"child_{kind}", item_id, {"reason": reason})
