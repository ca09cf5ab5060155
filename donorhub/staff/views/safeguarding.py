"""The safeguarding officer's area: the review queue, decisions, and the import history."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from marshmallow import fields, validate
from sqlalchemy import func, select

from donorhub.accounts.models import StaffRole
from donorhub.audit import record_audit
from donorhub.children import review
from donorhub.children.models import Child, ChildRelease, ChildStatus
from donorhub.commit_point import commit_before_refusing
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.feed.models import FeedRun
from donorhub.forms import CheckboxField, FormSchema, load_form
from donorhub.security import staff
from donorhub.staff import bp

OFFICER = StaffRole.SAFEGUARDING_OFFICER


class ApproveSchema(FormSchema):
    """Approve (or preview) a text. Besides these fields, the form carries one checkbox per
    flagged part and per group of unrecognised words, named by `review.Check.key`:
    `approve_schema` adds a field for each such name the form sends."""

    mode = fields.String(required=True, validate=validate.OneOf(["as_sent", "edited"]))
    text = fields.String(load_default=None, validate=validate.Length(max=600))


MAX_CHECKS = 200


def approve_schema() -> ApproveSchema:
    checks = [key for key in request.form if review.CHECK_KEY.fullmatch(key)][:MAX_CHECKS]
    schema = ApproveSchema.from_dict(
        {key: CheckboxField(load_default=False) for key in checks}, name="ApproveWithChecks"
    )
    return schema()  # type: ignore[return-value]


def ticked(data: dict) -> set[str]:
    return {key for key, value in data.items() if review.CHECK_KEY.fullmatch(key) and value}


UNTICKED = "Tick this once you have checked this part."


class RejectSchema(FormSchema):
    reason = fields.String(
        required=True,
        validate=validate.OneOf(list(review.REJECTION_REASONS)),
        error_messages={"required": "Choose a reason for rejecting."},
    )


def load_item(kind: str, item_id: int) -> review.ReviewItem:
    if kind not in review.KINDS:
        abort(404)
    try:
        return review.open_item(current_user, kind, item_id)
    except LookupError:
        abort(404)


@bp.get("/safeguarding")
@staff(OFFICER)
def safeguarding():
    """Items waiting for a decision, quarantined first."""
    items = review.review_queue()
    listed = (
        db.session.scalar(
            select(func.count()).select_from(ChildRelease).where(ChildRelease.is_listed.is_(True))
        )
        or 0
    )
    active = (
        db.session.scalar(
            select(func.count()).select_from(Child).where(Child.status == ChildStatus.ACTIVE)
        )
        or 0
    )
    record_audit(current_user, "safeguarding.queue_viewed", "queue", None, {"items": len(items)})
    return render_template(
        "staff/safeguarding/queue.html", items=items, listed=listed, active=active
    )


def render_review(
    item: review.ReviewItem,
    *,
    errors=None,
    status=200,
    edited_text=None,
    confirmed=frozenset(),
    warnings=(),
):
    """The item page. With `edited_text`, the officer's edit is shown as a sponsor would read
    it, with what the guard makes of it and its own checks to confirm."""
    original = review.original_text(item.kind, item.id)
    reading = item.reading or review.approval_reading(item.kind, item.id)
    masked = review.masked_text(original, reading.findings)
    preview_text = None if reading.findings else original
    preview = review.sponsor_preview(item.kind, item.id, preview_text)
    edited = None
    if edited_text is not None:
        edited_reading = review.approval_reading(item.kind, item.id, edited_text)
        edited = {
            "reading": edited_reading,
            "preview": review.sponsor_preview(item.kind, item.id, edited_reading.text),
        }
    return render_template(
        "staff/safeguarding/review.html",
        item=item,
        reading=reading,
        segments=reading.segments,
        masked=masked if edited_text is None else edited_text,
        preview=preview,
        edited=edited,
        confirmed=confirmed,
        warnings=list(warnings),
        errors=errors or {},
        reasons=review.REJECTION_REASONS,
    ), status


def render_refused_decision(kind: str, item_id: int, **page):
    """The item again, at 422, with why the decision was not taken. The commit point rolls a
    422 back, but every showing of an item to an officer is audited and kept: so what the
    refused decision wrote is dropped here, and the audit row of showing the item again is
    committed before the page answers."""
    db.session.rollback()
    item = load_item(kind, item_id)
    commit_before_refusing()
    return render_review(item, status=422, **page)


@bp.get("/safeguarding/<kind>/<int:item_id>")
@staff(OFFICER)
def review_item(kind: str, item_id: int):
    """One item: the text with flagged parts masked, and what a sponsor would read."""
    return render_review(load_item(kind, item_id))


@bp.get("/safeguarding/<kind>/<int:item_id>/reveal")
@staff(OFFICER)
def reveal_item(kind: str, item_id: int):
    """The text with nothing masked, when a flagged part must be judged. Audited."""
    item = load_item(kind, item_id)
    try:
        text, findings = review.reveal(current_user, kind, item_id)
    except review.NotReviewable as error:
        flash(str(error), "error")
        return redirect(url_for("staff.safeguarding"))
    unknown = item.reading.unknown if item.reading else []
    return render_template(
        "staff/safeguarding/reveal.html",
        item=item,
        text=text,
        findings=findings,
        segments=review.masked_segments(text, findings, unknown, revealed=True),
    )


@bp.post("/safeguarding/<kind>/<int:item_id>/preview")
@staff(OFFICER)
def preview_item(kind: str, item_id: int):
    """The edited text as a sponsor would read it, what the guard makes of it and why it
    could not be approved yet. Decides nothing."""
    item = load_item(kind, item_id)
    data, errors = load_form(approve_schema())
    if errors:
        return render_refused_decision(kind, item_id, errors=errors)
    text = data["text"] or ""
    return render_review(
        item,
        edited_text=text,
        confirmed=ticked(data),
        warnings=review.edit_problems(kind, item_id, text),
    )


@bp.post("/safeguarding/<kind>/<int:item_id>/approve")
@staff(OFFICER)
def approve_item(kind: str, item_id: int):
    """Approve as sent, or as edited, once every check of that text is ticked."""
    item = load_item(kind, item_id)
    data, errors = load_form(approve_schema())
    if errors:
        return render_refused_decision(kind, item_id, errors=errors)
    # "edited" with no text field is an empty edit (refused), never the text as sent.
    edited = (data["text"] or "") if data["mode"] == "edited" else None
    confirmed = ticked(data)
    try:
        review.approve(current_user, kind, item_id, edited_text=edited, confirmed=confirmed)
    except review.NeedsConfirmation as error:
        return render_refused_decision(
            kind,
            item_id,
            edited_text=edited,
            confirmed=confirmed,
            errors={
                f"checks_{data['mode']}": [str(error)],
                **{check.key: [UNTICKED] for check in error.missing},
            },
        )
    except review.ResidueLeft as error:
        return render_refused_decision(
            kind, item_id, edited_text=edited, confirmed=confirmed, errors={"text": error.problems}
        )
    except DomainError as error:
        return render_refused_decision(
            kind, item_id, edited_text=edited, errors={"text": [str(error)]}
        )
    flash(
        f"Approved: {item.subject}'s {'profile text' if kind == 'about' else 'update'}.", "success"
    )
    return redirect(url_for("staff.safeguarding"))


@bp.post("/safeguarding/<kind>/<int:item_id>/reject")
@staff(OFFICER)
def reject_item(kind: str, item_id: int):
    """Reject: no sponsor will ever see this text."""
    item = load_item(kind, item_id)
    data, errors = load_form(RejectSchema())
    if not errors:
        try:
            review.reject(current_user, kind, item_id, data["reason"])
        except DomainError as error:
            errors = {"reason": [str(error)]}
    if errors:
        return render_refused_decision(kind, item_id, errors=errors)
    flash(
        f"Rejected: {item.subject}'s {'profile text' if kind == 'about' else 'update'}.", "success"
    )
    return redirect(url_for("staff.safeguarding"))


@bp.get("/safeguarding/imports")
@staff(OFFICER, StaffRole.ADMIN)
def feed_imports():
    """Every batch the partner sent: counts, and reasons as lines, fields and rules."""
    runs = db.session.scalars(select(FeedRun).order_by(FeedRun.id.desc()).limit(100)).all()
    return render_template("staff/safeguarding/imports.html", runs=runs)


@bp.get("/safeguarding/imports/<int:run_id>")
@staff(OFFICER, StaffRole.ADMIN)
def feed_import(run_id: int):
    """One batch's report."""
    run = db.get_or_404(FeedRun, run_id)
    return render_template(
        "staff/safeguarding/import.html", run=run, show_all=request.args.get("all") == "1"
    )
