"""Tests of the strict partner feed parser (donorhub.feed.parse).

The parser is a safeguarding control: these tests pin down that an unknown field rejects the
whole batch, that every rule rejects its record, and that no message ever repeats a value
from the feed (a canary value is planted and must not reappear anywhere).
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from donorhub.children import vocab
from donorhub.children.periods import Quarter, parse_quarter, quarter_of
from donorhub.feed.parse import (
    MAX_LINE_BYTES,
    BatchRejected,
    ChildRecord,
    Consent,
    ExitRecord,
    FeedError,
    FeedHeader,
    FeedSettings,
    HomeStatsRecord,
    ParsedFeed,
    RecordError,
    UnknownFieldRejected,
    UpdateRecord,
    parse_feed,
)

REGRESSIONS = Path(__file__).resolve().parents[1] / "fuzz" / "regressions"

HOMES = frozenset({"MH-01", "MH-02", "WB-01", "DL-01"})
SETTINGS = FeedSettings(partner="mumbai-safe-homes", homes=HOMES, today=date(2026, 10, 2))

# A value that must never come back out of the parser, in any message or report.
CANARY = "Priya-Sharma-9876543210"

CONTRACT_EXAMPLE = b"""\
{"type": "header", "feed_version": 1, "partner": "mumbai-safe-homes", "batch": "2026q3-0007", "generated": "2026-10-02T06:00:00Z", "records": 4}
{"type": "child", "ref": "c-7f3a9e21b6", "home": "MH-02", "age_band": "12-14", "gender": "girl", "region": "Maharashtra", "stage": "education", "joined_year": 2024, "interests": ["drawing", "kabaddi"], "consent": {"profile": true, "updates": true, "basis": "guardian_and_child", "expires": "2027-Q2"}, "about": "Loves drawing birds and wants to be a teacher."}
{"type": "update", "id": "u-55c01d", "child": "c-7f3a9e21b6", "period": "2026-Q3", "category": "education", "milestones": ["passed_term_exams"], "text": "She finished her first full term and is proud of her maths."}
{"type": "home_stats", "home": "MH-02", "period": "2026-Q3", "children_in_care": 37, "in_school": 30, "in_vocational_training": 5, "reintegrated": 4, "new_arrivals": 3}
{"type": "exit", "child": "c-19bb04e7d2", "period": "2026-Q3"}
"""  # noqa: E501


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def header(**changes: Any) -> dict[str, Any]:
    line = {
        "type": "header",
        "feed_version": 1,
        "partner": "mumbai-safe-homes",
        "batch": "2026q3-0007",
        "generated": "2026-10-02T06:00:00Z",
        "records": 0,
    }
    line.update(changes)
    return line


def child(**changes: Any) -> dict[str, Any]:
    line = {
        "type": "child",
        "ref": "c-7f3a9e21b6",
        "home": "MH-02",
        "age_band": "12-14",
        "gender": "girl",
        "region": "Maharashtra",
        "stage": "education",
        "joined_year": 2024,
        "interests": ["drawing", "kabaddi"],
        "consent": {
            "profile": True,
            "updates": True,
            "basis": "guardian_and_child",
            "expires": "2027-Q2",
        },
        "about": "Loves drawing birds and wants to be a teacher.",
    }
    line.update(changes)
    return line


def update(**changes: Any) -> dict[str, Any]:
    line = {
        "type": "update",
        "id": "u-55c01d",
        "child": "c-7f3a9e21b6",
        "period": "2026-Q3",
        "category": "education",
        "milestones": ["passed_term_exams"],
        "text": "She finished her first full term and is proud of her maths.",
    }
    line.update(changes)
    return line


def home_stats(**changes: Any) -> dict[str, Any]:
    line = {
        "type": "home_stats",
        "home": "MH-02",
        "period": "2026-Q3",
        "children_in_care": 37,
        "in_school": 30,
        "in_vocational_training": 5,
        "reintegrated": 4,
        "new_arrivals": 3,
    }
    line.update(changes)
    return line


def exit_(**changes: Any) -> dict[str, Any]:
    line = {"type": "exit", "child": "c-19bb04e7d2", "period": "2026-Q3"}
    line.update(changes)
    return line


BUILDERS = {"child": child, "update": update, "home_stats": home_stats, "exit": exit_}
# Every key that the contract allows somewhere (a key outside this set is always unknown).
CONTRACT_KEYS = (
    frozenset(header())
    | {key for build in BUILDERS.values() for key in build()}
    | {
        "home",
        "profile",
        "updates",
        "basis",
        "expires",
    }
)


def without(line: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in line.items() if key not in keys}


def encode(lines: list[dict[str, Any]], head: dict[str, Any] | None = None) -> bytes:
    """A feed whose header counts the given lines (unless `head` says otherwise)."""
    first = head if head is not None else header(records=len(lines))
    return "".join(json.dumps(line) + "\n" for line in [first, *lines]).encode()


def parse(raw: bytes, feed_settings: FeedSettings = SETTINGS) -> ParsedFeed:
    return parse_feed(raw, feed_settings)


def reject_batch(raw: bytes, feed_settings: FeedSettings = SETTINGS) -> BatchRejected:
    with pytest.raises(BatchRejected) as caught:
        parse_feed(raw, feed_settings)
    return caught.value


def assert_no_canary(*things: Any) -> None:
    for thing in things:
        assert CANARY not in str(thing)
        assert CANARY not in repr(thing)


def record_count(parsed: ParsedFeed) -> int:
    return len(parsed.children) + len(parsed.updates) + len(parsed.home_stats) + len(parsed.exits)


# ---------------------------------------------------------------------------------------------
# The contract's example
# ---------------------------------------------------------------------------------------------


def test_contract_example_parses_into_the_expected_records() -> None:
    parsed = parse(CONTRACT_EXAMPLE)

    assert parsed.header == FeedHeader(
        line=1,
        feed_version=1,
        partner="mumbai-safe-homes",
        batch="2026q3-0007",
        generated=datetime(2026, 10, 2, 6, 0, tzinfo=UTC),
        records=4,
    )
    assert parsed.children == [
        ChildRecord(
            line=2,
            ref="c-7f3a9e21b6",
            home="MH-02",
            age_band="12-14",
            gender="girl",
            region="Maharashtra",
            stage="education",
            joined_year=2024,
            interests=("drawing", "kabaddi"),
            consent=Consent(
                profile=True, updates=True, basis="guardian_and_child", expires=Quarter(2027, 2)
            ),
            about="Loves drawing birds and wants to be a teacher.",
        )
    ]
    assert parsed.updates == [
        UpdateRecord(
            line=3,
            id="u-55c01d",
            child="c-7f3a9e21b6",
            home=None,
            period=Quarter(2026, 3),
            category="education",
            milestones=("passed_term_exams",),
            text="She finished her first full term and is proud of her maths.",
        )
    ]
    assert parsed.home_stats == [
        HomeStatsRecord(
            line=4,
            home="MH-02",
            period=Quarter(2026, 3),
            children_in_care=37,
            in_school=30,
            in_vocational_training=5,
            reintegrated=4,
            new_arrivals=3,
        )
    ]
    assert parsed.exits == [ExitRecord(line=5, child="c-19bb04e7d2", period=Quarter(2026, 3))]
    assert parsed.rejected == []
    assert parsed.sha256 == hashlib.sha256(CONTRACT_EXAMPLE).hexdigest()
    assert parsed.line_count == 5


def test_records_are_frozen() -> None:
    parsed = parse(CONTRACT_EXAMPLE)
    with pytest.raises(AttributeError):
        parsed.children[0].home = "MH-01"  # type: ignore[misc]


def test_an_update_about_a_home_parses() -> None:
    parsed = parse(encode([without(update(home="MH-01"), "child")]))
    assert parsed.updates[0].home == "MH-01"
    assert parsed.updates[0].child is None


def test_header_only_batch_with_zero_records_is_valid() -> None:
    parsed = parse(encode([]))
    assert parsed.header.records == 0
    assert record_count(parsed) == 0


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(lambda raw: raw.rstrip(b"\n"), id="no-final-newline"),
        pytest.param(lambda raw: raw.replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(lambda raw: raw.replace(b"\n", b"\r\n").rstrip(b"\r\n"), id="crlf-no-final"),
    ],
)
def test_line_end_variants_are_accepted(transform: Any) -> None:
    parsed = parse(transform(CONTRACT_EXAMPLE))
    assert record_count(parsed) == 4
    assert parsed.rejected == []


def test_generated_with_offset_and_fraction_is_accepted() -> None:
    parsed = parse(encode([], header(generated="2026-10-02T06:00:00.123456+00:00")))
    assert parsed.header.generated == datetime(2026, 10, 2, 6, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize("about", [None, "", "   "])
def test_empty_optional_text_loads_as_none(about: str | None) -> None:
    parsed = parse(encode([child(about=about)]))
    assert parsed.children[0].about is None


def test_absent_optional_text_loads_as_none() -> None:
    parsed = parse(encode([without(child(), "about"), without(update(), "text")]))
    assert parsed.children[0].about is None
    assert parsed.updates[0].text is None


@pytest.mark.parametrize(
    "text",
    [
        "Loves <b>kabaddi</b> & chess",  # HTML is plain text; templates escape it
        "\u0935\u0940\u0930 \u0915\u094d\u200d\u0937",  # Devanagari with a zero-width joiner
        "Met her \U0001f600 new friends",
        "x" * 280,
    ],
)
def test_plain_text_that_is_accepted(text: str) -> None:
    parsed = parse(encode([child(about=text)]))
    assert parsed.children[0].about == text


def test_the_parser_does_not_judge_consent_expiry() -> None:
    # Expired consent is the importer's business ("nothing of that child is shown").
    consent = child()["consent"] | {"expires": "2020-Q1", "profile": False}
    parsed = parse(encode([child(consent=consent)]))
    assert parsed.children[0].consent.expires == Quarter(2020, 1)


def test_child_with_exit_in_the_same_batch_is_left_to_the_importer() -> None:
    parsed = parse(encode([child(), exit_(child="c-7f3a9e21b6")]))
    assert len(parsed.children) == 1 and len(parsed.exits) == 1


# ---------------------------------------------------------------------------------------------
# Structural errors: the whole batch is rejected
# ---------------------------------------------------------------------------------------------


def _lines(*lines: bytes) -> bytes:
    return b"".join(line + b"\n" for line in lines)


GOOD_HEADER_1 = json.dumps(header(records=1)).encode()
GOOD_HEADER_2 = json.dumps(header(records=2)).encode()
GOOD_CHILD = json.dumps(child()).encode()
GOOD_EXIT = json.dumps(exit_()).encode()

STRUCTURAL_CASES = [
    # (id, raw bytes, expected line, expected field)
    ("empty-file", b"", None, None),
    ("only-a-newline", b"\n", 1, None),
    ("blank-line-in-the-middle", _lines(GOOD_HEADER_2, GOOD_CHILD, b"", GOOD_EXIT), 3, None),
    ("whitespace-line", _lines(GOOD_HEADER_2, GOOD_CHILD, b"  \t", GOOD_EXIT), 3, None),
    ("two-final-newlines", _lines(GOOD_HEADER_1, GOOD_CHILD) + b"\n", 3, None),
    ("bom", b"\xef\xbb\xbf" + _lines(GOOD_HEADER_1, GOOD_CHILD), 1, None),
    ("invalid-utf8", _lines(GOOD_HEADER_2, GOOD_CHILD, GOOD_EXIT[:-2] + b'\xff"}'), 3, None),
    ("overlong-utf8", _lines(GOOD_HEADER_1, b'{"type": "exit", "child": "\xc0\xaf"}'), 2, None),
    (
        "surrogate-utf8",
        _lines(GOOD_HEADER_1, b'{"type": "exit", "child": "\xed\xa0\x80"}'),
        2,
        None,
    ),
    ("bad-json", _lines(GOOD_HEADER_2, GOOD_CHILD, b'{"type": "exit", '), 3, None),
    ("truncated-last-line", _lines(GOOD_HEADER_2, GOOD_CHILD) + GOOD_EXIT[:20], 3, None),
    ("nan", _lines(GOOD_HEADER_1, b'{"type": "home_stats", "in_school": NaN}'), 2, None),
    ("infinity", _lines(GOOD_HEADER_1, b'{"type": "home_stats", "in_school": -Infinity}'), 2, None),
    ("duplicate-key", _lines(GOOD_HEADER_1, b'{"type": "exit", "type": "exit"}'), 2, None),
    (
        "duplicate-nested-key",
        _lines(
            GOOD_HEADER_1,
            GOOD_CHILD.replace(b'"profile": true', b'"profile": true, "profile": false'),
        ),
        2,
        None,
    ),
    ("array-line", _lines(GOOD_HEADER_1, b"[1, 2]"), 2, None),
    ("string-line", _lines(GOOD_HEADER_1, b'"exit"'), 2, None),
    ("null-line", _lines(GOOD_HEADER_1, b"null"), 2, None),
    ("number-line", _lines(GOOD_HEADER_1, b"12"), 2, None),
    (
        "missing-type",
        _lines(GOOD_HEADER_1, json.dumps(without(exit_(), "type")).encode()),
        2,
        "type",
    ),
    ("unknown-type", _lines(GOOD_HEADER_1, json.dumps(exit_(type="photo")).encode()), 2, "type"),
    (
        "type-not-a-string",
        _lines(GOOD_HEADER_1, json.dumps(exit_(type=["exit"])).encode()),
        2,
        "type",
    ),
    ("type-wrong-case", _lines(GOOD_HEADER_1, json.dumps(exit_(type="Exit")).encode()), 2, "type"),
    ("first-line-not-header", _lines(GOOD_CHILD, GOOD_EXIT), 1, "type"),
    ("second-header", _lines(GOOD_HEADER_1, GOOD_HEADER_1), 2, "type"),
    ("records-too-many", _lines(GOOD_HEADER_2, GOOD_CHILD), 1, "records"),
    ("records-too-few", _lines(GOOD_HEADER_1, GOOD_CHILD, GOOD_EXIT), 1, "records"),
    ("line-too-long", _lines(GOOD_HEADER_1, b" " * MAX_LINE_BYTES + GOOD_EXIT), 2, None),
    ("deep-nesting", _lines(GOOD_HEADER_1, b"[" * 5000 + b"]" * 5000), 2, None),
    ("deep-object-nesting", _lines(GOOD_HEADER_1, b'{"a":' * 2000 + b"1" + b"}" * 2000), 2, None),
    (
        "huge-int",
        _lines(GOOD_HEADER_1, b'{"type": "exit", "period": ' + b"9" * 5000 + b"}"),
        2,
        None,
    ),
    ("nul-byte", _lines(GOOD_HEADER_1, GOOD_EXIT[:5] + b"\x00" + GOOD_EXIT[5:]), 2, None),
    (
        "raw-control-in-string",
        _lines(GOOD_HEADER_1, GOOD_EXIT.replace(b"c-19", b"c-\x01")),
        2,
        None,
    ),
    ("bare-cr-line-ends", GOOD_HEADER_1 + b"\r" + GOOD_EXIT + b"\r", 1, None),
    ("u2028-is-not-a-line-end", _lines(GOOD_HEADER_1[:-1] + b"}\xe2\x80\xa8" + GOOD_EXIT), 1, None),
]


@pytest.mark.parametrize(
    ("raw", "line", "field"),
    [pytest.param(raw, line, field, id=name) for name, raw, line, field in STRUCTURAL_CASES],
)
def test_structural_errors_reject_the_batch(raw: bytes, line: int | None, field: str | None):
    error = reject_batch(raw)
    assert not isinstance(error, UnknownFieldRejected)
    assert error.line == line
    assert error.field == field
    assert error.rule


HEADER_CASES = [
    # (id, header changes, field)
    ("feed-version-2", {"feed_version": 2}, "feed_version"),
    ("feed-version-string", {"feed_version": "1"}, "feed_version"),
    ("feed-version-float", {"feed_version": 1.0}, "feed_version"),
    ("feed-version-true", {"feed_version": True}, "feed_version"),
    ("partner-other", {"partner": CANARY}, "partner"),
    ("partner-case", {"partner": "Mumbai-Safe-Homes"}, "partner"),
    ("batch-empty", {"batch": ""}, "batch"),
    ("batch-too-long", {"batch": "b" * 65}, "batch"),
    ("batch-slash", {"batch": "../" + CANARY}, "batch"),
    ("batch-dotdot", {"batch": ".."}, "batch"),
    ("batch-space", {"batch": CANARY + " x"}, "batch"),
    ("batch-trailing-newline", {"batch": "b1\n"}, "batch"),
    ("batch-number", {"batch": 7}, "batch"),
    ("generated-no-zone", {"generated": "2026-10-02T06:00:00"}, "generated"),
    ("generated-ist", {"generated": "2026-10-02T11:30:00+05:30"}, "generated"),
    ("generated-date-only", {"generated": "2026-10-02"}, "generated"),
    ("generated-month-13", {"generated": "2026-13-02T06:00:00Z"}, "generated"),
    ("generated-lowercase", {"generated": "2026-10-02t06:00:00z"}, "generated"),
    ("generated-future", {"generated": "2027-01-01T00:00:00Z"}, "generated"),
    ("generated-number", {"generated": 1790000000}, "generated"),
    ("records-negative", {"records": -1}, "records"),
    ("records-string", {"records": "0"}, "records"),
    ("records-true", {"records": True}, "records"),
    ("records-null", {"records": None}, "records"),
]


@pytest.mark.parametrize(
    ("changes", "field"),
    [pytest.param(changes, field, id=name) for name, changes, field in HEADER_CASES],
)
def test_header_rule_violations_reject_the_batch(changes: dict[str, Any], field: str) -> None:
    error = reject_batch(encode([], header(**changes)))
    assert (error.line, error.field) == (1, field)
    assert_no_canary(error, error.rule)


@pytest.mark.parametrize("missing", ["feed_version", "partner", "batch", "generated", "records"])
def test_header_missing_field_rejects_the_batch(missing: str) -> None:
    error = reject_batch(encode([], without(header(), missing)))
    assert (error.line, error.field) == (1, missing)
    assert error.rule == f"{missing} is required"


def test_unknown_feed_version_is_reported_first() -> None:
    error = reject_batch(encode([], header(feed_version=2, partner="someone-else")))
    assert error.field == "feed_version"


def test_over_size_limit_rejects_the_batch() -> None:
    small = FeedSettings(partner=SETTINGS.partner, homes=HOMES, today=SETTINGS.today, max_bytes=100)
    raw = encode([child()])
    assert len(raw) > 100
    error = reject_batch(raw, small)
    assert error.line is None
    exact = FeedSettings(
        partner=SETTINGS.partner, homes=HOMES, today=SETTINGS.today, max_bytes=len(raw)
    )
    assert len(parse(raw, exact).children) == 1


def test_structural_messages_never_quote_the_line() -> None:
    raw = _lines(GOOD_HEADER_1, b'{"type": "exit", "child": "' + CANARY.encode() + b'" oops}')
    error = reject_batch(raw)
    assert_no_canary(error)
    raw = _lines(GOOD_HEADER_1, f'{{"{CANARY}": 1, "{CANARY}": 2}}'.encode())
    assert_no_canary(reject_batch(raw))
    raw = _lines(GOOD_HEADER_1, json.dumps(exit_(type=CANARY)).encode())
    assert_no_canary(reject_batch(raw))


def test_the_first_structural_error_is_reported() -> None:
    raw = _lines(GOOD_HEADER_2, b"not json", b"[]")
    assert reject_batch(raw).line == 2


def test_parse_feed_takes_bytes_only() -> None:
    with pytest.raises(TypeError):
        parse_feed(CONTRACT_EXAMPLE.decode(), SETTINGS)  # type: ignore[arg-type]
    assert record_count(parse_feed(bytearray(CONTRACT_EXAMPLE), SETTINGS)) == 4


# ---------------------------------------------------------------------------------------------
# Unknown fields: the whole batch is rejected, and every such field is named
# ---------------------------------------------------------------------------------------------

LEAK_FIELDS = ["name", "dob", "school", "village", "reason", "photo", "case_no"]


@pytest.mark.parametrize("line_type", ["header", "child", "update", "home_stats", "exit"])
@pytest.mark.parametrize("key", LEAK_FIELDS)
def test_unknown_field_on_any_line_rejects_the_batch(line_type: str, key: str) -> None:
    lines = [child(), update(), home_stats(), exit_()]
    head = header(records=len(lines))
    if line_type == "header":
        head[key] = CANARY
        target_line = 1
    else:
        index = list(BUILDERS).index(line_type)
        lines[index][key] = CANARY
        target_line = index + 2
    with pytest.raises(UnknownFieldRejected) as caught:
        parse(encode(lines, head))
    error = caught.value
    assert error.fields == [(target_line, key)]
    assert error.line == target_line
    assert isinstance(error, BatchRejected)
    assert f"on line {target_line} ({key})" in str(error)
    assert_no_canary(error)


def test_exit_reason_rejects_the_batch_even_when_empty() -> None:
    with pytest.raises(UnknownFieldRejected) as caught:
        parse(encode([exit_(reason=None)]))
    assert caught.value.fields == [(2, "reason")]


def test_unknown_field_inside_consent_rejects_the_batch() -> None:
    consent = child()["consent"] | {"signed_by": CANARY}
    with pytest.raises(UnknownFieldRejected) as caught:
        parse(encode([child(consent=consent)]))
    assert caught.value.fields == [(2, "consent.signed_by")]
    assert_no_canary(caught.value)


@pytest.mark.parametrize(
    "key", [CANARY, "Priya", "aadhaar 1234", "x" * 33, "name\n", "ПРИЯ", "", "phone-no"]
)
def test_a_key_that_is_not_field_like_is_not_printed(key: str) -> None:
    with pytest.raises(UnknownFieldRejected) as caught:
        parse(encode([child(**{key: 1})]))
    error = caught.value
    assert error.fields == [(2, "<unprintable key>")]
    assert error.positions == [len(child()) + 1]
    if key:
        assert key not in str(error)
    assert_no_canary(error)


def test_all_unknown_fields_in_the_file_are_listed() -> None:
    lines = [child(name="x"), update(), exit_(village="y", dob="z")]
    with pytest.raises(UnknownFieldRejected) as caught:
        parse(encode(lines))
    assert caught.value.fields == [(2, "name"), (4, "village"), (4, "dob")]
    assert caught.value.positions == [len(child()) + 1, 4, 5]
    assert "unknown field #4 on line 4 (village)" in str(caught.value)


def test_unknown_field_wins_over_later_structural_error() -> None:
    # A truncated file that also carries identifying fields must still raise the alarm.
    raw = encode([child(name="x"), exit_()])[:-10]
    with pytest.raises(UnknownFieldRejected):
        parse(raw)


def test_unknown_field_wins_over_earlier_structural_error() -> None:
    raw = _lines(GOOD_HEADER_2, b"{broken", json.dumps(exit_(reason="x")).encode())
    with pytest.raises(UnknownFieldRejected) as caught:
        parse(raw)
    assert caught.value.fields == [(3, "reason")]


def test_unknown_field_wins_over_bad_header() -> None:
    raw = encode([child(school="x")], header(partner="someone-else"))
    with pytest.raises(UnknownFieldRejected):
        parse(raw)


def test_unknown_field_on_a_record_with_rule_errors_still_rejects_the_batch() -> None:
    with pytest.raises(UnknownFieldRejected):
        parse(encode([child(age_band="99", photo="x")]))


def test_many_unknown_fields_keep_the_message_short() -> None:
    lines = [exit_(child=f"c-{n:010d}", name="x") for n in range(50)]
    with pytest.raises(UnknownFieldRejected) as caught:
        parse(encode(lines))
    assert len(caught.value.fields) == 50
    assert "and 30 more" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Rule violations: the record is rejected, the batch goes on
# ---------------------------------------------------------------------------------------------

CONSENT = child()["consent"]

RECORD_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    # (id, line, field of the RecordError)
    ("child-ref-short", child(ref="c-1"), "ref"),
    ("child-ref-space", child(ref=CANARY + " x"), "ref"),
    ("child-ref-number", child(ref=12345678), "ref"),
    ("child-ref-unicode-digits", child(ref="c-\u0967\u0968\u0969\u096a\u096b\u096c\u096d"), "ref"),
    ("child-home", child(home=CANARY), "home"),
    ("child-home-lowercase", child(home="mh-02"), "home"),
    ("child-age-band", child(age_band=CANARY), "age_band"),
    ("child-age-band-number", child(age_band=12), "age_band"),
    ("child-gender", child(gender=CANARY), "gender"),
    ("child-region", child(region=CANARY), "region"),
    ("child-region-lowercase", child(region="maharashtra"), "region"),
    ("child-region-old-name", child(region="Orissa"), "region"),
    ("child-stage", child(stage=CANARY), "stage"),
    ("child-joined-year-future", child(joined_year=2027), "joined_year"),
    ("child-joined-year-too-early", child(joined_year=1989), "joined_year"),
    ("child-joined-year-string", child(joined_year="2024"), "joined_year"),
    ("child-joined-year-float", child(joined_year=2024.0), "joined_year"),
    ("child-joined-year-bool", child(joined_year=True), "joined_year"),
    ("child-joined-year-huge", child(joined_year=10**400), "joined_year"),
    ("child-interest-unknown", child(interests=["drawing", CANARY]), "interests"),
    ("child-interests-six", child(interests=sorted(vocab.INTERESTS)[:6]), "interests"),
    ("child-interests-repeated", child(interests=["chess", "chess"]), "interests"),
    ("child-interests-string", child(interests="drawing"), "interests"),
    ("child-interests-object", child(interests={"drawing": True}), "interests"),
    ("child-interests-nested", child(interests=[["drawing"]]), "interests"),
    ("child-interests-null", child(interests=None), "interests"),
    ("child-consent-list", child(consent=[CANARY]), "consent"),
    ("child-consent-null", child(consent=None), "consent"),
    (
        "child-consent-profile-string",
        child(consent=CONSENT | {"profile": "true"}),
        "consent.profile",
    ),
    ("child-consent-updates-int", child(consent=CONSENT | {"updates": 1}), "consent.updates"),
    ("child-consent-basis", child(consent=CONSENT | {"basis": CANARY}), "consent.basis"),
    ("child-consent-expires", child(consent=CONSENT | {"expires": CANARY}), "consent.expires"),
    (
        "child-consent-expires-q5",
        child(consent=CONSENT | {"expires": "2027-Q5"}),
        "consent.expires",
    ),
    (
        "child-consent-expires-month",
        child(consent=CONSENT | {"expires": "2027-06"}),
        "consent.expires",
    ),
    ("child-about-long", child(about=CANARY + "x" * 280), "about"),
    ("child-about-newline", child(about=CANARY + "\nsecond line"), "about"),
    ("child-about-tab", child(about=CANARY + "\tx"), "about"),
    ("child-about-nul", child(about=CANARY + "\x00"), "about"),
    ("child-about-bidi-override", child(about="\u202e" + CANARY), "about"),
    ("child-about-lone-surrogate", child(about=CANARY + "\ud800"), "about"),
    ("child-about-line-separator", child(about=CANARY + "\u2028"), "about"),
    ("child-about-number", child(about=42), "about"),
    ("update-id-empty", update(id=""), "id"),
    ("update-id-space", update(id=CANARY + " x"), "id"),
    ("update-id-long", update(id="u" * 65), "id"),
    ("update-child-bad", update(child=CANARY + " x"), "child"),
    ("update-home-unknown", without(update(home=CANARY), "child"), "home"),
    ("update-both-subjects", update(home="MH-02"), None),
    ("update-no-subject", without(update(), "child"), None),
    ("update-period-next-quarter", update(period="2027-Q1"), "period"),
    ("update-period-far-future", update(period="2030-Q2"), "period"),
    ("update-period-bad", update(period=CANARY), "period"),
    ("update-period-too-early", update(period="1989-Q4"), "period"),
    ("update-period-number", update(period=20263), "period"),
    ("update-category", update(category=CANARY), "category"),
    ("update-milestone-unknown", update(milestones=[CANARY]), "milestones"),
    ("update-milestones-six", update(milestones=sorted(vocab.MILESTONES)[:6]), "milestones"),
    ("update-milestones-missing", without(update(), "milestones"), "milestones"),
    ("update-text-long", update(text=CANARY + "x" * 600), "text"),
    ("update-text-control", update(text=CANARY + "\x1b[31m"), "text"),
    ("update-empty", update(milestones=[], text=""), None),
    ("stats-home", home_stats(home=CANARY), "home"),
    ("stats-period-future", home_stats(period="2027-Q1"), "period"),
    ("stats-negative", home_stats(new_arrivals=-1), "new_arrivals"),
    ("stats-bool", home_stats(reintegrated=True), "reintegrated"),
    ("stats-float", home_stats(children_in_care=37.0), "children_in_care"),
    ("stats-string", home_stats(in_school="30"), "in_school"),
    ("stats-huge", home_stats(children_in_care=10**30), "children_in_care"),
    ("stats-over-cap", home_stats(children_in_care=100_001), "children_in_care"),
    ("stats-subsets-exceed", home_stats(in_school=33, in_vocational_training=5), None),
    ("stats-missing-count", without(home_stats(), "in_school"), "in_school"),
    ("exit-child-bad", exit_(child=CANARY + " x"), "child"),
    ("exit-child-missing", without(exit_(), "child"), "child"),
    ("exit-period-future", exit_(period="2027-Q1"), "period"),
    ("exit-period-null", exit_(period=None), "period"),
]

REQUIRED_FIELDS = {
    "child": [
        "ref",
        "home",
        "age_band",
        "gender",
        "region",
        "stage",
        "joined_year",
        "interests",
        "consent",
    ],
    "update": ["id", "period", "category", "milestones"],
    "home_stats": ["home", "period", "children_in_care", "reintegrated", "new_arrivals"],
    "exit": ["child", "period"],
}


def _other_records() -> list[dict[str, Any]]:
    """Valid neighbours that must survive a rejected record."""
    return [
        child(ref="c-neighbour01"),
        update(id="u-neighbour", child="c-neighbour01"),
        home_stats(home="WB-01"),
        exit_(child="c-neighbour02"),
    ]


@pytest.mark.parametrize(
    ("line", "field"),
    [pytest.param(line, field, id=name) for name, line, field in RECORD_CASES],
)
def test_rule_violation_rejects_only_that_record(line: dict[str, Any], field: str | None) -> None:
    neighbours = _other_records()
    parsed = parse(encode([*neighbours[:2], line, *neighbours[2:]]))

    assert record_count(parsed) == 4  # the neighbours, not the broken line
    assert parsed.rejected_lines == [4]
    assert field in {error.field for error in parsed.rejected}
    for error in parsed.rejected:
        assert error.line == 4
        assert error.rule
    assert_no_canary(parsed.rejected, *(error.rule for error in parsed.rejected))
    assert_no_canary(parsed.children, parsed.updates, parsed.home_stats, parsed.exits)


@pytest.mark.parametrize(
    ("line_type", "missing"),
    [(line_type, name) for line_type, names in REQUIRED_FIELDS.items() for name in names]
    + [("child", "consent.basis"), ("child", "consent.expires")],
)
def test_missing_required_field_rejects_the_record(line_type: str, missing: str) -> None:
    line = BUILDERS[line_type]()
    if "." in missing:
        parent, name = missing.split(".")
        line[parent] = without(line[parent], name)
    else:
        line = without(line, missing)
    parsed = parse(encode([line]))
    assert record_count(parsed) == 0
    assert RecordError(2, missing, f"{missing} is required") in parsed.rejected


def test_a_record_with_several_problems_lists_each_field() -> None:
    parsed = parse(encode([child(age_band="x", gender="x", home="x")]))
    assert {error.field for error in parsed.rejected} == {"age_band", "gender", "home"}
    assert parsed.rejected_lines == [2]


def test_rule_texts_describe_the_rule() -> None:
    parsed = parse(encode([child(age_band=CANARY)]))
    assert parsed.rejected == [
        RecordError(2, "age_band", "age_band must be one of 0-5, 6-8, 9-11, 12-14, 15-17, 18+")
    ]


def test_period_in_the_current_quarter_is_accepted() -> None:
    assert quarter_of(SETTINGS.today) == Quarter(2026, 4)
    late = FeedSettings(partner=SETTINGS.partner, homes=HOMES, today=date(2026, 12, 31))
    parsed = parse(encode([update(period="2026-Q4")]), late)
    assert parsed.updates[0].period == Quarter(2026, 4)


def test_region_must_match_the_configured_home_region() -> None:
    mapped = FeedSettings(
        partner=SETTINGS.partner,
        homes=HOMES,
        today=SETTINGS.today,
        home_regions={"MH-02": "Maharashtra", "WB-01": "West Bengal"},
    )
    parsed = parse(encode([child(), child(ref="c-otherchild", region="West Bengal")]), mapped)
    assert [c.line for c in parsed.children] == [2]
    assert [(e.line, e.field) for e in parsed.rejected] == [(3, "region")]


@pytest.mark.parametrize(
    ("first", "second", "field"),
    [
        (child(), child(age_band="15-17"), "ref"),
        (update(), update(text="Another text."), "id"),
        (home_stats(), home_stats(children_in_care=40), "period"),
        (exit_(), exit_(period="2026-Q2"), "child"),
    ],
)
def test_a_repeated_key_rejects_the_later_record(
    first: dict[str, Any], second: dict[str, Any], field: str
) -> None:
    parsed = parse(encode([first, second]))
    assert record_count(parsed) == 1
    assert [(e.line, e.field) for e in parsed.rejected] == [(3, field)]
    assert "line 2" in parsed.rejected[0].rule


def test_a_repeat_of_a_rejected_record_is_rejected_too() -> None:
    parsed = parse(encode([child(age_band="x"), child()]))
    assert parsed.children == []
    assert parsed.rejected_lines == [2, 3]


# ---------------------------------------------------------------------------------------------
# Vocabularies and periods
# ---------------------------------------------------------------------------------------------


def test_vocabularies_have_the_contract_sizes() -> None:
    assert len(vocab.INTERESTS) == 30
    assert len(vocab.MILESTONES) == 18
    assert len(vocab.STATES) == 28
    assert len(vocab.UNION_TERRITORIES) == 8
    assert len(vocab.REGIONS) == 36
    assert vocab.AGE_BANDS == ("0-5", "6-8", "9-11", "12-14", "15-17", "18+")


def test_every_milestone_has_a_short_neutral_sentence() -> None:
    for code, sentence in vocab.MILESTONE_SENTENCES.items():
        assert sentence and len(sentence) <= 60, code
        assert sentence == sentence.strip() and not sentence.endswith("."), code
        assert sentence[0].islower(), code
        words = set(sentence.split())
        assert not words & {"he", "she", "his", "her", "him", "they", "their"}, code


@pytest.mark.parametrize(
    ("text", "expected"), [("2026-Q3", Quarter(2026, 3)), ("1990-Q1", Quarter(1990, 1))]
)
def test_parse_quarter(text: str, expected: Quarter) -> None:
    assert parse_quarter(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["2026-Q0", "2026-Q5", "2026-q3", "26-Q3", "2026-Q3\n", "2026Q3"])
def test_parse_quarter_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quarter(text)


def test_quarters_order_and_quarter_of() -> None:
    assert Quarter(2025, 4) < Quarter(2026, 1) < Quarter(2026, 2)
    assert [quarter_of(date(2026, m, 1)).quarter for m in range(1, 13)] == [
        1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Properties (hypothesis)
# ---------------------------------------------------------------------------------------------

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
past_quarters = st.builds(
    lambda year, quarter: f"{year}-Q{quarter}",
    st.integers(1990, 2025),
    st.integers(1, 4),
)
plain_text = (
    st.text(
        st.characters(categories=["L", "M", "N", "P", "S"], exclude_characters="\u2028\u2029"),
        max_size=40,
    )
    | st.none()
)
refs = st.text(TOKEN_CHARS, min_size=8, max_size=64)
update_ids = st.text(TOKEN_CHARS, min_size=1, max_size=64)
sorted_homes = sorted(HOMES)


@st.composite
def child_lines(draw: st.DrawFn, ref: str) -> dict[str, Any]:
    return {
        "type": "child",
        "ref": ref,
        "home": draw(st.sampled_from(sorted_homes)),
        "age_band": draw(st.sampled_from(vocab.AGE_BANDS)),
        "gender": draw(st.sampled_from(sorted(vocab.GENDERS))),
        "region": draw(st.sampled_from(sorted(vocab.REGIONS))),
        "stage": draw(st.sampled_from(sorted(vocab.STAGES))),
        "joined_year": draw(st.integers(1990, 2026)),
        "interests": draw(
            st.lists(st.sampled_from(sorted(vocab.INTERESTS)), max_size=5, unique=True)
        ),
        "consent": {
            "profile": draw(st.booleans()),
            "updates": draw(st.booleans()),
            "basis": draw(st.sampled_from(sorted(vocab.CONSENT_BASES))),
            "expires": draw(past_quarters),
        },
        "about": draw(plain_text),
    }


@st.composite
def update_lines(draw: st.DrawFn, update_id: str) -> dict[str, Any]:
    line: dict[str, Any] = {
        "type": "update",
        "id": update_id,
        "period": draw(past_quarters),
        "category": draw(st.sampled_from(sorted(vocab.CATEGORIES))),
        "milestones": draw(
            st.lists(st.sampled_from(sorted(vocab.MILESTONES)), min_size=1, max_size=5, unique=True)
        ),
    }
    if draw(st.booleans()):
        line["child"] = draw(refs)
    else:
        line["home"] = draw(st.sampled_from(sorted_homes))
    text = draw(plain_text)
    if text is not None or draw(st.booleans()):
        line["text"] = text
    return line


@st.composite
def home_stats_lines(draw: st.DrawFn, key: tuple[str, str]) -> dict[str, Any]:
    in_care = draw(st.integers(0, 100_000))
    in_school = draw(st.integers(0, in_care))
    return {
        "type": "home_stats",
        "home": key[0],
        "period": key[1],
        "children_in_care": in_care,
        "in_school": in_school,
        "in_vocational_training": draw(st.integers(0, in_care - in_school)),
        "reintegrated": draw(st.integers(0, 100_000)),
        "new_arrivals": draw(st.integers(0, 100_000)),
    }


@st.composite
def valid_feeds(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, int]]:
    child_refs = draw(st.lists(refs, max_size=6, unique=True))
    exit_refs = draw(st.lists(refs, max_size=3, unique=True))
    ids = draw(st.lists(update_ids, max_size=6, unique=True))
    stats_keys = draw(
        st.lists(st.tuples(st.sampled_from(sorted_homes), past_quarters), max_size=4, unique=True)
    )
    lines = (
        [draw(child_lines(ref)) for ref in child_refs]
        + [draw(update_lines(update_id)) for update_id in ids]
        + [draw(home_stats_lines(key)) for key in stats_keys]
        + [{"type": "exit", "child": ref, "period": draw(past_quarters)} for ref in exit_refs]
    )
    lines = draw(st.permutations(lines))
    counts = {
        "child": len(child_refs),
        "update": len(ids),
        "home_stats": len(stats_keys),
        "exit": len(exit_refs),
    }
    return list(lines), counts


def _check_outcome(raw: bytes) -> ParsedFeed | FeedError:
    """Parse; only a result or a FeedError is allowed. Check the result's invariants."""
    try:
        parsed = parse_feed(raw, SETTINGS)
    except FeedError as error:
        assert error.rule
        str(error)
        return error
    # Every line after the header became a record or was rejected, never both, never lost.
    assert record_count(parsed) + len(parsed.rejected_lines) == parsed.header.records
    accepted = {
        r.line for r in [*parsed.children, *parsed.updates, *parsed.home_stats, *parsed.exits]
    }
    assert not accepted & set(parsed.rejected_lines)
    return parsed


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(valid_feeds())
def test_generated_valid_feeds_parse_with_the_right_counts(
    feed: tuple[list[dict[str, Any]], dict[str, int]],
) -> None:
    lines, counts = feed
    parsed = parse(encode(lines))
    assert parsed.rejected == []
    assert len(parsed.children) == counts["child"]
    assert len(parsed.updates) == counts["update"]
    assert len(parsed.home_stats) == counts["home_stats"]
    assert len(parsed.exits) == counts["exit"]
    # Records keep their line numbers and the file's order.
    expected_lines = [n + 2 for n, line in enumerate(lines) if line["type"] == "child"]
    assert [record.line for record in parsed.children] == expected_lines


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(valid_feeds(), st.data())
def test_an_extra_key_anywhere_rejects_the_batch(feed: Any, data: st.DataObject) -> None:
    lines, _ = feed
    everything = [header(records=len(lines)), *copy.deepcopy(lines)]
    target = data.draw(st.integers(0, len(everything) - 1))
    key = data.draw(st.text(min_size=1, max_size=40))
    line = everything[target]
    assume(key not in CONTRACT_KEYS)
    if line["type"] == "child" and data.draw(st.booleans()):
        line["consent"][key] = data.draw(st.none() | st.integers() | st.text(max_size=5))
    else:
        line[key] = data.draw(st.none() | st.integers() | st.text(max_size=5))
    raw = encode(everything[1:], everything[0])
    with pytest.raises(UnknownFieldRejected) as caught:
        parse(raw)
    assert [line_no for line_no, _ in caught.value.fields] == [target + 1]


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(valid_feeds(), st.data())
def test_any_truncation_rejects_the_batch(feed: Any, data: st.DataObject) -> None:
    lines, _ = feed
    raw = encode(lines)
    cut = data.draw(st.integers(0, len(raw) - 2))  # keep less than all but the final newline
    with pytest.raises(BatchRejected):
        parse(raw[:cut])


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(valid_feeds(), st.data())
def test_a_repeated_record_line_is_rejected_as_a_duplicate(feed: Any, data: st.DataObject):
    lines, _ = feed
    assume(lines)
    copied = data.draw(st.integers(0, len(lines) - 1))
    position = data.draw(st.integers(copied + 1, len(lines)))
    repeated = [*lines[:position], lines[copied], *lines[position:]]
    unchanged_count = encode(repeated, header(records=len(lines)))
    with pytest.raises(BatchRejected):
        parse(unchanged_count)  # the header's count no longer matches
    parsed = parse(encode(repeated))
    assert parsed.rejected_lines == [position + 2]


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(valid_feeds())
def test_crlf_gives_the_same_records(feed: Any) -> None:
    lines, _ = feed
    raw = encode(lines)
    unix, windows = parse(raw), parse(raw.replace(b"\n", b"\r\n"))
    assert (unix.children, unix.updates, unix.home_stats, unix.exits) == (
        windows.children,
        windows.updates,
        windows.home_stats,
        windows.exits,
    )


def _mutations() -> st.SearchStrategy[Any]:
    """Functions (raw, data) -> mutated raw bytes."""

    def flip(raw: bytes, data: st.DataObject) -> bytes:
        index = data.draw(st.integers(0, len(raw) - 1))
        return raw[:index] + bytes([raw[index] ^ data.draw(st.integers(1, 255))]) + raw[index + 1 :]

    def insert(raw: bytes, data: st.DataObject) -> bytes:
        index = data.draw(st.integers(0, len(raw)))
        piece = data.draw(
            st.sampled_from(
                [
                    b"\x00",
                    b"\xff",
                    b"\xc3",
                    b"\xed\xa0\x80",
                    b"\r",
                    b"\n",
                    b"\xef\xbb\xbf",
                    b"\\u0000",
                    b"\\ud800",
                    b"9" * 5000,
                    b"1e999",
                    b"-0",
                    b"NaN",
                    b"[" * 3000,
                    b'{"a":' * 2000,
                    b'"',
                    b",",
                    b"}",
                    b"\xe2\x80\xa8",
                    b"\t",
                ]
            )  # fmt: skip
            | st.binary(max_size=8)
        )
        return raw[:index] + piece + raw[index:]

    def truncate(raw: bytes, data: st.DataObject) -> bytes:
        return raw[: data.draw(st.integers(0, len(raw)))]

    def duplicate_line(raw: bytes, data: st.DataObject) -> bytes:
        lines = raw.split(b"\n")
        index = data.draw(st.integers(0, len(lines) - 1))
        return b"\n".join([*lines[: index + 1], lines[index], *lines[index + 1 :]])

    def delete_range(raw: bytes, data: st.DataObject) -> bytes:
        start = data.draw(st.integers(0, len(raw)))
        end = data.draw(st.integers(start, min(len(raw), start + 40)))
        return raw[:start] + raw[end:]

    def crlf(raw: bytes, data: st.DataObject) -> bytes:
        return raw.replace(b"\n", b"\r\n")

    def bom(raw: bytes, data: st.DataObject) -> bytes:
        return b"\xef\xbb\xbf" + raw

    def replace_number(raw: bytes, data: st.DataObject) -> bytes:
        big = data.draw(
            st.sampled_from([b"-1", b"1.5", b"1e400", b"9" * 4400, b"true", b"null", b'"37"'])
        )
        return raw.replace(b"37", big, 1).replace(b"2024", big, 1)

    return st.sampled_from(
        [flip, insert, truncate, duplicate_line, delete_range, crlf, bom, replace_number]
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(valid_feeds(), st.lists(_mutations(), min_size=1, max_size=4), st.data())
def test_mutated_feeds_parse_or_raise_feed_error(
    feed: Any, mutations: list[Any], data: st.DataObject
) -> None:
    lines, _ = feed
    raw = encode(lines)
    for mutate in mutations:
        if raw:
            raw = mutate(raw, data)
    _check_outcome(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_raise_feed_error(raw: bytes) -> None:
    _check_outcome(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=12,
    ),
    st.sampled_from(["child", "update", "home_stats", "exit"]),
    st.sampled_from(
        [
            "ref",
            "home",
            "age_band",
            "interests",
            "consent",
            "about",
            "id",
            "child",
            "period",
            "milestones",
            "text",
            "children_in_care",
            "in_school",
        ]
    ),  # fmt: skip
)
def test_any_json_value_in_any_field_parses_or_raises_feed_error(
    value: Any, line_type: str, field: str
) -> None:
    line = BUILDERS[line_type]()
    if field not in line:
        return
    line[field] = value
    try:
        raw = encode([line])
    except ValueError:  # e.g. a float that json.dumps refuses; nothing to test
        return
    _check_outcome(raw)


# ---------------------------------------------------------------------------------------------
# Fuzzing regressions
# ---------------------------------------------------------------------------------------------


def _regression_files() -> list[Path]:
    if not REGRESSIONS.is_dir():
        return []
    return sorted(path for path in REGRESSIONS.iterdir() if path.is_file())


@pytest.mark.parametrize("path", _regression_files(), ids=lambda path: path.name)
def test_fuzz_regressions_parse_or_raise_feed_error(path: Path) -> None:
    _check_outcome(path.read_bytes())


def test_the_fuzz_regressions_directory_exists() -> None:
    assert REGRESSIONS.is_dir()
