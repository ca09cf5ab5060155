"""A record that breaks no rule is loaded by the schema's fields without marshmallow's
machinery (`StrictSchema.load_valid`); it must give exactly what `load` gives, and hand every
other record to `load`, which words the messages."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from donorhub.feed.parse import FeedSettings
from donorhub.feed.schemas import build_schemas
from tests.feed.builders import child, exit_record, home_stats, update

HOMES = {"MH-01": "Maharashtra", "MH-02": "Maharashtra", "WB-01": "West Bengal"}
FEED = FeedSettings(
    partner="mumbai-safe-homes", homes=frozenset(HOMES), today=date(2026, 10, 2), home_regions=HOMES
)
SCHEMAS = build_schemas(FEED)
FAILED = object()

VALID = {
    "child": [
        child("c-fastpath-01"),
        child("c-fastpath-02", about="Loves football and maths.", interests=[]),
        child("c-fastpath-03", home="WB-01", region="West Bengal", about="   "),
    ],
    "update": [
        update("c-fastpath-01", uid="u-fast-1"),
        update(home="MH-01", uid="u-fast-2", milestones=[], text="The home held a sports day."),
        update("c-fastpath-01", uid="u-fast-3", text=None),
    ],
    "home_stats": [home_stats(), home_stats(in_school=37, in_vocational_training=0)],
    "exit": [exit_record("c-fastpath-01")],
}

ODD_VALUES: list[Any] = [
    None,
    "",
    " ",
    0,
    -1,
    1.5,
    True,
    False,
    [],
    {},
    ["drawing", "drawing"],
    ["drawing"],
    ["passed_term_exams"],
    "x" * 700,
    "MH-02",
    "WB-01",
    "Maharashtra",
    "girl",
    "2026-Q3",
    "2027-Q1",
    "2014-Q4",
    "c-fastpath-02",
    "a\u200bb",
    "line\nbreak",
    2024,
    2031,
    10**30,
    {"profile": True, "updates": True, "basis": "guardian_and_child", "expires": "2027-Q2"},
    {"profile": 1, "updates": True, "basis": "guardian_and_child", "expires": "2027-Q2"},
    {"profile": True, "updates": True, "basis": "guardian_and_child"},
    {"profile": True, "updates": True, "basis": "guardian_and_child", "expires": "2027-Q2", "x": 1},
]


def outcome(line_type: str, value: dict) -> tuple[Any, Any]:
    schema = SCHEMAS[line_type].schema
    fast = schema.load_valid(copy.deepcopy(value))
    try:
        slow = schema.load(copy.deepcopy(value))
    except ValidationError:
        slow = FAILED
    return fast, slow


def test_every_valid_record_takes_the_fast_path_and_loads_the_same():
    for line_type, values in VALID.items():
        for value in values:
            fast, slow = outcome(line_type, value)
            assert slow is not FAILED, (line_type, value)
            assert fast is not None and fast == slow, (line_type, value)


def test_every_single_change_of_a_field_either_loads_the_same_or_goes_to_load():
    checked = fast_taken = 0
    for line_type, values in VALID.items():
        for valid in values:
            keys = [*valid, "extra", "consent.profile", "consent.expires"]
            for key in keys:
                for odd in [*ODD_VALUES, "absent"]:
                    value = copy.deepcopy(valid)
                    target, name = value, key
                    if key.startswith("consent."):
                        if type(value.get("consent")) is not dict:
                            continue
                        target, name = value["consent"], key.split(".", 1)[1]
                    if odd == "absent":
                        target.pop(name, None)
                    else:
                        target[name] = odd
                    fast, slow = outcome(line_type, value)
                    checked += 1
                    if fast is not None:
                        fast_taken += 1
                        assert slow is not FAILED and fast == slow, (line_type, key, odd)
    assert checked > 1000 and fast_taken > 50


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.sampled_from(ODD_VALUES),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(
    line_type=st.sampled_from(sorted(VALID)),
    pick=st.integers(min_value=0, max_value=10),
    changes=st.dictionaries(
        st.sampled_from(
            [
                "ref",
                "id",
                "child",
                "home",
                "period",
                "age_band",
                "region",
                "interests",
                "milestones",
                "text",
                "about",
                "consent",
                "joined_year",
                "in_school",
                "children_in_care",
                "type",
            ]
        ),
        JSONISH | st.just("absent"),
        max_size=3,
    ),
)
def test_any_record_loads_the_same_on_both_paths(line_type, pick, changes):
    values = VALID[line_type]
    value = copy.deepcopy(values[pick % len(values)])
    for key, new in changes.items():
        if new == "absent":
            value.pop(key, None)
        else:
            value[key] = new
    fast, slow = outcome(line_type, value)
    if fast is not None:
        assert slow is not FAILED and fast == slow
