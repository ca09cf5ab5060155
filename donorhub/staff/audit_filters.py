"""Filters of the audit log page: actor, action prefix, subject, date range."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from marshmallow import EXCLUDE, Schema, fields, pre_load, validate
from sqlalchemy import select

from donorhub.audit import AuditEvent
from donorhub.extensions import db

#: Action prefixes offered as quick filters ("safeguarding views" is what officers check).
ACTION_GROUPS = {"": "All", "child.": "Safeguarding data viewed", "export.": "Exports",
                 "donor.": "Donors", "donation.": "Gifts and refunds",
                 "campaign.": "Campaigns", "staff.": "Staff accounts", "plan.": "Plans",
                 "payment.": "Payments", "rate.": "Exchange rates"}


class AuditFilterSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    actor = fields.Integer(load_default=None, allow_none=True)
    action = fields.String(load_default="", validate=validate.Length(max=64))
    subject_type = fields.String(load_default="", validate=validate.Length(max=32))
    subject_id = fields.Integer(load_default=None, allow_none=True)
    date_from = fields.Date(load_default=None, allow_none=True)
    date_to = fields.Date(load_default=None, allow_none=True)

    @pre_load
    def blanks_and_junk(self, data, **kwargs):
        """Drop empty or unreadable values: a filter page never errors, it just widens."""
        cleaned = {}
        for key in ("actor", "subject_id"):
            value = data.get(key, "")
            if value and str(value).isdigit() and len(str(value)) < 10:
                cleaned[key] = value
        for key in ("date_from", "date_to"):
            value = data.get(key, "")
            try:
                datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
                cleaned[key] = value
            except (TypeError, ValueError):
                pass
        for key in ("action", "subject_type"):
            value = str(data.get(key, ""))[:32]
            if value.replace(".", "").replace("_", "").isalnum():
                cleaned[key] = value
        return cleaned


def filtered_events(f: dict, limit: int = 200) -> list[AuditEvent]:
    query = select(AuditEvent)
    if f.get("actor") is not None:
        query = query.where(AuditEvent.actor_id == f["actor"])
    if f.get("action"):
        query = query.where(AuditEvent.action.startswith(f["action"], autoescape=True))
    if f.get("subject_type"):
        query = query.where(AuditEvent.subject_type == f["subject_type"])
    if f.get("subject_id") is not None:
        query = query.where(AuditEvent.subject_id == f["subject_id"])
    if f.get("date_from"):
        query = query.where(AuditEvent.at >= datetime.combine(f["date_from"], time.min,
                                                              tzinfo=UTC))
    if f.get("date_to"):
        query = query.where(AuditEvent.at < datetime.combine(
            f["date_to"] + timedelta(days=1), time.min, tzinfo=UTC))
    return list(db.session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))
