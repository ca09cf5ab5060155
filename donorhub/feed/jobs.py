"""Scheduled feed work, and the import loop shared by the job and `flask feed import`.

Each batch is its own unit of work: committed whole, then its file is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from flask import current_app

from donorhub.database import unit_of_work
from donorhub.extensions import db
from donorhub.feed import services
from donorhub.feed.source import DropDirectorySource, FeedSource, HttpsSource
from donorhub.jobs.registry import JobSpec

log = logging.getLogger(__name__)


def configured_source() -> FeedSource | None:
    config = current_app.config
    if config["FEED_URL"]:
        return HttpsSource(config["FEED_URL"], config["FEED_TOKEN"],
                           config["FEED_TIMEOUT_SECONDS"], config["FEED_MAX_BYTES"])
    if config["FEED_DIR"]:
        return DropDirectorySource(Path(config["FEED_DIR"]), config["FEED_MAX_BYTES"])
    return None


def run_import(source: FeedSource, *, dry_run: bool = False, now: datetime | None = None,
               progress: Callable[[int, int], None] | None = None,
               ) -> list[tuple[str, services.ImportReport]]:
    """Import every batch the source has, one transaction each."""
    results = []
    for feed_file in source.batches():
        try:
            if feed_file.oversized:
                report = services.reject_oversized(source.label, now)
            else:
                report = services.import_batch(feed_file.raw, source=source.label, now=now,
                                               progress=progress)
            if dry_run:
                db.session.rollback()
            else:
                db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
        if not dry_run:
            feed_file.discard()
        # "created" is a LogRecord attribute, hence the prefixed names.
        log.info("feed batch processed", extra={
            "status": report.status, "n_created": report.created, "n_updated": report.updated,
            "n_unchanged": report.unchanged, "n_rejected": report.rejected,
            "n_quarantined": report.quarantined, "n_exits": report.exits, "dry_run": dry_run})
        results.append((feed_file.name, report))
    return results


def import_feed() -> str:
    """Import whatever the partner has delivered."""
    source = configured_source()
    if source is None:
        return "no feed source configured"
    results = run_import(source)
    return f"{len(results)} batch(es): " + ", ".join(r.status for _, r in results)


def refresh_releases() -> str:
    """Re-run the release checks daily, so consent that expires hides a child on time."""
    with unit_of_work():
        listed = services.refresh_releases(datetime.now(UTC).date())
    return f"{listed} children listed"


JOBS = [
    JobSpec(name="import_feed", func=import_feed,
            trigger=lambda: {"trigger": "interval",
                             "minutes": current_app.config["FEED_IMPORT_MINUTES"]},
            description="Import the partner's feed from the drop directory or HTTPS"),
    JobSpec(name="refresh_releases", func=refresh_releases,
            trigger=lambda: {"trigger": "cron", "hour": 2, "minute": 15},
            description="Re-run the release checks (consent expiry) every night"),
]
