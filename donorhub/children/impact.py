"""Programme impact for the public: home statistics of the latest quarter, small cells hidden."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select

from donorhub.children.models import HomeStat
from donorhub.children.periods import period_label
from donorhub.children.release import Cell, column_totals, suppress_table
from donorhub.extensions import db

MEASURES = {
    "children_in_care": "Children in care",
    "in_school": "In school",
    "in_vocational_training": "Learning a trade",
    "reintegrated": "Moved on safely",
    "new_arrivals": "Newly arrived",
}


@dataclass(frozen=True)
class ImpactTable:
    period: str
    k: int
    rows: list[tuple[str, dict[str, Cell]]]
    totals: dict[str, str]

    @property
    def period_label(self) -> str:
        return period_label(self.period)


def latest_impact() -> ImpactTable | None:
    """The latest quarter's counts per home, labelled by state only, with small cells hidden
    (and enough others that the totals cannot reveal them)."""
    period = db.session.scalar(select(func.max(HomeStat.period)))
    if period is None:
        return None
    k = current_app.config["RELEASE_K"]
    homes = current_app.config["FEED_HOMES"]
    stats = db.session.scalars(
        select(HomeStat).where(HomeStat.period == period).order_by(HomeStat.home_code)
    ).all()
    labels: dict[str, str] = {}
    counter: dict[str, int] = {}
    for stat in stats:
        region = homes.get(stat.home_code, "India")
        counter[region] = counter.get(region, 0) + 1
        # Never the home's code or name: "A safe home in Maharashtra (2)".
        labels[stat.home_code] = f"A safe home in {region}" + (
            f" ({counter[region]})"
            if sum(homes.get(s.home_code) == region for s in stats) > 1
            else ""
        )
    table = {labels[s.home_code]: {m: getattr(s, m) for m in MEASURES} for s in stats}
    suppressed = suppress_table(table, k)
    return ImpactTable(period, k, list(suppressed.items()), column_totals(suppressed, k))
