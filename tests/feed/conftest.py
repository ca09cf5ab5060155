"""Feed fixtures: importing batches the way the CLI and the job do, one commit each."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from donorhub.extensions import db
from donorhub.feed import importer

#: Inside 2026-Q4, so the builders' 2026-Q3 periods are in the past.
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def import_feed(app):
    def run(batch, now=NOW, source="test"):
        raw = batch if isinstance(batch, bytes) else batch.bytes()
        with app.app_context():
            report = importer.import_batch(raw, source=source, now=now)
            db.session.commit()
            return report

    return run
