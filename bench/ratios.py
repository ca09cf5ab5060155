"""What every benchmark hands to `make bench` / `make bench-full` (bench/run.py): ratios
measured in one run against a baseline measured in the same run, each with its goal.

A benchmark module offers

    def measure(quick: bool) -> list[Ratio]: ...

`quick` is the `make bench` size (the whole quick table stays under 5 minutes); otherwise
the full size the goal is stated for (`make bench-full`). It raises (or returns a Ratio with
ok=False and the reason in `detail`) when the run itself is wrong: anything lost, counted
twice, a different figure from the hand-written query, an unexpected status.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Ratio:
    #: What is measured, e.g. "home page, 1,000,000 gifts / none".
    name: str
    #: measured / baseline, both from the same run.
    value: float
    #: The goal as a bound on `value`: at least (`at_least=True`) or at most.
    goal: float
    at_least: bool = True
    #: The two raw figures and their unit, e.g. "412 req/s vs 455 req/s".
    detail: str = ""
    #: False when the run found a wrong figure, whatever the ratio.
    correct: bool = True

    @property
    def passed(self) -> bool:
        meets = self.value >= self.goal if self.at_least else self.value <= self.goal
        return self.correct and meets

    def as_json(self) -> dict:
        return {**asdict(self), "passed": self.passed}
