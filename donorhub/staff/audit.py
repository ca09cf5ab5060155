"""Writing to the audit log: any feature records staff actions through this one function."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from donorhub.extensions import db
from donorhub.staff.models import AuditEvent

if TYPE_CHECKING:
    from donorhub.accounts.models import User

_ALLOWED_DETAIL_TYPES = (int, bool, type(None))


def record_audit(actor: User | None, action: str, subject_type: str, subject_id: int | None,
                 detail: dict[str, Any]) -> AuditEvent:
    """Append one audit row in the caller's transaction.

    Detail values are limited to numbers, booleans and short codes, so a careless caller
    cannot copy personal data or child data into the log.
    """
    for key, value in detail.items():
        if isinstance(value, str):
            if len(value) > 64 or not value.replace("_", "").replace("-", "").replace(
                    ".", "").isalnum():
                raise ValueError(f"audit detail {key!r} must be a short code")
        elif not isinstance(value, _ALLOWED_DETAIL_TYPES):
            raise ValueError(f"audit detail {key!r} must be a number, boolean or code")
    event = AuditEvent(actor_id=actor.id if actor is not None else None, action=action,
                       subject_type=subject_type, subject_id=subject_id, detail=detail)
    db.session.add(event)
    return event
