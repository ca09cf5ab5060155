"""The record of every feed run: what each batch the partner sent became.

The child data a batch writes lives in donorhub/children/models.py.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from donorhub.children.models import enum_column
from donorhub.database import utcnow
from donorhub.extensions import Model


class FeedRunStatus(StrEnum):
    COMPLETED = "completed"
    REJECTED = "rejected"
    #: The database could not store the batch (e.g. its disk was full); nothing of it was
    #: kept and the same batch may be sent or imported again.
    FAILED = "failed"


class FeedRun(Model):
    """One batch the partner sent, and what became of it.

    The report names lines, fields and rules, never a value from the feed.
    """

    __tablename__ = "feed_runs"
    __table_args__ = (
        # A batch is imported once; a rejected one may be fixed and sent again.
        Index(
            "uq_feed_runs_completed_batch",
            "partner",
            "batch",
            unique=True,
            sqlite_where=text("status = 'completed'"),
            postgresql_where=text("status = 'completed'"),
        ),
        Index(
            "uq_feed_runs_completed_sha256",
            "sha256",
            unique=True,
            sqlite_where=text("status = 'completed'"),
            postgresql_where=text("status = 'completed'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    partner: Mapped[str] = mapped_column(String(64))
    #: The partner's batch id when the header could be read; a file's bytes are never kept.
    batch: Mapped[str | None] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[FeedRunStatus] = mapped_column(enum_column(FeedRunStatus))
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(500))
    records: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    quarantined: Mapped[int] = mapped_column(default=0)
    exits: Mapped[int] = mapped_column(default=0)
    report: Mapped[list] = mapped_column(JSON, default=list)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
