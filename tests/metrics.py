"""Figures the tests report (security-test-plan.md): printed at the end, saved to reports/.

Under pytest-xdist every worker process has its own METRICS; each hands its figures to the
controller when it finishes (tests/conftest.py), which merges them with `merge` and prints
and saves the whole set once. A figure that adds up over several tests (pages audited by
axe, say) is a `tally`, so that the parts counted on different workers add up too.
"""

from __future__ import annotations

import json
from pathlib import Path


class Metrics(dict):
    def __init__(self) -> None:
        super().__init__()
        self.tallies: dict[str, dict[str, int]] = {}

    def report(self, name: str, value) -> None:
        self[name] = value

    def tally(self, name: str, **counts: int) -> None:
        """Add `counts` to the running totals of `name`, shown as "a / b / c" in the order
        the parts were first given."""
        totals = self.tallies.setdefault(name, dict.fromkeys(counts, 0))
        for part, count in counts.items():
            totals[part] = totals.get(part, 0) + count
        self[name] = " / ".join(str(count) for count in totals.values())

    def export(self) -> str:
        """This process's figures as JSON, for the controller (`merge`)."""
        return json.dumps(
            {
                "figures": {
                    name: value for name, value in self.items() if name not in self.tallies
                },
                "tallies": self.tallies,
            },
            default=str,
        )

    def merge(self, exported: str) -> None:
        data = json.loads(exported)
        self.update(data["figures"])
        for name, counts in data["tallies"].items():
            self.tally(name, **counts)

    def dump(self) -> None:
        path = Path(__file__).resolve().parent.parent / "reports" / "security-metrics.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(self, indent=2, sort_keys=True, default=str))


METRICS = Metrics()
