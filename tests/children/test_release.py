"""Release checks: every combination shown is shared by K children; small cells hidden."""

from __future__ import annotations

from collections import Counter
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from donorhub.children import vocab
from donorhub.children.release import (
    ChildFacts,
    consent_current,
    release_children,
    suppress_table,
)

TODAY = date(2026, 11, 20)
K = 5

facts = st.builds(
    ChildFacts,
    child_id=st.integers(),
    age_band=st.sampled_from(vocab.AGE_BANDS),
    gender=st.sampled_from(sorted(vocab.GENDERS)),
    region=st.sampled_from(["Maharashtra", "West Bengal", "Delhi"]),
    stage=st.sampled_from(sorted(vocab.STAGES)),
    joined_year=st.integers(2019, 2026),
    interests=st.lists(st.sampled_from(sorted(vocab.INTERESTS)[:8]), max_size=5, unique=True).map(
        tuple
    ),
)


def shown(released) -> tuple:
    return (
        released.age_text,
        released.gender_text,
        released.region_text,
        released.stage_text,
        released.joined_text,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(facts, min_size=0, max_size=60, unique_by=lambda f: f.child_id))
def test_every_released_profile_hides_in_a_crowd_of_k(crowd):
    released = release_children(crowd, K, TODAY)
    cards = Counter((shown(r), r.interests) for r in released.values())
    for child_id, decision in released.items():
        # Every card is identical, interests included, to at least K-1 other cards...
        assert cards[(shown(decision), decision.interests)] >= K
        # ...and says only true things about its child.
        child = next(c for c in crowd if c.child_id == child_id)
        assert set(decision.interests) <= set(child.interests)


def test_identical_children_are_shown_in_full_detail():
    crowd = [
        ChildFacts(n, "12-14", "girl", "Maharashtra", "education", 2024, ("drawing",))
        for n in range(5)
    ]
    released = release_children(crowd, K, TODAY)
    assert len(released) == 5
    decision = released[0]
    assert (
        decision.level,
        decision.age_text,
        decision.region_text,
        decision.joined_text,
        decision.interests,
    ) == (0, "12 to 14", "Maharashtra", "2024", ("drawing",))


def test_a_unique_child_is_generalised_then_withheld():
    crowd = [ChildFacts(n, "12-14", "girl", "Maharashtra", "education", 2024, ()) for n in range(4)]
    crowd.append(ChildFacts(99, "15-17", "girl", "Delhi", "aftercare", 2021, ("chess",)))
    released = release_children(crowd, K, TODAY)
    # Five children exist, but no level of detail makes all five look alike except the
    # coarsest, where every one of them becomes "12 to 17, girl, India".
    assert set(released) == {0, 1, 2, 3, 99}
    assert {shown(r) for r in released.values()} == {("12 to 17", "girl", "India", None, None)}
    assert released[99].interests == ()


def test_fewer_than_k_children_are_never_listed():
    crowd = [ChildFacts(n, "6-8", "boy", "Delhi", "education", 2025, ()) for n in range(4)]
    assert release_children(crowd, K, TODAY) == {}


def test_consent_runs_to_the_end_of_its_quarter():
    assert consent_current("2026-Q4", TODAY)
    assert not consent_current("2026-Q3", TODAY)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["MH-01", "MH-02", "WB-01", "DL-01"]),
        st.fixed_dictionaries(
            {
                m: st.integers(0, 40)
                for m in ["in_school", "in_vocational_training", "reintegrated", "new_arrivals"]
            }
        ),
        min_size=1,
    )
)
def test_suppression_leaves_no_line_with_a_single_hidden_cell(table):
    result = suppress_table(table, K)
    for row, cells in result.items():
        for col, cell in cells.items():
            if table[row][col] < K:
                assert cell.suppressed
    lines = [list(cells.values()) for cells in result.values()]
    for col in next(iter(table.values())):
        lines.append([cells[col] for cells in result.values()])
    for line in lines:
        hidden = sum(cell.suppressed for cell in line)
        assert hidden != 1 or len(line) == 1


def test_suppressed_cells_read_fewer_than_k():
    result = suppress_table({"MH-01": {"a": 3, "b": 12, "c": 20}}, K)
    assert [cell.text(K) for cell in result["MH-01"].values()] == [
        "fewer than 5",
        "fewer than 5",
        "20",
    ]
