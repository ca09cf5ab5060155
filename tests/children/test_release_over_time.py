"""Releases over time: after any sequence of arrivals, sponsorships, exits, changes of a
child's facts and publications, every class of identical cards shown has at least K cards,
no card is ever finer than an earlier card of the same child, and a state with a single
safe home is never shown."""

from __future__ import annotations

from collections import Counter
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from donorhub.children import vocab
from donorhub.children.release import (
    Bounds,
    ChildFacts,
    Released,
    bounded,
    bounds_after,
    release_children,
)

TODAY = date(2026, 11, 23)
K = 5
SINGLE_HOME = {"Delhi"}

facts = st.builds(
    ChildFacts,
    child_id=st.just(0),
    age_band=st.sampled_from(vocab.AGE_BANDS[:4]),
    gender=st.sampled_from(["girl", "boy"]),
    region=st.sampled_from(["Maharashtra", "Delhi"]),
    stage=st.sampled_from(["education", "residential_care", "aftercare"]),
    joined_year=st.integers(2023, 2026),
    interests=st.lists(st.sampled_from(["drawing", "cricket", "music"]), unique=True).map(tuple),
)
operation = st.one_of(
    st.tuples(st.just("arrive"), st.lists(facts, min_size=1, max_size=12)),
    st.tuples(st.just("sponsor"), st.integers(0, 10_000)),
    st.tuples(st.just("leave"), st.integers(0, 10_000)),
    st.tuples(st.just("older"), st.integers(0, 10_000)),
    st.tuples(st.just("publish"), st.just(None)),
)


def card(shown: Released) -> tuple:
    return (
        shown.age_text,
        shown.gender_text,
        shown.region_text,
        shown.stage_text,
        shown.joined_text,
        shown.interests,
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, max_size=25))
def test_shown_cards_stay_k_anonymous_and_never_become_finer(operations):
    children: dict[int, ChildFacts] = {}
    left: set[int] = set()
    sponsored: set[int] = set()  # sponsored children stay in the crowd and on the listing
    bounds: dict[int, Bounds] = {}
    shown: dict[int, Released] = {}
    history: dict[int, list[Released]] = {}

    def pick(n: int) -> int | None:
        active = sorted(set(children) - left)
        return active[n % len(active)] if active else None

    for kind, value in operations + [("publish", None)]:
        if kind == "arrive":
            for facts_of_one in value:
                child_id = len(children)
                children[child_id] = ChildFacts(**{**facts_of_one.__dict__, "child_id": child_id})
        elif kind in ("sponsor", "leave", "older"):
            child_id = pick(value)
            if child_id is None:
                continue
            if kind == "sponsor":
                sponsored.add(child_id)
            elif kind == "leave":
                left.add(child_id)
            else:
                now = children[child_id]
                bands = vocab.AGE_BANDS
                older = bands[min(bands.index(now.age_band) + 1, len(bands) - 1)]
                children[child_id] = ChildFacts(**{**now.__dict__, "age_band": older})
            # Between publications nothing shown changes: the shown cards stand as they are.
        else:
            crowd = [
                bounded(children[c], bounds.get(c), SINGLE_HOME)
                for c in sorted(set(children) - left)
            ]
            shown = release_children(crowd, K, TODAY)
            for child_id, decision in shown.items():
                bounds[child_id] = bounds_after(decision, bounds.get(child_id))
                history.setdefault(child_id, []).append(decision)
            classes = Counter(card(s) for s in shown.values())
            assert all(size >= K for size in classes.values()), classes
            assert not set(shown) & left
            for child_id, decision in shown.items():
                assert decision.region_text not in SINGLE_HOME
                assert set(decision.interests) <= set(children[child_id].interests)
                for earlier in history[child_id][:-1]:
                    assert decision.level >= earlier.level
                    assert set(decision.interests) <= set(earlier.interests)
                    if earlier.region_text in ("India", None):
                        assert decision.region_text in ("India", None)


def test_look_alikes_of_a_child_who_left_are_coarsened_never_refined():
    maharashtra = [
        ChildFacts(n, "12-14", "girl", "Maharashtra", "education", 2024, ()) for n in range(5)
    ]
    others = [ChildFacts(10 + n, "12-14", "girl", "Delhi", "education", 2024, ()) for n in range(5)]
    first = release_children(
        [bounded(c, None, SINGLE_HOME) for c in maharashtra + others], K, TODAY
    )
    assert {first[n].region_text for n in range(5)} == {"Maharashtra"}
    assert {first[10 + n].region_text for n in range(5)} == {"India"}  # Delhi has one home
    bounds = {c: bounds_after(r, None) for c, r in first.items()}
    # One of the five in Maharashtra leaves: the other four cannot stay as they were.
    crowd = [bounded(c, bounds[c.child_id], SINGLE_HOME) for c in maharashtra[1:] + others]
    second = release_children(crowd, K, TODAY)
    for child_id, decision in second.items():
        assert decision.level >= first[child_id].level
    # Four cannot stay "Maharashtra", and the five from Delhi were released finer, so the
    # four are withheld rather than shown as a class of four.
    assert not set(second) & {1, 2, 3, 4}
    assert {second[10 + n].level for n in range(5)} == {0}
    # A fifth look-alike arrives: the four come back, no finer than they were.
    bounds = {c: bounds_after(r, bounds.get(c)) for c, r in second.items()} | {
        n: bounds[n] for n in range(1, 5)
    }
    newcomer = ChildFacts(20, "12-14", "girl", "Maharashtra", "education", 2024, ())
    crowd = [bounded(c, bounds.get(c.child_id), SINGLE_HOME) for c in maharashtra[1:] + others]
    third = release_children([*crowd, bounded(newcomer, None, SINGLE_HOME)], K, TODAY)
    assert {third[n].region_text for n in (1, 2, 3, 4, 20)} == {"Maharashtra"}
    assert all(third[n].level == 0 for n in (1, 2, 3, 4))
