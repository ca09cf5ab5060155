"""Scheduled feed work, and the import loop shared by the job and `flask feed import`.

Each batch is its own unit of work: committed whole, then its file is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from donorhub.extensions import db
from donorhub.feed import importer
from donorhub.feed.source import DropDirectorySource, FeedSource, HttpsSource
from donorhub.jobs.registry import JobSpec

log = logging.getLogger(__name__)


def configured_source() -> FeedSource | None:
    config = current_app.config
    if config["FEED_URL"]:
        return HttpsSource(
            config["FEED_URL"],
            config["FEED_TOKEN"],
            config["FEED_TIMEOUT_SECONDS"],
            config["FEED_MAX_BYTES"],
        )
    if config["FEED_DIR"]:
        return DropDirectorySource(Path(config["FEED_DIR"]), config["FEED_MAX_BYTES"])
    return None


class ImportFailed(Exception):
    """The database could not store a batch; nothing of it was kept. The message is one
    sentence for the operator and carries no feed content."""


def storage_failure(error: SQLAlchemyError) -> str:
    """Why the database refused the batch, in words an operator can act on (no values)."""
    original = getattr(error, "orig", None)
    # SQLite says "database or disk is full"; PostgreSQL "could not extend file ...: No space
    # left on device" (53100), or, for a new connection, "could not write init file".
    if getattr(original, "sqlstate", None) == "53100" or any(
        words in str(original)
        for words in ("database or disk is full", "No space left on device", "could not write")
    ):
        return (
            "The import failed because the database could not write to its disk (most "
            "likely it is full); nothing of the batch was imported, so free some space "
            "and run the import again."
        )
    return (
        f"The import failed because the database refused to store the batch "
        f"({type(original or error).__name__}); nothing of it was imported."
    )


def _record_failure(label: str, feed_file, reason: str, now: datetime | None) -> bool:
    """Write the failure to the import history in a transaction of its own; on a full disk
    even that row may not fit, and then the log line is the only record."""
    try:
        importer.record_failure(feed_file.raw, label, reason, now)
        db.session.commit()
        return True
    except SQLAlchemyError:
        db.session.rollback()
        return False


def run_import(
    source: FeedSource,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[str, importer.ImportReport]]:
    """Import every batch the source has, one transaction each."""
    results = []
    for feed_file in source.batches():
        try:
            if feed_file.oversized:
                report = importer.reject_oversized(source.label, now)
            else:
                report = importer.import_batch(
                    feed_file.raw,
                    source=source.label,
                    now=now,
                    progress=progress,
                    file_fate=feed_file.fate(dry_run),
                )
            if dry_run:
                db.session.rollback()
            else:
                db.session.commit()
        except SQLAlchemyError as error:
            # A full disk, a lost connection: the batch is rolled back whole and its file
            # kept (not discarded) for the next run. The error's text stays out of the
            # message: the operator needs what to do, the log has the error class.
            db.session.rollback()
            reason = storage_failure(error)
            recorded = not dry_run and _record_failure(source.label, feed_file, reason, now)
            log.error(
                "feed batch failed",
                extra={  # no traceback: it would quote SQL
                    "error": type(getattr(error, "orig", None) or error).__name__,
                    "recorded": recorded,
                },
            )
            raise ImportFailed(reason) from None
        except BaseException:
            db.session.rollback()
            raise
        if not dry_run:
            feed_file.discard()
        # "created" is a LogRecord attribute, hence the prefixed names.
        log.info(
            "feed batch processed",
            extra={
                "status": report.status,
                "n_created": report.created,
                "n_updated": report.updated,
                "n_unchanged": report.unchanged,
                "n_rejected": report.rejected,
                "n_quarantined": report.quarantined,
                "n_exits": report.exits,
                "dry_run": dry_run,
            },
        )
        results.append((feed_file.name, report))
    return results


def import_feed() -> str:
    """Import whatever the partner has delivered."""
    source = configured_source()
    if source is None:
        return "no feed source configured"
    results = run_import(source)
    return f"{len(results)} batch(es): " + ", ".join(r.status for _, r in results)


JOBS = [
    JobSpec(
        name="import_feed",
        func=import_feed,
        trigger=lambda: {
            "trigger": "interval",
            "minutes": current_app.config["FEED_IMPORT_MINUTES"],
        },
        description="Import the partner's feed from the drop directory or HTTPS",
    ),
]
