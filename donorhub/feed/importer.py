"""Importing the partner's feed: parse → guard → pseudonymise → upsert (releases are published
on their own schedule, `children.services.publish_releases`).

A batch is one unit of work: the caller (CLI, job) commits once at the end, so a crash or a
kill at any moment leaves the state before the batch or after it. Unique indexes on the
batch id and the file's SHA-256 make a second import of the same batch a no-op.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from donorhub import guard
from donorhub.accounts.models import StaffRole, User, UserRole
from donorhub.children import services as children
from donorhub.children.models import (
    Child,
    ChildStatus,
    ChildUpdate,
    ReviewStatus,
)
from donorhub.extensions import db
from donorhub.feed.models import FeedRun, FeedRunStatus
from donorhub.feed.parse import (
    BatchRejected,
    ChildRecord,
    ExitRecord,
    FeedSettings,
    HomeStatsRecord,
    ParsedFeed,
    UnknownFieldRejected,
    UpdateRecord,
    parse_feed,
)
from donorhub.feed.pseudonyms import AliasPool, KeyedHasher, new_public_token
from donorhub.feed.source import FileFate
from donorhub.mail.services import queue_mail

log = logging.getLogger(__name__)

#: Field names worth naming to staff when a batch carries them; any other unknown key is
#: reported only by position, because a key could itself be an identifier.
KNOWN_LEAK_FIELDS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "surname",
        "full_name",
        "dob",
        "date_of_birth",
        "birthday",
        "age",
        "school",
        "village",
        "district",
        "address",
        "phone",
        "email",
        "photo",
        "image",
        "reason",
        "case_no",
        "case_number",
        "fir",
        "fir_no",
        "aadhaar",
        "religion",
        "caste",
        "father",
        "mother",
        "guardian",
        "health",
        "notes",
        "origin",
        "rescue_date",
        "location",
        "gps",
    }
)
ILLUSTRATIONS = 12


@dataclass
class ImportReport:
    batch: str | None = None
    status: str = "completed"
    reason: str | None = None
    records: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    quarantined: int = 0
    exits: int = 0
    already_imported: bool = False
    problems: list[dict] = field(default_factory=list)

    def problem(self, line: int, field_name: str | None, rule: str, effect: str) -> None:
        self.problems.append({"line": line, "field": field_name, "rule": rule, "effect": effect})


class FeedNotConfigured(RuntimeError):
    """The settings needed to import are missing; the message says which."""


def feed_settings(today: date) -> FeedSettings:
    config = current_app.config
    homes = config["FEED_HOMES"]
    if not config["FEED_PARTNER"] or not homes:
        raise FeedNotConfigured("Set FEED_PARTNER and FEED_HOMES before importing a feed.")
    return FeedSettings(
        partner=config["FEED_PARTNER"],
        homes=frozenset(homes),
        today=today,
        max_bytes=config["FEED_MAX_BYTES"],
        home_regions=homes,
    )


def pseudonym_key() -> str:
    key = current_app.config["FEED_PSEUDONYM_KEY"]
    if not key:
        raise FeedNotConfigured(
            "Set FEED_PSEUDONYM_KEY to a long random secret before importing a feed."
        )
    return key


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def import_batch(
    raw: bytes,
    *,
    source: str,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    file_fate: FileFate = FileFate.NEVER_STORED,
) -> ImportReport:
    """Import one batch in the caller's transaction. Never commits.

    A rejected batch leaves only a FeedRun row saying why (lines, fields, rules; no values)
    and, when fields outside the contract arrived, mail to the safeguarding officers.
    `file_fate` is what the caller does with the batch's file afterwards, so that what staff
    are told about it is true.
    """
    now = now or datetime.now(UTC)
    settings = feed_settings(now.date())
    key = pseudonym_key()
    sha256 = hashlib.sha256(raw).hexdigest()
    if _completed_run(sha256=sha256) is not None:
        return ImportReport(already_imported=True, status="already imported")
    with cycle_collector_paused():
        return _import_batch(raw, source, now, progress, file_fate, settings, key, sha256)


@contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """A batch holds hundreds of thousands of long-lived objects (records, rows) that the
    cycle collector would walk again and again as they pile up: it is paused for the batch.
    Reference counting still frees whatever is dropped; the few cycles a batch leaves wait
    for the next collection after it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _import_batch(
    raw: bytes,
    source: str,
    now: datetime,
    progress: Callable[[int, int], None] | None,
    file_fate: FileFate,
    settings: FeedSettings,
    key: str,
    sha256: str,
) -> ImportReport:
    try:
        parsed = parse_feed(raw, settings)
    except UnknownFieldRejected as error:
        reason = describe_unknown_fields(error, file_fate)
        _record_rejection(settings.partner, None, sha256, source, reason, now)
        alert_safeguarding_officers(reason)
        return ImportReport(status="rejected", reason=reason)
    except BatchRejected as error:
        reason = str(error)[:500]
        _record_rejection(settings.partner, None, sha256, source, reason, now)
        return ImportReport(status="rejected", reason=reason)
    if _completed_run(partner=settings.partner, batch=parsed.header.batch) is not None:
        return ImportReport(
            batch=parsed.header.batch, already_imported=True, status="already imported"
        )
    run = FeedRun(
        partner=settings.partner,
        batch=parsed.header.batch,
        sha256=sha256,
        status=FeedRunStatus.COMPLETED,
        source=source,
        started_at=now,
    )
    db.session.add(run)
    db.session.flush()  # claims the batch: a concurrent import of it now fails here
    report = Importer(parsed, key, settings.partner, now, progress).run()
    for attribute in (
        "records",
        "created",
        "updated",
        "unchanged",
        "rejected",
        "quarantined",
        "exits",
    ):
        setattr(run, attribute, getattr(report, attribute))
    run.report = report.problems[:1000]
    run.finished_at = datetime.now(UTC)
    return report


def reject_oversized(source: str, now: datetime | None = None) -> ImportReport:
    now = now or datetime.now(UTC)
    reason = f"The file is larger than {current_app.config['FEED_MAX_BYTES']} bytes."
    _record_rejection(current_app.config["FEED_PARTNER"], None, "0" * 64, source, reason, now)
    return ImportReport(status="rejected", reason=reason)


def _completed_run(**criteria) -> FeedRun | None:
    query = select(FeedRun).where(FeedRun.status == FeedRunStatus.COMPLETED)
    for name, value in criteria.items():
        query = query.where(getattr(FeedRun, name) == value)
    return db.session.scalars(query).first()


def _record_rejection(
    partner, batch, sha256, source, reason, now, status: FeedRunStatus = FeedRunStatus.REJECTED
) -> None:
    db.session.add(
        FeedRun(
            partner=partner,
            batch=batch,
            sha256=sha256,
            source=source,
            status=status,
            reason=reason[:500],
            started_at=now,
            finished_at=datetime.now(UTC),
        )
    )
    db.session.flush()


def record_failure(raw: bytes, source: str, reason: str, now: datetime | None = None) -> None:
    """A batch the database could not store (a full disk, a lost connection), in the import
    history; `reason` carries no feed content."""
    _record_rejection(
        current_app.config["FEED_PARTNER"],
        None,
        hashlib.sha256(raw).hexdigest(),
        source,
        reason,
        now or datetime.now(UTC),
        FeedRunStatus.FAILED,
    )


def describe_unknown_fields(error: UnknownFieldRejected, file_fate: FileFate) -> str:
    parts = []
    for (line, name), position in zip(error.fields, error.positions, strict=True):
        leaf = name.rsplit(".", 1)[-1]
        label = f"'{name}'" if leaf in KNOWN_LEAK_FIELDS else f"field #{position}"
        parts.append(f"line {line}: {label}")
    shown = "; ".join(parts[:20]) + (f"; and {len(parts) - 20} more" if len(parts) > 20 else "")
    outcome = file_fate.sentence()
    # The file's fate is what staff act on, so it is never the part cut to fit the column.
    room = 500 - len("Fields outside the contract (). ") - len(outcome)
    if len(shown) > room:
        shown = shown[: room - 1] + "…"
    return f"Fields outside the contract ({shown}). {outcome}"


def alert_safeguarding_officers(reason: str) -> None:
    officers = db.session.scalars(
        select(User)
        .join(UserRole)
        .where(UserRole.role == StaffRole.SAFEGUARDING_OFFICER, User.is_disabled.is_(False))
    ).all()
    for officer in officers:
        queue_mail(
            officer.email,
            "feed/batch_rejected",
            subject="A feed batch was rejected: fields outside the contract",
            name=officer.full_name,
            reason=reason,
        )


class Importer:
    """Applies the records of one parsed batch. Children first, so updates can find them.

    Rows this batch creates (children, their `about` texts, aliases, updates) are collected as
    plain rows and stored in bulk, one executemany per table, once the children (then the
    updates) are decided; rows that already exist are loaded up front in a few queries and
    changed as objects, through the same services as before. All in the caller's
    transaction.
    """

    def __init__(
        self,
        parsed: ParsedFeed,
        key: str,
        partner: str,
        now: datetime,
        progress: Callable[[int, int], None] | None,
    ):
        self.parsed = parsed
        self.key = key
        self.partner = partner
        self.now = now
        self.progress = progress or (lambda _done, _total: None)
        self.report = ImportReport(batch=parsed.header.batch)
        self.hasher = KeyedHasher(key, partner)
        self.child_hashes: dict[str, str] = {}
        self.children_by_hash: dict[str, Child] = {}
        self.updates_by_hash: dict[str, ChildUpdate] = {}
        self.update_hashes: dict[str, str] = {}
        self.aliases: AliasPool | None = None
        # Children first seen in this batch: their rows, then (once stored) their ids.
        self.new_children: dict[str, dict] = {}
        self.new_abouts: list[tuple[str, str, list[dict], str]] = []
        self.new_child_ids: dict[str, int] = {}
        self.new_updates: list[dict] = []
        # Children who leave in this very batch: whatever the order of the lines, the exit
        # wins, so none of their words from this batch is ever stored.
        self.exiting = {self._child_hash(r.child) for r in parsed.exits}
        self.done = 0
        self.total = 0

    def run(self) -> ImportReport:
        parsed, report = self.parsed, self.report
        report.records = parsed.header.records
        for error in parsed.rejected:
            report.problem(error.line, error.field, error.rule, "record rejected")
        report.rejected = len(parsed.rejected_lines)
        self._load_existing()
        steps: list[tuple[list[Any], Callable[[Any], None], Callable[[], None] | None]] = [
            (parsed.children, self._apply_child, self._store_new_children),
            (parsed.updates, self._apply_update, self._store_new_updates),
            (parsed.home_stats, self._apply_home_stats, None),
            (parsed.exits, self._apply_exit, None),
        ]
        self.total = sum(len(records) for records, _, _ in steps)
        # Every row this batch touches was loaded above; flushing before each query would
        # only cost time.
        with db.session.no_autoflush:
            for records, apply, store in steps:
                for record in records:
                    apply(record)
                    self._tick()
                if store is not None:
                    store()
        db.session.flush()
        return report

    def _tick(self) -> None:
        self.done += 1
        if self.done % 100 == 0 or self.done == self.total:
            self.progress(self.done, self.total)

    def _hash(self, kind: str, token: str) -> str:
        return self.hasher(kind, token)

    def _child_hash(self, ref: str) -> str:
        """A child's keyed hash, computed once per reference in a batch."""
        found = self.child_hashes.get(ref)
        if found is None:
            found = self.child_hashes[ref] = self._hash("child", ref)
        return found

    def _content_hash(self, kind: str, *parts: object) -> str:
        """Keyed, because the parts include the partner's free text: an unkeyed hash of a
        short text can be confirmed by anyone who guesses it."""
        return self._hash(kind, digest(*parts))

    def _load_existing(self) -> None:
        """Fetch every row this batch may touch in a few queries, not one per record."""
        child_hashes = list(
            {self._child_hash(r.ref) for r in self.parsed.children}
            | {self._child_hash(r.child) for r in self.parsed.updates if r.child}
            | {self._child_hash(r.child) for r in self.parsed.exits}
        )
        for condition in children.one_of(Child.ref_hash, child_hashes):
            for child in db.session.scalars(
                select(Child)
                .where(condition)
                .options(selectinload(Child.about), selectinload(Child.release))
            ):
                self.children_by_hash[child.ref_hash] = child
        self.update_hashes = {r.id: self._hash("update", r.id) for r in self.parsed.updates}
        for condition in children.one_of(
            ChildUpdate.source_hash, list(self.update_hashes.values())
        ):
            for update in db.session.scalars(select(ChildUpdate).where(condition)):
                self.updates_by_hash[update.source_hash] = update

    def _reject(self, line: int, field_name: str | None, rule: str) -> None:
        self.report.problem(line, field_name, rule, "record rejected")
        self.report.rejected += 1

    def _scan(self, text: str, line: int, field_name: str) -> list[dict]:
        """The PII guard's findings on one text; a text with any is quarantined."""
        findings = [finding_dict(f) for f in guard.scan_text(text)]
        if findings:
            self.report.quarantined += 1
            self.report.problem(
                line, field_name, "the PII guard found a possible identifier", "quarantined"
            )
        return findings

    def _apply_child(self, record: ChildRecord) -> None:
        ref_hash = self._child_hash(record.ref)
        content = self._content_hash(
            "child_content",
            record.home,
            record.age_band,
            record.gender,
            record.region,
            record.stage,
            record.joined_year,
            record.interests,
            record.consent.profile,
            record.consent.updates,
            record.consent.basis,
            str(record.consent.expires),
            record.about,
        )
        child = self.children_by_hash.get(ref_hash)
        if child is not None and child.status == ChildStatus.EXITED:
            self._reject(
                record.line,
                "ref",
                "a child who has left the programme cannot return under the same reference",
            )
            return
        if child is not None and child.content_hash == content:
            self.report.unchanged += 1
            return
        facts: dict[str, Any] = {
            "home_code": record.home,
            "age_band": record.age_band,
            "gender": record.gender,
            "region": record.region,
            "stage": record.stage,
            "joined_year": record.joined_year,
            "interests": list(record.interests),
            "consent_profile": record.consent.profile,
            "consent_updates": record.consent.updates,
            "consent_basis": record.consent.basis,
            "consent_expires": str(record.consent.expires),
            "content_hash": content,
        }
        if child is None:
            self._add_child(record, ref_hash, facts)
            return
        self.report.updated += 1
        children.set_child_facts(child, **facts)
        if ref_hash in self.exiting:
            return  # record_exit withdraws any text she had; this batch's is never kept
        self._apply_about(child, record)

    def _add_child(self, record: ChildRecord, ref_hash: str, facts: dict) -> None:
        """A child first seen in this batch: her row (and her text's) wait for the bulk
        insert at the end of the children."""
        if self.aliases is None:
            self.aliases = AliasPool()
        self.new_children[ref_hash] = children.new_child_row(
            ref_hash=ref_hash,
            alias=self.aliases.draw(),
            public_token=new_public_token(),
            illustration=secrets.randbelow(ILLUSTRATIONS) + 1,
            now=self.now,
            facts=facts,
        )
        self.report.created += 1
        if ref_hash in self.exiting or record.about is None:
            return  # she leaves in this batch: none of its words is kept
        text_hash = self._hash("about_text", record.about)
        findings = self._scan(record.about, record.line, "about")
        self.new_abouts.append((ref_hash, record.about, findings, text_hash))

    def _store_new_children(self) -> None:
        self.new_child_ids = children.insert_children(list(self.new_children.values()))
        if self.aliases is not None:
            children.record_aliases(self.aliases.drawn)
        children.insert_about_texts(
            [
                children.new_about_row(
                    self.new_child_ids[ref_hash], text, findings, self.now, text_hash=text_hash
                )
                for ref_hash, text, findings, text_hash in self.new_abouts
            ]
        )

    def _stored_new_child(self, ref_hash: str) -> Child:
        """A child this batch created, as an object, for the rare change that needs one."""
        child = db.session.get(Child, self.new_child_ids[ref_hash])
        if child is None:
            raise RuntimeError("a child inserted by this batch is missing from its transaction")
        self.children_by_hash[ref_hash] = child
        return child

    def _apply_about(self, child: Child, record: ChildRecord) -> None:
        existing = child.about
        if record.about is None:
            children.withdraw_about(child)
            return
        text_hash = self._hash("about_text", record.about)
        # The text itself is gone once decided; its keyed hash says whether this is the
        # same text again (the decision stands) or a new one (it is reviewed afresh).
        if (
            existing is not None
            and existing.original_hash == text_hash
            and existing.status != ReviewStatus.WITHDRAWN
        ):
            return
        findings = self._scan(record.about, record.line, "about")
        children.receive_about(child, record.about, findings, self.now, text_hash=text_hash)

    def _apply_update(self, record: UpdateRecord) -> None:
        child: Child | None = None
        child_hash = child_home = None
        child_id: int | None = None
        if record.child is not None:
            child_hash = self._child_hash(record.child)
            child = self.children_by_hash.get(child_hash)
            new = self.new_children.get(child_hash)
            if child is None and new is None:
                self._reject(
                    record.line, "child", "the update names a child the platform does not know"
                )
                return
            if child is not None and child.status == ChildStatus.EXITED:
                self._reject(record.line, "child", "the child has left the programme")
                return
            if child_hash in self.exiting:
                self._reject(record.line, "child", "the child leaves the programme in this batch")
                return
            if child is not None:
                child_id, child_home = child.id, child.home_code
            elif new is not None:
                child_id, child_home = self.new_child_ids[child_hash], new["home_code"]
        source_hash = self.update_hashes[record.id]
        content = self._content_hash(
            "update_content",
            child_hash,
            record.home,
            str(record.period),
            record.category,
            record.milestones,
            record.text,
        )
        existing = self.updates_by_hash.get(source_hash)
        if existing is not None and existing.content_hash == content:
            self.report.unchanged += 1
            return
        if existing is not None and existing.published_at is not None:
            self._reject(
                record.line, "id", "an update that is already published cannot be replaced"
            )
            return
        findings = self._scan(record.text, record.line, "text") if record.text else []
        text_hash = self._hash("update_text", record.text) if record.text else None
        if existing is None:
            self.report.created += 1
            self.new_updates.append(
                children.new_update_row(
                    source_hash=source_hash,
                    child_id=child_id,
                    home_code=child_home if child_hash is not None else record.home,
                    period=str(record.period),
                    category=record.category,
                    milestones=list(record.milestones),
                    text=record.text,
                    text_hash=text_hash,
                    findings=findings,
                    content_hash=content,
                    now=self.now,
                )
            )
            return
        self.report.updated += 1
        if child is None and child_hash is not None:
            child = self._stored_new_child(child_hash)
        children.receive_update(
            existing,
            source_hash=source_hash,
            child=child,
            home_code=record.home,
            period=str(record.period),
            category=record.category,
            milestones=list(record.milestones),
            text=record.text,
            text_hash=text_hash,
            findings=findings,
            content_hash=content,
            now=self.now,
        )

    def _store_new_updates(self) -> None:
        children.insert_updates(self.new_updates)

    def _apply_home_stats(self, record: HomeStatsRecord) -> None:
        values = {
            "children_in_care": record.children_in_care,
            "in_school": record.in_school,
            "in_vocational_training": record.in_vocational_training,
            "reintegrated": record.reintegrated,
            "new_arrivals": record.new_arrivals,
        }
        outcome = children.store_home_stats(record.home, str(record.period), values)
        setattr(self.report, outcome, getattr(self.report, outcome) + 1)

    def _apply_exit(self, record: ExitRecord) -> None:
        ref_hash = self._child_hash(record.child)
        child = self.children_by_hash.get(ref_hash)
        if child is None and ref_hash in self.new_child_ids:
            child = self._stored_new_child(ref_hash)
        if child is None:
            self._reject(record.line, "child", "the exit names a child the platform does not know")
            return
        if child.status == ChildStatus.EXITED:
            self.report.unchanged += 1
            return
        children.record_exit(child, str(record.period), self.now)
        self.report.exits += 1


def finding_dict(finding: guard.Finding) -> dict:
    return {
        "detector": finding.detector,
        "start": finding.start,
        "end": finding.end,
        "rule": finding.rule,
    }
