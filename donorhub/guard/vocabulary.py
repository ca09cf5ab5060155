"""Which words of a text are in a known-safe vocabulary, and which are not.

The detectors in scan.py look for what an identifier looks like; a spelling they did not
foresee passes them. This module turns the default around: a word is recognised only when it
is in a vocabulary known to identify nobody (common English words from known_english.txt,
the guard's safe_words.txt and safe_phrases.txt, and the vocabularies the caller passes in),
and everything else is reported as unknown, for the safeguarding officer to look at. An
unknown word is not a finding: it quarantines nothing; it is never shown as "no flags".

Small counts (at most three digits, "3 friends", "5th") are recognised; longer numbers, and
digit groups that together make five digits or more, are not. Letters split by separators
("M-e-e-n-a") are joined and checked as one word. See docs/pii-guard.md, "Unknown words".
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

SMALL_COUNT_DIGITS = 3
JOINED_DIGITS = 5  # digit groups this long together are a number, however separated
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u034f")
_APOSTROPHES = frozenset("'\u2018\u2019\u02bc\u2032`\u00b4")
_ORDINALS = ("st", "nd", "rd", "th")
_SENTENCE_BREAK = frozenset(".!?;:\n\r\u0964\u0965")
_MAX_PHRASE = 5


@dataclass(frozen=True)
class UnknownWord:
    start: int  # offsets into the text as given: text[start:end] is the word
    end: int
    word: str


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    key: str  # folded, lower case: what is looked up
    is_number: bool


@dataclass(frozen=True)
class _Vocabulary:
    words: frozenset[str]
    phrases: frozenset[tuple[str, ...]]


def _read_list(name: str) -> list[str]:
    raw = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    entries = []
    for line in raw.splitlines():
        entry = line.split(" #", 1)[0].strip().lstrip("=").strip()
        if entry and not entry.startswith("#"):
            entries.append(entry)
    return entries


@lru_cache(maxsize=1)
def _vocabulary() -> _Vocabulary:
    words = set(_read_list("known_english.txt"))
    words.update(entry.lower() for entry in _read_list("safe_words.txt"))
    phrases = {tuple(t.key for t in _tokens(entry)) for entry in _read_list("safe_phrases.txt")}
    return _Vocabulary(frozenset(words), frozenset(p for p in phrases if p))


def _fold(ch: str) -> str:
    """One character as it is looked up: lower case, plain Latin letters, ASCII digits.
    A letter of another script, or a look-alike from one, stays itself and so stays unknown."""
    if ch in _ZERO_WIDTH:
        return ""
    if ch in _APOSTROPHES:
        return "'"
    if ch.isdecimal():
        return str(unicodedata.decimal(ch))
    folded = unicodedata.normalize("NFKC", ch)
    base = "".join(c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c))
    return (base if base.isascii() else folded).lower()


def _is_letter(ch: str) -> bool:
    return ch.isalpha() or unicodedata.category(ch).startswith("M") or ch in _ZERO_WIDTH


def _tokens(text: str) -> list[_Token]:
    """Words (letters, with apostrophes inside) and numbers, with their offsets."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if _is_letter(ch) and ch not in _ZERO_WIDTH:
            j = i + 1
            while j < n and (
                _is_letter(text[j])
                or (text[j] in _APOSTROPHES and j + 1 < n and text[j + 1].isalpha())
            ):
                j += 1
            tokens.append(_Token(i, j, "".join(_fold(c) for c in text[i:j]), False))
            i = j
        elif ch.isdecimal():
            j = i + 1
            while j < n and text[j].isdecimal():
                j += 1
            if text[j : j + 2].lower() in _ORDINALS and not text[j + 2 : j + 3].isalpha():
                j += 2  # "5th" is one number, not "5" and an unknown "th"
            tokens.append(_Token(i, j, "".join(_fold(c) for c in text[i:j]), True))
            i = j
        else:
            i += 1
    return tokens


def _gap(text: str, a: _Token, b: _Token) -> str:
    return text[a.end : b.start]


def _join_split_letters(text: str, tokens: list[_Token]) -> list[_Token]:
    """Three or more single letters in a row ("M-e-e-n-a", "m.e.e.n.a", "M E E N A")
    become one word, so a name spelled out letter by letter is looked up as the name."""
    joined: list[_Token] = []
    i = 0
    while i < len(tokens):
        j = i
        while (
            j + 1 < len(tokens)
            and not tokens[j].is_number
            and len(tokens[j].key) == 1
            and not tokens[j + 1].is_number
            and len(tokens[j + 1].key) == 1
            and 0 < len(_gap(text, tokens[j], tokens[j + 1])) <= 2
            and not any(c.isalnum() for c in _gap(text, tokens[j], tokens[j + 1]))
        ):
            j += 1
        if j - i >= 2:
            key = "".join(t.key for t in tokens[i : j + 1])
            joined.append(_Token(tokens[i].start, tokens[j].end, key, False))
            i = j + 1
        else:
            joined.append(tokens[i])
            i += 1
    return joined


def _long_numbers(text: str, tokens: list[_Token]) -> set[int]:
    """Indexes of number tokens that belong to a run of five or more digits, however the
    groups are separated ("98200/12345", "2345 6789 0124")."""
    long: set[int] = set()
    i = 0
    while i < len(tokens):
        if not tokens[i].is_number:
            i += 1
            continue
        j, digits = i, sum(c.isdigit() for c in tokens[i].key)
        while (
            j + 1 < len(tokens)
            and tokens[j + 1].is_number
            and len(_gap(text, tokens[j], tokens[j + 1])) <= 3
            and not any(c.isalnum() for c in _gap(text, tokens[j], tokens[j + 1]))
        ):
            j += 1
            digits += sum(c.isdigit() for c in tokens[j].key)
        if digits >= JOINED_DIGITS:
            long.update(range(i, j + 1))
        i = j + 1
    return long


def _is_known_word(key: str, known: frozenset[str], extra: frozenset[str]) -> bool:
    if key in known or key in extra:
        return True
    if key.endswith("'s") or key.endswith("s'"):  # possessive of a known word
        base = key[:-2] if key.endswith("'s") else key[:-1]
        return base in known or base in extra
    return False


def _in_safe_phrases(tokens: list[_Token], phrases: frozenset[tuple[str, ...]]) -> set[int]:
    covered: set[int] = set()
    for i in range(len(tokens)):
        for length in range(min(_MAX_PHRASE, len(tokens) - i), 1, -1):
            if tuple(t.key for t in tokens[i : i + length]) in phrases:
                covered.update(range(i, i + length))
                break
    return covered


def unknown_words(text: str, extra_known: frozenset[str] = frozenset()) -> list[UnknownWord]:
    """Every word and number of `text` that is not in the known-safe vocabulary, in order.

    `extra_known` adds the caller's own vocabularies (lower-case words): the guard knows
    no feature, so the project's codes, interests and milestone words come in from outside.
    """
    if not text:
        return []
    vocabulary = _vocabulary()
    extra = frozenset(word.lower() for word in extra_known)
    tokens = _join_split_letters(text, _tokens(text))
    long_numbers = _long_numbers(text, tokens)
    in_phrase = _in_safe_phrases(tokens, vocabulary.phrases)
    unknown = []
    for index, token in enumerate(tokens):
        if index in in_phrase:
            continue
        if token.is_number:
            digits = sum(c.isdigit() for c in token.key)
            if index not in long_numbers and digits <= SMALL_COUNT_DIGITS:
                continue
        elif _is_known_word(token.key, vocabulary.words, extra):
            continue
        unknown.append(UnknownWord(token.start, token.end, text[token.start : token.end]))
    return unknown


def unknown_word_groups(text: str, words: list[UnknownWord]) -> list[UnknownWord]:
    """Neighbouring unknown words as one group ("Lamington Tardeo"): nothing but spaces or
    commas between them, no sentence break. `words` come from `unknown_words(text)`, perhaps
    filtered; a group's `word` is the text it spans."""
    groups: list[UnknownWord] = []
    for word in words:
        if groups:
            last = groups[-1]
            between = text[last.end : word.start]
            if (
                len(between) <= 3
                and not any(c.isalnum() for c in between)
                and not any(c in _SENTENCE_BREAK for c in between)
            ):
                groups[-1] = UnknownWord(last.start, word.end, text[last.start : word.end])
                continue
        groups.append(word)
    return groups
