"""The officer's queue shows a flagged text masked by the guard's finding spans
(`children.review.masked_segments`). When one detector claims part of a long number, the
rest of that number must be masked too: otherwise the masked view shows the identifier's
other digits in the clear."""

from __future__ import annotations

import re

import pytest

from donorhub.children.review import masked_text
from donorhub.guard import scan_text

# One number, separated in a way another rule reads as something shorter.
PARTLY_CLAIMED = [
    # "0864/2099" reads as a case number; "7531 _ " before it is part of the same Aadhaar.
    "Her Aadhaar 7531 _ 0864/2099.",
    "Note 7531 _ 0864/2099 here",
    # "MH-01201" is a licence; "1001/2345" after it was left as if it were prose.
    "Licence MH-01201. 1001/2345.",
]

# One number whose first group is glued to a word: the run must not start only after it.
GLUED_TO_A_WORD = [
    "Call phone9820 012345 after six.",
    "Her mob9820 0123 45 is with the warden.",
    "They live in room B1204 5678 now.",
]


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


@pytest.mark.parametrize("text", PARTLY_CLAIMED)
def test_a_number_partly_claimed_by_one_rule_is_masked_whole(text):
    findings = [{"detector": f.detector, "start": f.start, "end": f.end} for f in scan_text(text)]
    shown = masked_text(text, findings)
    assert not _digits(shown), f"{text!r} is shown to the officer as {shown!r}"


@pytest.mark.parametrize("text", GLUED_TO_A_WORD)
def test_a_number_whose_first_group_touches_a_word_is_masked_whole(text):
    findings = [{"detector": f.detector, "start": f.start, "end": f.end} for f in scan_text(text)]
    shown = masked_text(text, findings)
    assert not _digits(shown), f"{text!r} is shown to the officer as {shown!r}"


def test_a_year_beside_a_case_number_is_still_allowed():
    # A partly claimed run that is short stays as it was: a year after a case number.
    text = "FIR 123/2024 was closed in 2025."
    findings = scan_text(text)
    assert [text[f.start : f.end] for f in findings if f.detector == "phone"] == []
    assert re.search(r"2025", masked_text(text, [vars(f) for f in findings]))
