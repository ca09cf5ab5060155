"""The normaliser's shortcuts skip a stage only when the stage would change nothing.

`normalise(..., shortcuts=False)` runs every stage on every text; with the shortcuts (the
default, what the importer and the officer's review use) the results, and so the guard's
findings, must be identical. Each skip is checked twice: the whole guard both ways, on the
corpora and on random text, and each skip's condition against its stage, on text built to
come close to the condition's edge (digit words next to numbers, rewritten abbreviations).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from donorhub.guard import normalise as norm_module
from donorhub.guard.normalise import DIGIT_WORDS, normalise
from donorhub.guard.scan import _NEEDS_A_DIGIT, _is_known_word, _scan

CORPUS = Path(__file__).parent / "corpus"
_MARK_RE = re.compile(r"\[\[|\]\]")


def _corpus_texts() -> list[str]:
    texts = []
    for line in (CORPUS / "pii_positive.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            texts.append(_MARK_RE.sub("", line.split("\t", 1)[1]))
    for line in (CORPUS / "pii_negative.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            texts.append(line)
    rows = (CORPUS / "pii_mutations.tsv").read_text(encoding="utf-8").splitlines()
    mutations = [line.split("\t")[2] for line in rows if line and not line.startswith("#")]
    # Every seventh mutation: all the kinds of spelling, at a tenth of the corpus's time.
    texts.extend(_MARK_RE.sub("", text) for text in mutations[::7])
    return texts


CORPUS_TEXTS = _corpus_texts()


def _both_ways(text: str) -> None:
    fast = normalise(text, _is_known_word)
    full = normalise(text, _is_known_word, shortcuts=False)
    assert fast == full, text
    assert _scan(text) == _scan(text, shortcuts=False), text


def test_corpora_give_the_same_findings_with_and_without_shortcuts():
    assert len(CORPUS_TEXTS) > 2000
    for text in CORPUS_TEXTS:
        _both_ways(text)


def test_plain_feed_text_takes_the_shortcuts():
    """What the shortcuts are for: a plain update skips every stage that cannot apply."""
    text = "She read her first whole book in English this quarter and helped the others."
    assert text.isascii()
    assert norm_module._ASCII_DIGIT_RE.search(text) is None
    assert norm_module._no_digit_word_run(text)
    assert norm_module._no_rewritten_word(text)


# Pieces that sit on the edges of the skip conditions: digit words and multipliers in both
# scripts and cases, numbers, the first words of rewritten forms, the police station's "PS",
# separators, look-alike digits, zero-width and accented characters.
_PIECES = sorted(DIGIT_WORDS) + [
    "double", "Triple", "DABAL", "डबल", "One", "NINE", "oh", "O", "l", "I", "0", "7", "12",
    "98200", "2024", "rd", "Rd.", "opp", "nr.", "p.o.", "b-day", "mera naam", "Majha  naav",
    "P.S.", "PS", "p s", "Colaba", "thana", "someone", "phone", "do", "don't", "sat", "tin",
    "Kamāṭhipurā", "Мeena", "\u200b", "\u00ad", "\ufeff", "९", "\uff19", "M-e-e-n-a",
    "m.e.e.n.a", "a", "the", "road", "school", "ſ", "\u212a", "İ", "ı",
]  # fmt: skip
_SEPARATORS = [" ", "  ", "", "-", ".", ",", ", ", "/", "_", "|", "\n", "\t", " . "]
_EDGY = st.lists(
    st.tuples(st.sampled_from(_PIECES), st.sampled_from(_SEPARATORS)), max_size=25
).map(lambda parts: "".join(piece + sep for piece, sep in parts))
_ANY = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=200)
_ASCII = st.text(alphabet=st.characters(max_codepoint=127), max_size=200)
_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.one_of(_EDGY, _ANY, _ASCII, st.sampled_from(CORPUS_TEXTS)))
@example("one two three 45")
@example("double five 555")
@example("nine eight two oh oh one")
@example("Colaba PS")
@example("near lamington rd.")
def test_random_text_gives_the_same_result_with_and_without_shortcuts(text):
    _both_ways(text)


@_SETTINGS
@given(st.one_of(_EDGY, _ASCII))
@example("one 2024")  # five digits, one word: the stage is run (and leaves a year alone)
@example("one one one one one")
@example("triple 5 one")
@example("someone 1234")  # "one" counted inside "someone": more, never fewer
def test_no_digit_word_run_only_when_the_stage_edits_nothing(text):
    if norm_module._no_digit_word_run(text):
        assert norm_module._digit_word_edits(text) == []


@_SETTINGS
@given(st.one_of(_EDGY, _ASCII))
@example("Colaba P.S.")
@example("Colaba p s")
@example("near the stn.")
@example("RD")
def test_no_rewritten_word_only_when_the_stage_edits_nothing(text):
    if norm_module._no_rewritten_word(text):
        assert norm_module._phrase_edits(text) == []


@_SETTINGS
@given(st.one_of(_EDGY, _ANY))
def test_skipped_character_stages_would_find_nothing(text):
    folded = norm_module._fold(text)
    if text.isascii():
        assert norm_module._identity(text) == folded
        assert norm_module._accented_letters(text, folded) == frozenset()
    if norm_module._ZERO_WIDTH.isdisjoint(text):
        assert norm_module._words_with_invisible_characters(text, folded) == []
        assert norm_module._invisible_breaks(text, folded) == frozenset()
    if norm_module._ASCII_DIGIT_RE.search(folded.text) is None:
        assert norm_module._digit_lookalike_edits(folded.text) == ([], [])
        assert norm_module._lone_lookalike_edits(folded.text) == ([], [])


# What the patterns that need a digit look for around it.
_AROUND_NUMBERS = [
    "FIR No. ", "case no: ", "Crime number ", "u/s ", "U / S. ", "section ", "Sec. ", "sr. no. ",
    "serial # ", " of ", "/", "-", ".", "March ", "mar", "Diwali ", "new year ", "the ", "st ",
    "th", "on ", "dated ", "PAN ", "ABCDE", "abc", "A", "MH ", "SBIN", "0", "O", "house no. ",
    "flat # ", "pin code ", "PIN: ", "school no. ", "shala number ", "ifsc ", "aadhaar no ",
    "\u0966", "\uff19", "\u00b2", "\u2460", "IPC", "POCSO", "'", ",",
]  # fmt: skip
_DIGITS_RE = re.compile(r"\d")


def _without_digits(text: str) -> str:
    return _DIGITS_RE.sub("", text)


def test_patterns_that_need_a_digit_find_nothing_in_the_corpora_without_their_digits():
    for text in CORPUS_TEXTS:
        stripped = _without_digits(normalise(text, _is_known_word).text)
        for regex in _NEEDS_A_DIGIT:
            assert regex.search(stripped) is None, (regex.pattern, stripped)


@_SETTINGS
@given(
    st.one_of(
        _ANY,
        st.lists(
            st.tuples(st.sampled_from(_AROUND_NUMBERS), st.sampled_from(_SEPARATORS)),
            max_size=20,
        ).map(lambda parts: "".join(piece + sep for piece, sep in parts)),
    )
)
def test_patterns_that_need_a_digit_find_nothing_without_one(text):
    text = _without_digits(text)
    for regex in _NEEDS_A_DIGIT:
        assert regex.search(text) is None, regex.pattern


@pytest.mark.parametrize(
    "text",
    [
        "nine eight two zero zero one two three four five",
        "call 98two0O l2345",
        "mera naam Meena, lamington rd, Colaba PS",
        "M-e-e-n-a, a t h i r t e e n y/o",
        "Kamāṭhipurā \u200bgali",
        "एक दो तीन चार पांच",
    ],
)
def test_texts_that_need_every_stage_are_unchanged_by_the_shortcuts(text):
    _both_ways(text)
    assert _scan(text), text
