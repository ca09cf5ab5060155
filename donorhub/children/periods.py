"""Quarters, the finest unit of time the feed may carry ("Time is coarse", DESIGN.md §3)."""

from __future__ import annotations

import re
from datetime import date
from typing import NamedTuple

# ASCII digits only: `\d` would also accept other scripts' digits (e.g. Devanagari).
_QUARTER_RE = re.compile(r"([0-9]{4})-Q([1-4])")

# The earliest year the feed may mention. The programme has no records from before it, so an
# earlier year is a data-entry error (or a birth year in the wrong field).
EARLIEST_YEAR = 1990

_MONTHS = {
    1: "January to March",
    2: "April to June",
    3: "July to September",
    4: "October to December",
}


class Quarter(NamedTuple):
    """A calendar quarter. Tuples compare in order, so quarters do too."""

    year: int
    quarter: int

    def __str__(self) -> str:
        return f"{self.year}-Q{self.quarter}"

    def label(self) -> str:
        """How people read a quarter: "July to September 2026"."""
        return f"{_MONTHS[self.quarter]} {self.year}"


def parse_quarter(text: str) -> Quarter:
    """Parse "YYYY-Qn"; raise ValueError (without echoing the text) if it is not one."""
    match = _QUARTER_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError("not a quarter of the form YYYY-Qn")
    return Quarter(int(match.group(1)), int(match.group(2)))


def period_label(period: str) -> str:
    """The label of a stored period ("2026-Q3" -> "July to September 2026")."""
    return parse_quarter(period).label()


def quarter_of(day: date) -> Quarter:
    return Quarter(day.year, (day.month - 1) // 3 + 1)
