"""Build feed batches (JSON Lines bytes) for tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count

_numbers = count(1)

#: Inside 2026-Q4, so the builders' 2026-Q3 periods are in the past.
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

#: Tables an import writes; the audit log and outbox are not touched by it.
FEED_TABLES = (
    "children",
    "child_texts",
    "child_updates",
    "child_releases",
    "home_stats",
    "alias_uses",
    "feed_runs",
    "exit_notices",
)


def child(ref: str | None = None, **overrides) -> dict:
    record = {
        "type": "child",
        "ref": ref or f"c-{next(_numbers):010d}",
        "home": "MH-02",
        "age_band": "12-14",
        "gender": "girl",
        "region": "Maharashtra",
        "stage": "education",
        "joined_year": 2024,
        "interests": ["drawing"],
        "consent": {
            "profile": True,
            "updates": True,
            "basis": "guardian_and_child",
            "expires": "2027-Q2",
        },
    }
    record.update(overrides)
    return record


def update(
    child_ref: str | None = None, *, home: str | None = None, uid: str | None = None, **overrides
) -> dict:
    record = {
        "type": "update",
        "id": uid or f"u-{next(_numbers):08d}",
        "period": "2026-Q3",
        "category": "education",
        "milestones": ["passed_term_exams"],
    }
    if home is not None:
        record["home"] = home
    else:
        record["child"] = child_ref
    record.update(overrides)
    return record


def home_stats(home="MH-02", period="2026-Q3", **counts) -> dict:
    values = {
        "children_in_care": 37,
        "in_school": 30,
        "in_vocational_training": 5,
        "reintegrated": 4,
        "new_arrivals": 3,
    }
    values.update(counts)
    return {"type": "home_stats", "home": home, "period": period, **values}


def exit_record(child_ref: str, period="2026-Q3") -> dict:
    return {"type": "exit", "child": child_ref, "period": period}


@dataclass
class Batch:
    records: list[dict] = field(default_factory=list)
    batch: str = field(default_factory=lambda: f"b-{next(_numbers):06d}")
    partner: str = "mumbai-safe-homes"
    generated: str = "2026-10-02T06:00:00Z"

    def add(self, *records: dict) -> Batch:
        self.records.extend(records)
        return self

    def bytes(self) -> bytes:
        header = {
            "type": "header",
            "feed_version": 1,
            "partner": self.partner,
            "batch": self.batch,
            "generated": self.generated,
            "records": len(self.records),
        }
        lines = [json.dumps(header)] + [json.dumps(r, ensure_ascii=False) for r in self.records]
        return ("\n".join(lines) + "\n").encode()


def crowd(size: int, **overrides) -> list[dict]:
    """`size` children who look exactly alike, so the release checks can list them."""
    return [child(**overrides) for _ in range(size)]
