"""The safeguarding officer's review of child-derived text: nothing reaches a sponsor unseen.

Free text arrives PENDING (the PII guard found nothing) or QUARANTINED (it found something).
An officer approves it as it is, approves an edited version, or rejects it. Flagged spans are
masked on every review screen; seeing them unmasked is a separate, audited action, possible
only while the item waits. The decision erases the partner's original: only its keyed hash
stays (docs/safeguarding.md, "Originals").

No text is ever called clean: a `Reading` says which parts the guard flagged and which words
are not in the known-safe vocabulary, and the officer confirms each of them, one by one,
before approving. An edit must be a rewrite: one that only cuts the flagged parts out, or
leaves a sentence without its object ("Her mother still works in."), is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from flask import current_app
from sqlalchemy import select

from donorhub import guard
from donorhub.accounts.models import User
from donorhub.audit import record_audit
from donorhub.children.models import Child, ChildText, ChildUpdate, ReviewStatus
from donorhub.children.services import HOME_SUBJECT, update_sentences
from donorhub.children.vocab import CATEGORIES, INTERESTS, MILESTONE_SENTENCES, STAGES
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
    """Flagged parts or unrecognised words are not confirmed, each one, by the officer."""

    def __init__(self, missing: list[Check]):
        super().__init__(
            "Confirm each flagged part and each word not recognised, one by one, "
            "or rewrite the text without them."
        )
        self.missing = missing


class ResidueLeft(DomainError):
    """The edit cannot be approved: most often it deletes instead of rewriting, and what is
    left still points at what was cut."""

    def __init__(self, problems: list[str]):
        super().__init__(" ".join(problems))
        self.problems = problems


class NotReviewable(DomainError):
    """The item was decided already, or withdrawn."""


@dataclass(frozen=True)
class Segment:
    text: str
    flagged: bool
    detector: str | None = None
    unknown: bool = False  # a word not in the known-safe vocabulary, shown highlighted


@dataclass(frozen=True)
class Check:
    """One thing the officer confirms having checked before approving. The key is the form
    field's name; it is bound to the exact text, so a tick given for one text never counts
    for another."""

    key: str
    label: str


@dataclass(frozen=True)
class Reading:
    """What the guard made of one text: the parts it flagged as possible identifiers and the
    words it does not recognise (outside the flagged parts, which stay masked)."""

    text: str | None
    findings: list[dict]
    unknown: list[guard.UnknownWord]
    groups: list[guard.UnknownWord]  # neighbouring unknown words, one check each
    fingerprint: str

    @property
    def unknown_words(self) -> list[str]:
        seen: dict[str, str] = {}
        for word in self.unknown:
            seen.setdefault(word.word.casefold(), word.word)
        return list(seen.values())

    @property
    def summary(self) -> str:
        """What was and was not recognised, in words; never "clean", never "no flags"."""
        if not self.text:
            return "No free text to check"
        kinds = sorted({f["detector"].replace("_", " ") for f in self.findings})
        count = len(self.findings)
        flagged = (
            f"{count} possible identifier{'' if count == 1 else 's'} ({', '.join(kinds)})"
            if count
            else "No identifier pattern found"
        )
        words = self.unknown_words
        if not words:
            other = " other" if count else ""
            return f"{flagged}; every{other} word is in the known vocabulary"
        shown = ", ".join(words[:SUMMARY_WORDS])
        more = f" and {len(words) - SUMMARY_WORDS} more" if len(words) > SUMMARY_WORDS else ""
        plural = "" if len(words) == 1 else "s"
        return f"{flagged}; {len(words)} word{plural} not recognised: {shown}{more}"

    @property
    def segments(self) -> list[Segment]:
        return masked_segments(self.text, self.findings, self.unknown)

    @property
    def checks(self) -> list[Check]:
        checks = [
            Check(
                f"flag-{number}-{self.fingerprint}",
                f"I have checked: possible {f['detector'].replace('_', ' ')} ({f['rule']}) "
                f"at “{masked_hint((self.text or '')[f['start'] : f['end']])}”",
            )
            for number, f in enumerate(self.findings, 1)
        ]
        seen: set[str] = set()
        for number, group in enumerate(self.groups, 1):
            if group.word.casefold() in seen:
                continue
            seen.add(group.word.casefold())
            checks.append(
                Check(
                    f"word-{number}-{self.fingerprint}",
                    f"I have checked the words not recognised: “{group.word}”",
                )
            )
        return checks


SUMMARY_WORDS = 8
CHECK_KEY = re.compile(r"(?:flag|word)-[0-9]{1,4}-[0-9a-f]{12}")


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
    reading: Reading | None = field(default=None, compare=False)

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
    original = row.original if isinstance(row, ChildText) else row.original_text
    reading = read_text(kind, row.id, original, stored_findings=list(row.findings))
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
            reading,
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
        reading,
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


def masked_segments(
    text: str | None,
    findings: list[dict],
    unknown: Collection[guard.UnknownWord] = (),
    *,
    revealed: bool = False,
) -> list[Segment]:
    """The text cut into plain, flagged and unknown parts; flagged parts carry no characters
    of the original, only the detector's name (unless `revealed`, for the audited reveal
    page); unknown words are kept, to be highlighted."""
    if not text:
        return []
    segments: list[Segment] = []
    position = 0

    def plain(upto: int) -> None:
        nonlocal position
        for word in unknown:
            if word.start < position or word.end > upto:
                continue
            if word.start > position:
                segments.append(Segment(text[position : word.start], False))
            segments.append(Segment(text[word.start : word.end], False, unknown=True))
            position = word.end
        if upto > position:
            segments.append(Segment(text[position:upto], False))
        position = max(position, upto)

    for finding in sorted(findings, key=lambda f: f["start"]):
        start, end = max(finding["start"], position), finding["end"]
        if end <= start:
            continue
        plain(start)
        segments.append(Segment(text[start:end] if revealed else "", True, finding["detector"]))
        position = end
    plain(len(text))
    return segments


def masked_hint(span: str, limit: int = 16) -> str:
    """A flagged part's shape without its characters ("##### #####", "Xxxx"), so the officer
    can tell one flagged part from another without reading the identifier."""
    shape = "".join(
        "#" if ch.isdigit() else ("X" if ch.isupper() else "x") if ch.isalpha() else ch
        for ch in span
        if ch.isalnum() or ch in " -/.@"
    )
    return shape[:limit] + ("…" if len(shape) > limit else "")


@lru_cache(maxsize=1)
def project_words() -> frozenset[str]:
    """DonorHub's own vocabularies, which the guard cannot know: stages, categories,
    interests and every word of the milestone sentences."""
    words: set[str] = set()
    for code in STAGES | CATEGORIES | INTERESTS | set(MILESTONE_SENTENCES):
        words.update(code.split("_"))
    for sentence in MILESTONE_SENTENCES.values():
        words.update(sentence.split())
    return frozenset(words)


def _fingerprint(kind: str, item_id: int, text: str | None) -> str:
    key = current_app.secret_key
    secret = key if isinstance(key, bytes) else str(key).encode()
    message = f"review-check:{kind}:{item_id}:{text or ''}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:12]


def _scan(text: str | None) -> list[dict]:
    if not text:
        return []
    return [
        {"detector": f.detector, "start": f.start, "end": f.end, "rule": f.rule}
        for f in guard.scan_text(text)
    ]


def read_text(
    kind: str, item_id: int, text: str | None, *, stored_findings: Collection[dict] = ()
) -> Reading:
    """What the guard and the vocabulary make of `text` now, with the findings stored at
    import (for the partner's own text) kept too, should the guard have changed since."""
    findings = {(f["start"], f["end"], f["detector"]): f for f in _scan(text)}
    for stored in stored_findings:
        findings.setdefault((stored["start"], stored["end"], stored["detector"]), stored)
    ordered = sorted(findings.values(), key=lambda f: (f["start"], f["end"]))
    unknown = [
        word
        for word in guard.unknown_words(text or "", project_words())
        if not any(word.start < f["end"] and f["start"] < word.end for f in ordered)
    ]
    return Reading(
        text,
        ordered,
        unknown,
        guard.unknown_word_groups(text or "", unknown),
        _fingerprint(kind, item_id, text),
    )


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


# A clause that ends in one of these before its punctuation has lost what followed them:
# "Her Aadhaar is, please keep it safe." or "Her mother still works in."
_PREPOSITIONS = frozenset(
    "about above across after against along among around at before behind below beneath "
    "beside besides between beyond by despite during for from in inside into near next of "
    "off on onto opposite outside over past per since than through to toward towards under "
    "unlike until upon via with within named".split()
)
_ARTICLES = frozenset("a an the".split())
# "her" is left out: "We are proud of her." ends in it and has lost nothing.
_POSSESSIVES = frozenset("his their my our your its whose".split())
_COPULAS = frozenset("is are was were am be been being".split())
_CONJUNCTIONS = frozenset("and or nor".split())
# "She grew up.", "She has settled in.": a particle of a verb, not a preposition.
_PARTICLES = frozenset("up out down off over around along through by past about across".split())
_PHRASAL_VERBS = frozenset(
    "settle settled settles settling join joined joins joining fit fits fitted fitting "
    "move moved moves moving come came comes coming log logged drop dropped go went goes "
    "carry carried keep kept hold held get got gets getting".split()
)
# "Her family cheered her on.", "They took her in.": a verb, its object, then the particle.
_OBJECT_PRONOUNS = frozenset("her him them it me us you".split())
# "She knows where she comes from." ends in a preposition and has lost nothing.
_WH_WORDS = frozenset("what where who whom which that whoever wherever how".split())
_CLAUSE_END = re.compile(r"\s*(?:[,.;:!?)\u2026\u0964]|[-\u2013\u2014](?=\s)|$)")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def _skeleton(text: str) -> list[str]:
    """The words and numbers of a text, lower case, without punctuation, spacing or
    [removed] markers."""
    return re.findall(r"[^\W_]+", text.replace(REMOVED, " ").casefold())


def _cut(text: str, findings: Collection[dict]) -> str:
    kept, position = [], 0
    for finding in sorted(findings, key=lambda f: f["start"]):
        kept.append(text[position : max(position, finding["start"])])
        position = max(position, finding["end"])
    kept.append(text[position:])
    return " ".join(kept)


def dangling_endings(text: str) -> list[str]:
    """Each clause of `text` that ends in a preposition, article, possessive, copula or
    conjunction, as the officer would recognise it ("… still works in.")."""
    problems = []
    clause_start = 0
    for match in _WORD.finditer(text):
        ending = _CLAUSE_END.match(text, match.end())
        if ending is None:
            continue
        word = match.group().casefold()
        clause = text[clause_start : match.end()]
        clause_start = ending.end()
        words = [w.casefold() for w in _WORD.findall(clause)]
        before = words[-2] if len(words) > 1 else ""
        if word in _ARTICLES or word in _POSSESSIVES or word in _CONJUNCTIONS:
            dangling = True
        elif word in _PREPOSITIONS or word in _COPULAS:
            dangling = not (
                set(words) & _WH_WORDS
                or (word in _PARTICLES and len(words) > 2)
                or (word in ("in", "on") and before in _PHRASAL_VERBS | _OBJECT_PRONOUNS)
            )
        else:
            dangling = False
        if dangling:
            shown = " ".join(_WORD.findall(clause)[-4:])
            problems.append(f"“…{shown}{ending.group().strip()}”")
    return problems


def residue_problems(original: str | None, findings: Collection[dict], edited: str) -> list[str]:
    """Why an edit is a deletion rather than a rewrite, or [] when it is a rewrite."""
    problems = []
    if not edited.strip():
        return ["Write the text a sponsor should read, or reject it if nothing of it can be kept."]
    if original and findings and _skeleton(_cut(original, findings)) == _skeleton(edited):
        problems.append(
            "This edit only cuts the flagged parts out: what is left still points at them. "
            "Rewrite the sentences so they say something else, or reject the text."
        )
    for clause in dangling_endings(edited):
        problems.append(
            f"{clause} ends as if something was cut out after it. Rewrite the sentence so it "
            "is complete without what was removed."
        )
    return problems


def edit_problems(kind: str, item_id: int, edited_text: str) -> list[str]:
    """Why approving `edited_text` would be refused, or [] when it would not be (the checks
    the officer confirms come on top: see `approval_reading`)."""
    row = _row(kind, item_id)
    text = " ".join(edited_text.split())
    if len(text) > (280 if kind == "about" else 600):
        return ["The text is longer than the feed contract allows."]
    if REMOVED in text:
        return [f"Replace or delete every {REMOVED} marker before approving."]
    original = original_text(kind, item_id)
    findings = read_text(kind, item_id, original, stored_findings=list(row.findings)).findings
    return residue_problems(original, findings, text)


def approval_reading(kind: str, item_id: int, edited_text: str | None = None) -> Reading:
    """The reading of the text that approving would publish: the partner's text, or the
    officer's edit of it (spacing normalised, as it would be stored)."""
    row = _row(kind, item_id)
    if edited_text is None:
        return read_text(
            kind, item_id, original_text(kind, item_id), stored_findings=list(row.findings)
        )
    text = " ".join(edited_text.split())
    # An "edit" that is the partner's text unchanged is that text: the findings stored at
    # import, which the guard may no longer make, still need their confirmations.
    same = text == original_text(kind, item_id)
    return read_text(kind, item_id, text, stored_findings=list(row.findings) if same else ())


def approve(
    actor: User,
    kind: str,
    item_id: int,
    *,
    edited_text: str | None = None,
    confirmed: Collection[str] = (),
) -> None:
    """Approve the text as sent, or as edited.

    Every flagged part and every group of unrecognised words of the text being approved needs
    its own confirmation: `confirmed` holds the keys of the `Check`s the officer ticked (see
    `approval_reading(...).checks`).

    :raises ResidueLeft: the edit only deletes, or leaves a sentence without its object.
    :raises NeedsConfirmation: a check of the text is not in `confirmed`.
    :raises NotReviewable: the item is not open.
    """
    row = _row(kind, item_id)
    if row.status not in OPEN:
        raise NotReviewable("This item was already decided or withdrawn.")
    if edited_text is not None:
        problems = edit_problems(kind, item_id, edited_text)
        if problems:
            raise ResidueLeft(problems)
    original = original_text(kind, item_id)
    text = original if edited_text is None else " ".join(edited_text.split())
    reading = approval_reading(kind, item_id, edited_text)
    missing = [check for check in reading.checks if check.key not in confirmed]
    if missing:
        raise NeedsConfirmation(missing)
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
        {
            "edited": edited_text is not None and text != original,
            "flags_confirmed": len(reading.findings),
            "unknown_words_confirmed": len(reading.unknown_words),
        },
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
