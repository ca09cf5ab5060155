"""The guard's vocabulary check: a word is recognised only when a known-safe vocabulary has it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from donorhub.guard import unknown_word_groups, unknown_words


def words(text: str, extra: frozenset[str] = frozenset()) -> list[str]:
    return [w.word for w in unknown_words(text, extra)]


def data_list(name: str) -> list[str]:
    raw = resources.files("donorhub.guard").joinpath("data", name).read_text(encoding="utf-8")
    return [line.strip() for line in raw.splitlines() if line.strip() and line[0] != "#"]


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("She won the relay and read a whole book.", []),
        ("Past Lamington Tardeo near Kamathipura.", ["Lamington", "Tardeo", "Kamathipura"]),
        # A name spelled out letter by letter is looked up as the name.
        ("M-e-e-n-a loves drawing.", ["M-e-e-n-a"]),
        ("m.e.e.n.a loves drawing.", ["m.e.e.n.a"]),
        # Small counts are words; five digits or more, however grouped, are not.
        ("She is in the 5th class with 3 friends and 12 cousins.", []),
        ("Call 98200/12345 or 98200_12345.", ["98200", "12345", "98200", "12345"]),
        ("Her number is 2345/6789/0124.", ["2345", "6789", "0124"]),
        ("Her number is 98 20 01 23 45.", ["98", "20", "01", "23", "45"]),
        ("Born in 2012.", ["2012"]),
        # Other scripts and look-alike letters are never English words.
        ("मेरा नाम Meena", ["मेरा", "नाम", "Meena"]),
        ("Her m\u043ether sings.", ["m\u043ether"]),  # a Cyrillic o
        # The guard's safe words and phrases count as known.
        ("She celebrated Durga Puja and Diwali in Maharashtra.", []),
        # Possessives and contractions of known words.
        ("Her mother's friend didn't come; the girls' team won.", []),
    ],
)
def test_unknown_words(text, unknown):
    assert words(text) == unknown


def test_a_word_that_is_also_a_name_is_never_known():
    """ "Hope", "Rose" or "Will" may be a girl's name: the officer sees them highlighted."""
    assert words("She has hope and a rose, and more.") == ["hope", "rose", "more"]


def test_the_callers_vocabulary_is_recognised():
    assert words("She moved to aftercare.") == ["aftercare"]
    assert words("She moved to aftercare.", frozenset({"Aftercare"})) == []


def test_offsets_point_into_the_text_as_given():
    text = "\uff2c\uff41\uff4d\uff49\uff4e\uff47\uff54\uff4f\uff4e Road"  # full-width letters
    [word] = unknown_words(text)
    assert (word.start, word.end, text[word.start : word.end]) == (0, 9, word.word)


def test_neighbouring_unknown_words_form_one_group_a_sentence_break_ends_it():
    text = "Near Lamington Tardeo, Kamathipura. Bhendi market."
    groups = unknown_word_groups(text, unknown_words(text))
    assert [g.word for g in groups] == ["Lamington Tardeo, Kamathipura", "Bhendi"]


def test_the_known_english_list_holds_no_name_or_place_of_the_guards_lists():
    known = set(data_list("known_english.txt"))
    assert len(known) > 30_000 and {"mother", "school", "colour", "color"} <= known
    names = {
        entry.lstrip("=").strip().lower()
        for list_name in (
            "given_names_female.txt",
            "given_names_male.txt",
            "surnames.txt",
            "places.txt",
            "names_ambiguous_english.txt",
            "names_ambiguous_indian.txt",
        )
        for entry in data_list(list_name)
        if " " not in entry.split(" #", 1)[0].strip()
    }
    assert sorted(known & names) == []
    assert all(word == word.lower() and not word.endswith("'s") for word in known)


def test_most_ordinary_update_sentences_are_fully_recognised():
    """Highlighting is not quarantine, but an officer who sees marks on every text stops
    reading them: the figure says how often an ordinary sentence carries none."""
    from tests.metrics import METRICS

    raw = (Path(__file__).parent / "corpus" / "pii_negative.txt").read_text(encoding="utf-8")
    sentences = [line for line in raw.splitlines() if line.strip() and line[0] != "#"]
    marked = [s for s in sentences if unknown_words(s)]
    METRICS.report(
        "guard vocabulary: negative-corpus sentences with no unknown word",
        f"{len(sentences) - len(marked)} of {len(sentences)}",
    )
    assert len(marked) <= len(sentences) // 5
