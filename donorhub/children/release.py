"""Release checks: consent, k-anonymity by generalisation, and small-cell suppression.

The crowd a child hides in is every card that is shown: every child released is listed
publicly (a fully sponsored one as a "sponsored" card), and every card shown must be
identical, interests included, to at least K-1 other cards. Children are tried at increasing
levels of generalisation; a child who cannot be hidden even at the coarsest level is not
listed at all. Interests are shown only where K cards can show the same ones.

Releases are monotone over time: a child's `floor` is the finest level she was ever shown at,
and she is never shown finer again (nor interests she no longer shows, nor a state once
withheld), so comparing old and new cards teaches nobody more than either card alone.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date

from donorhub.children.periods import parse_quarter, quarter_of

AGE_WIDE = {
    "0-5": "under 12",
    "6-8": "under 12",
    "9-11": "under 12",
    "12-14": "12 to 17",
    "15-17": "12 to 17",
    "18+": "18 or over",
}
AGE_EXACT = {
    "0-5": "5 or under",
    "6-8": "6 to 8",
    "9-11": "9 to 11",
    "12-14": "12 to 14",
    "15-17": "15 to 17",
    "18+": "18 or over",
}
GENDER_TEXT = {"girl": "girl", "boy": "boy", "not_stated": None}
STAGE_TEXT = {
    "sanctuary": "settling in at a safe home",
    "residential_care": "living in a safe home",
    "education": "going to school",
    "vocational_training": "learning a trade",
    "reintegration": "preparing for life beyond the home",
    "aftercare": "in aftercare",
}
STAGE_WIDE = {
    "sanctuary": "in the programme",
    "residential_care": "in the programme",
    "education": "learning",
    "vocational_training": "learning",
    "reintegration": "moving on",
    "aftercare": "moving on",
}


@dataclass(frozen=True)
class ChildFacts:
    """The attributes the release checks look at, for one child."""

    child_id: int
    age_band: str
    gender: str
    region: str
    stage: str
    joined_year: int
    #: The interests she may show: her own, capped by what her earlier cards showed.
    interests: tuple[str, ...]
    #: The finest level she may be shown at (0 for a child never shown).
    floor: int = 0
    #: Her state is never named: it has one safe home, or an earlier card withheld it.
    region_withheld: bool = False


@dataclass(frozen=True)
class Released:
    level: int
    crowd_size: int
    age_text: str | None
    gender_text: str | None
    region_text: str | None
    stage_text: str | None
    joined_text: str | None
    interests: tuple[str, ...]


def _joined(year: int, today: date) -> str:
    return "joined more than a year ago" if today.year - year >= 2 else "joined recently"


def _region(child: ChildFacts) -> str:
    """A state with a single safe home would name the home: such a child's card says India."""
    return "India" if child.region_withheld else child.region


#: Each level maps a child to the tuple sponsors would see; later levels reveal less.
def generalisation_levels(today: date) -> list[Callable[[ChildFacts], tuple]]:
    return [
        lambda c: (
            AGE_EXACT[c.age_band],
            GENDER_TEXT[c.gender],
            _region(c),
            STAGE_TEXT[c.stage],
            str(c.joined_year),
        ),
        lambda c: (
            AGE_EXACT[c.age_band],
            GENDER_TEXT[c.gender],
            _region(c),
            STAGE_TEXT[c.stage],
            _joined(c.joined_year, today),
        ),
        lambda c: (
            AGE_EXACT[c.age_band],
            GENDER_TEXT[c.gender],
            "India",
            STAGE_WIDE[c.stage],
            None,
        ),
        lambda c: (AGE_WIDE[c.age_band], GENDER_TEXT[c.gender], "India", None, None),
        lambda c: (AGE_WIDE[c.age_band], None, "India", None, None),
    ]


def release_children(crowd: Sequence[ChildFacts], k: int, today: date) -> dict[int, Released]:
    """Decide, for every child in the crowd, what may be shown. Absent = not listed.

    The guarantee (tested as a property): every card shown is identical, interests included,
    to at least K-1 other cards. Identical cards, not merely "consistent" ones: with cards at
    mixed levels of detail, a coarse card whose look-alikes all show finer detail could be
    singled out by elimination.

    Levels are applied to a shrinking pool: groups of at least K identical children at the
    finest level are released there; the rest are tried again, coarser; whoever is left after
    the coarsest level is not listed. A child joins the pool only from her `floor` on, so no
    card is ever finer than one she had before.
    """
    released: dict[int, Released] = {}
    pending = list(crowd)
    for level_number, level in enumerate(generalisation_levels(today)):
        groups: dict[tuple, list[ChildFacts]] = defaultdict(list)
        for child in pending:
            if child.floor <= level_number:
                groups[level(child)].append(child)
        for key, members in groups.items():
            if len(members) < k:
                continue
            age, gender, region, stage, joined = key
            for child_id, interests in _split_by_interests(members, (), k).items():
                released[child_id] = Released(
                    level_number, len(members), age, gender, region, stage, joined, interests
                )
        pending = [child for child in pending if child.child_id not in released]
    return released


@dataclass(frozen=True)
class Bounds:
    """What a child's earlier cards showed, which bounds every later card of hers."""

    floor_level: int
    interests_cap: tuple[str, ...]
    region_withheld: bool


def bounded(child: ChildFacts, earlier: Bounds | None, withheld_states: set[str]) -> ChildFacts:
    """The child as the release checks may see her now: never finer than her earlier cards,
    and without her state where the state has a single safe home."""
    withheld = child.region in withheld_states
    if earlier is None:
        return replace(child, floor=0, region_withheld=withheld)
    return replace(
        child,
        interests=tuple(i for i in child.interests if i in earlier.interests_cap),
        floor=earlier.floor_level,
        region_withheld=withheld or earlier.region_withheld,
    )


def bounds_after(shown: Released, earlier: Bounds | None) -> Bounds:
    return Bounds(
        shown.level,
        shown.interests,
        (earlier is not None and earlier.region_withheld) or shown.region_text == "India",
    )


def _split_by_interests(
    members: Sequence[ChildFacts],
    shown: tuple[str, ...],
    k: int,
    excluded: frozenset[str] = frozenset(),
    limit: int = 3,
) -> dict[int, tuple[str, ...]]:
    """Give each member a set of interests to show, such that every distinct set shown is
    shown by at least K members and is true of each of them (a Mondrian-style split)."""
    if len(shown) < limit:
        popularity = Counter(i for m in members for i in set(m.interests) if i not in excluded)
        for interest, holders_count in sorted(popularity.items(), key=lambda p: (-p[1], p[0])):
            others = len(members) - holders_count
            if holders_count >= k and (others == 0 or others >= k):
                holders = [m for m in members if interest in m.interests]
                rest = [m for m in members if interest not in m.interests]
                decided = _split_by_interests(
                    holders, tuple(sorted((*shown, interest))), k, excluded | {interest}, limit
                )
                if rest:
                    decided.update(
                        _split_by_interests(rest, shown, k, excluded | {interest}, limit)
                    )
                return decided
    return {m.child_id: shown for m in members}


def consent_current(expires: str, today: date) -> bool:
    """Consent covers up to and including its expiry quarter."""
    return quarter_of(today) <= parse_quarter(expires)


# Small-cell suppression ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    value: int
    suppressed: bool

    def text(self, k: int) -> str:
        return f"fewer than {k}" if self.suppressed else str(self.value)


def suppress_table(
    table: dict[str, dict[str, int]], k: int, with_totals: bool = True
) -> dict[str, dict[str, Cell]]:
    """Suppress every count below K, then enough others that no total gives one away.

    `table` is rows (e.g. homes) of columns (measures). When totals are published, each row
    and each column with exactly one suppressed cell gets a second one: its smallest other
    cell. This repeats until no line has a single suppressed cell.
    """
    suppressed = {
        (row, col) for row, cols in table.items() for col, value in cols.items() if value < k
    }
    if with_totals:
        changed = True
        while changed:
            changed = False
            for line in _lines(table):
                hidden = [cell for cell in line if cell in suppressed]
                shown = [cell for cell in line if cell not in suppressed]
                if len(hidden) == 1 and shown:
                    smallest = min(shown, key=lambda cell: (table[cell[0]][cell[1]], cell))
                    suppressed.add(smallest)
                    changed = True
    return {
        row: {col: Cell(value, (row, col) in suppressed) for col, value in cols.items()}
        for row, cols in table.items()
    }


def _lines(table: dict[str, dict[str, int]]) -> Iterable[list[tuple[str, str]]]:
    columns: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row, cols in table.items():
        yield [(row, col) for col in cols]
        for col in cols:
            columns[col].append((row, col))
    yield from columns.values()


def column_totals(table: dict[str, dict[str, Cell]], k: int) -> dict[str, str]:
    """Totals over rows. Safe to show once suppress_table has run: every column with a hidden
    cell has at least two, so the total cannot be subtracted down to one of them."""
    totals: dict[str, int] = defaultdict(int)
    for cols in table.values():
        for col, cell in cols.items():
            totals[col] += cell.value
    return {col: (f"fewer than {k}" if total < k else str(total)) for col, total in totals.items()}
