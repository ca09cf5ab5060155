"""Tests for the partner-feed PII guard (donorhub.guard)."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donorhub.guard.scan import (
    DETECTORS,
    GUARD_ERROR_RULE,
    Finding,
    scan_text,
    verhoeff_is_valid,
)

CORPUS = Path(__file__).parent / "corpus"
_MARK_RE = re.compile(r"\[\[(.+?)\]\]")
_ESCAPE_RE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _decode(text: str) -> str:
    return _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text)


def _load_positives() -> list[tuple[str, str, list[tuple[int, int]]]]:
    """Rows of (detector, text without markers, marked spans)."""
    rows = []
    for line in (CORPUS / "pii_positive.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        detector, marked = line.split("\t", 1)
        marked = _decode(marked)
        text, spans, cursor = "", [], 0
        for m in _MARK_RE.finditer(marked):
            text += marked[cursor : m.start()]
            spans.append((len(text), len(text) + len(m.group(1))))
            text += m.group(1)
            cursor = m.end()
        text += marked[cursor:]
        assert spans, f"no [[marked]] span in: {line!r}"
        rows.append((detector, text, spans))
    return rows


def _load_negatives() -> list[str]:
    lines = (CORPUS / "pii_negative.txt").read_text(encoding="utf-8").splitlines()
    return [_decode(line) for line in lines if line.strip() and not line.startswith("#")]


POSITIVES = _load_positives()
NEGATIVES = _load_negatives()


def _describe(text: str, findings: list[Finding]) -> str:
    return "; ".join(f"{f.detector} {text[f.start : f.end]!r} ({f.rule})" for f in findings)


# ---------------------------------------------------------------------------------------
# Corpus


def test_corpus_sizes():
    assert len(POSITIVES) >= 150
    assert len(NEGATIVES) >= 150
    assert {detector for detector, _, _ in POSITIVES} == set(DETECTORS)


@pytest.mark.parametrize(("detector", "text", "spans"), POSITIVES, ids=lambda v: str(v)[:40])
def test_positive_is_flagged(detector, text, spans):
    findings = scan_text(text)
    for start, end in spans:
        hit = [f for f in findings if f.detector == detector and f.start < end and f.end > start]
        assert hit, (
            f"{detector} missed {text[start:end]!r} in {text!r}; got: {_describe(text, findings)}"
        )


# The negative corpus may have up to 5% quarantined: test_negative_corpus.py.


def test_corpus_summary(capsys):
    """Prints detection and false-positive rates (run with -s to see them)."""
    detected = Counter()
    totals = Counter()
    for detector, text, spans in POSITIVES:
        totals[detector] += 1
        findings = scan_text(text)
        if all(
            any(f.detector == detector and f.start < e and f.end > s for f in findings)
            for s, e in spans
        ):
            detected[detector] += 1
    false_positives = sum(1 for text in NEGATIVES if scan_text(text))
    with capsys.disabled():
        print(
            f"\nPII guard corpus: {len(POSITIVES)} positives, "
            f"detection {sum(detected.values())}/{len(POSITIVES)}; "
            f"{len(NEGATIVES)} negatives, false positives {false_positives}/{len(NEGATIVES)}"
        )
        for detector in DETECTORS:
            print(f"  {detector:14} {detected[detector]}/{totals[detector]}")
    assert sum(detected.values()) == len(POSITIVES)


# ---------------------------------------------------------------------------------------
# Specific behaviour


def test_finding_shape_and_order():
    text = "Priya (9820012345) lives at Kamathipura, PIN 400008."
    findings = scan_text(text)
    assert findings == sorted(findings, key=lambda f: f.start)
    assert all(isinstance(f, Finding) and f.detector in DETECTORS for f in findings)
    detectors = {f.detector for f in findings}
    assert {"person_name", "phone", "place", "pin_code"} <= detectors
    phone = next(f for f in findings if f.detector == "phone")
    assert text[phone.start : phone.end] == "9820012345"


def test_pin_code_not_reported_inside_a_phone_number():
    findings = scan_text("Call 98200 123456 or 022 4000 0812.")
    assert not [f for f in findings if f.detector == "pin_code"]


def test_years_and_quarters_are_allowed():
    assert scan_text("She joined in 2023 and moved up a class in 2026-Q3.") == []
    assert scan_text("From 2023 to 2025 she studied hard.") == []


def test_bare_state_names_are_allowed():
    for state in ("Maharashtra", "West Bengal", "Tamil Nadu", "Andhra Pradesh", "Delhi"):
        assert scan_text(f"The safe home is in {state}, India.") == [], state


def test_english_words_that_are_names_need_context():
    assert scan_text("Hope filled the room when the results came.") == []
    assert scan_text("Joy and grace were everywhere at the festival.") == []
    assert scan_text("More girls joined the choir.") == []
    assert [f.detector for f in scan_text("Her sister Hope sings.")] == ["person_name"]


def test_lowercase_hindi_words_are_not_names():
    assert scan_text("They did the evening aarti and lit diyas.") == []
    assert scan_text("The girls tied rakhi on Raksha Bandhan.") == []


def test_aadhaar_uses_verhoeff():
    assert verhoeff_is_valid("2363")
    assert verhoeff_is_valid("234567890124")
    assert not verhoeff_is_valid("234567890123")
    assert not verhoeff_is_valid("")
    assert not verhoeff_is_valid("12a4")
    valid = scan_text("Number 2345 6789 0124.")
    invalid = scan_text("Number 2345 6789 0123.")
    assert [f.detector for f in valid] == ["aadhaar"]
    assert [f.detector for f in invalid] == ["id_number"]


def test_offsets_point_into_the_original_text_when_folding_grows_it():
    # "ﬁ" (one character) folds to "fi" (two), "½" to three characters.
    text = "ﬁne ﬁne ½ cake, call ９８２００ １２３４５ now"
    phone = [f for f in scan_text(text) if f.detector == "phone"]
    assert len(phone) == 1
    assert text[phone[0].start : phone[0].end] == "９８２００ １２３４５"


def test_offsets_point_into_the_original_text_when_folding_shrinks_it():
    text = "\u200b\u200bCall 98\u200b200\u00ad12345 or write to Sun\u200bita."
    findings = scan_text(text)
    phone = next(f for f in findings if f.detector == "phone")
    assert text[phone.start : phone.end] == "98\u200b200\u00ad12345"
    name = next(f for f in findings if f.detector == "person_name")
    assert text[name.start : name.end] == "Sun\u200bita"


def test_offsets_with_combining_marks_and_astral_characters():
    text = "\U0001f600 Su\u0301nita \U0001f600 lives in Kamathipura"
    findings = scan_text(text)
    spans = {f.detector: text[f.start : f.end] for f in findings}
    assert spans["person_name"] == "Su\u0301nita"
    assert spans["place"] == "Kamathipura"


def test_rules_are_short_descriptions():
    text = "Priya, 9820012345, priya@gmail.com, FIR No. 12/2024, aged 13, Kamathipura."
    for finding in scan_text(text):
        assert finding.rule and len(finding.rule) < 100


def test_non_string_input_is_rejected():
    with pytest.raises(TypeError):
        scan_text(None)  # type: ignore[arg-type]


def test_empty_and_whitespace():
    assert scan_text("") == []
    assert scan_text("   \n\t ") == []


# ---------------------------------------------------------------------------------------
# Robustness: never raises, spans in bounds and sorted, no catastrophic backtracking


def _check_invariants(text: str) -> None:
    findings = scan_text(text)
    assert isinstance(findings, list)
    assert findings == sorted(findings, key=lambda f: f.start)
    for f in findings:
        assert f.detector in DETECTORS
        assert 0 <= f.start < f.end <= len(text)
        assert f.rule != GUARD_ERROR_RULE, f"guard error on {text!r}"


_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=600)
_FEEDISH = st.text(
    alphabet=st.sampled_from(
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-@/:()+#'\n")
        + ["\u200b", "\uff19", "\u0966", "\u0915", "\ufb01", "\u00bd", "\u0301", "\u2013"]
    ),
    max_size=600,
)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT)
def test_fuzz_any_unicode(text):
    _check_invariants(text)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(_FEEDISH)
def test_fuzz_feed_like_text(text):
    _check_invariants(text)


_CORPUS_PIECES = st.sampled_from(NEGATIVES + [text for _, text, _ in POSITIVES])


@settings(
    max_examples=25,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
)
@given(
    st.one_of(
        st.tuples(_TEXT, st.integers(min_value=1, max_value=400)).map(
            lambda pair: (pair[0] * pair[1])[:10000]
        ),
        st.lists(st.one_of(_CORPUS_PIECES, _FEEDISH), min_size=20, max_size=150).map(
            lambda parts: " ".join(parts)[:10000]
        ),
    )
)
def test_fuzz_long_text(text):
    _check_invariants(text)


@settings(max_examples=40, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(
        ["a", "1 ", "@", "1", "1-", "a.", "Aa ", "9 8 ", ". ", "-", "((", "+9", "A1", "ab@", "x"]
    ),
    st.integers(min_value=1, max_value=600),
)
def test_adversarial_repetitions_finish_quickly(unit, count):
    text = (unit * count)[:600]
    _check_invariants(text)


@pytest.mark.parametrize(
    "text",
    [
        "a" * 600,
        "1 " * 300,
        "@" * 600,
        "1" * 600,
        "1." * 300,
        "a." * 300,
        "Aa " * 200,
        "a@" * 300,
        "-1" * 300,
        "(1)" * 200,
        "Priya " * 100,
        ("word " * 1999)[:10000],
    ],
    ids=lambda v: repr(v[:8]),
)
def test_pathological_inputs(text):
    started = time.perf_counter()
    _check_invariants(text)
    # Generous bound: only catastrophic backtracking could exceed it.
    assert time.perf_counter() - started < 5
