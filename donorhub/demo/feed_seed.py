"""Demo child data: import the committed demo feed, then approve what a careful safeguarding
officer would without a second look (nothing flagged, every word known), leaving the
quarantined items, and any text with a word not recognised, for a newcomer to review."""

from __future__ import annotations

from pathlib import Path

from flask import current_app

from donorhub.accounts.services import find_user_by_email
from donorhub.children import review
from donorhub.children import services as children
from donorhub.children.models import ReviewStatus
from donorhub.database import unit_of_work, utcnow
from donorhub.feed.jobs import run_import
from donorhub.feed.source import DropDirectorySource

DEMO_FEED = Path(__file__).resolve().parent / "feed"
DEMO_OFFICER = "safeguarding@demo.donorhub.invalid"


def seed_feed() -> str:
    source = DropDirectorySource(
        DEMO_FEED, current_app.config["FEED_MAX_BYTES"], label="demo", delete_processed=False
    )
    results = run_import(source)
    officer = find_user_by_email(DEMO_OFFICER)
    approved = 0
    with unit_of_work():
        for item in review.review_queue():
            nothing_to_check = item.reading is None or not item.reading.checks
            if item.status == ReviewStatus.PENDING and officer is not None and nothing_to_check:
                review.approve(officer, item.kind, item.id)
                approved += 1
        # A demo cannot wait for Monday: publish the releases as the schedule would.
        shown = children.publish_releases(utcnow())
    statuses = ", ".join(report.status for _, report in results)
    return (
        f"demo feed: {len(results)} batches ({statuses}); {approved} items approved; "
        f"{shown} cards published"
    )
