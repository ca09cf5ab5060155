"""Figures the tests report (security-test-plan.md): printed at the end, saved to reports/."""

from __future__ import annotations

import json
from pathlib import Path


class Metrics(dict):
    def report(self, name: str, value) -> None:
        self[name] = value

    def dump(self) -> None:
        path = Path(__file__).resolve().parent.parent / "reports" / "security-metrics.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(self, indent=2, sort_keys=True, default=str))


METRICS = Metrics()
