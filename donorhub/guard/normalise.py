"""Normalise free text before the PII detectors look at it, keeping a map back to the original.

People who want an identifier to slip past a filter write it another way: "98200/12345",
"nine eight two oh oh…", "M-e-e-n-a", "९८२००", a Cyrillic "К", "lamington rd", "majha naav
…". The detectors are written for one spelling, so the text is first brought to that
spelling, in stages:

1. fold each character: NFKC, the digits of every script to ASCII, zero-width characters
   dropped, dashes and quotes unified, Latin diacritics stripped, Cyrillic and Greek
   look-alike letters mapped to Latin;
2. look-alike letters inside digit runs become digits ("982OO l2345", "MH0l");
3. letters split by separators are joined ("M-e-e-n-a", "m.e.e.n.a", "M e e n a");
4. digit words in English and Hindi (Latin and Devanagari script) become digits when they
   form a run of five or more digits ("nine eight two double zero…", "एक दो तीन…");
5. address abbreviations and Hindi/Marathi phrasings are rewritten to the words the
   detectors know ("rd" to "road", "majha naav" to "my name is"), from `data/rewrites.txt`.

Every normalised character remembers the span of original characters it came from, so a
finding over normalised text maps back to the exact original span the officer must see
masked, however much a stage shortened or lengthened the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = ["Normalised", "normalise", "DIGIT_WORDS"]


@dataclass(frozen=True)
class Normalised:
    text: str
    starts: tuple[int, ...]  # starts[j]: first original index of normalised character j
    ends: tuple[int, ...]  # ends[j]: one past the last original index it came from
    # Normalised spans of words that were written letter by letter ("M-e-e-n-a").
    joined: tuple[tuple[int, int], ...] = ()
    # Normalised spans of numbers written with look-alike letters ("982OO12345").
    disguised: tuple[tuple[int, int], ...] = ()

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Original span of the normalised span [start, end)."""
        return self.starts[start], self.ends[end - 1]


def normalise(
    text: str, is_known: Callable[[str], bool] | None = None, *, shortcuts: bool = True
) -> Normalised:
    """`is_known(word)` (lower case) lets letter-joining leave out a neighbouring one-letter
    word: "a t h i r t e e n y/o" is "a THIRTEEN y/o", not "ATHIRTEENY".

    With `shortcuts` (the default) a stage is skipped when the text lacks what the stage
    needs to change anything, which is cheap to check; most texts are plain ASCII prose.
    Each skip is exact, the stage would return nothing (the reason is given at each), so
    the result is the same either way: tests/guard/test_shortcuts.py compares both."""
    # Every ASCII character folds to itself: the identity map, without the per-character loop.
    norm = _identity(text) if shortcuts and text.isascii() else _fold(text)
    # Both look for a zero-width character in the original text.
    invisible = not (shortcuts and _ZERO_WIDTH.isdisjoint(text))
    hidden = _words_with_invisible_characters(text, norm) if invisible else []
    disguised: list[tuple[int, int]] = []
    # Both patterns need an ASCII digit (a look-alike counts only beside a real digit).
    if not (shortcuts and _ASCII_DIGIT_RE.search(norm.text) is None):
        edits, disguised = _digit_lookalike_edits(norm.text)
        norm, _ = _rewrite(norm, edits)
        edits, disguised_alone = _lone_lookalike_edits(norm.text)
        norm, _ = _rewrite(norm, edits)
        disguised += disguised_alone
    # Letters are joined before digit words are read: "z. e. r. o" is a digit word.
    edits, joined = _split_letter_edits(
        norm.text,
        is_known,
        _invisible_breaks(text, norm) if invisible else frozenset(),
        # An accented letter is a non-ASCII character of the original text.
        frozenset() if shortcuts and text.isascii() else _accented_letters(text, norm),
    )
    norm, moved = _rewrite(norm, edits)
    joined = _move(joined + hidden, moved)
    disguised = _move(disguised, moved)
    if not (shortcuts and _no_digit_word_run(norm.text)):
        norm, moved = _rewrite(norm, _digit_word_edits(norm.text))
        joined = _move(joined, moved)
        disguised = _move(disguised, moved)
    if not (shortcuts and _no_rewritten_word(norm.text)):
        norm, moved = _rewrite(norm, _phrase_edits(norm.text))
        joined = _move(joined, moved)
        disguised = _move(disguised, moved)
    return Normalised(norm.text, norm.starts, norm.ends, tuple(joined), tuple(disguised))


def _move(spans: list[tuple[int, int]], moved: list[int] | None) -> list[tuple[int, int]]:
    return spans if moved is None else [(moved[s], moved[e]) for s, e in spans]


_Edit = tuple[int, int, str]  # replace text[start:end] with the string


def _rewrite(norm: Normalised, edits: list[_Edit]) -> tuple[Normalised, list[int] | None]:
    """Apply non-overlapping edits (sorted by start); also return old -> new positions
    (None when there are no edits: every position stays where it is).

    Every character of a replacement maps to the whole original span it replaces.
    """
    if not edits:
        return norm, None
    text, starts, ends = norm.text, norm.starts, norm.ends
    parts: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    moved = [0] * (len(text) + 1)
    cursor = 0
    length = 0
    for start, end, replacement in edits:
        for i in range(cursor, start):
            moved[i] = length + i - cursor
        parts.append(text[cursor:start])
        new_starts.extend(starts[cursor:start])
        new_ends.extend(ends[cursor:start])
        length += start - cursor
        for i in range(start, end):
            moved[i] = length
        if replacement:
            parts.append(replacement)
            new_starts.extend([starts[start]] * len(replacement))
            new_ends.extend([ends[end - 1]] * len(replacement))
            length += len(replacement)
        cursor = end
    for i in range(cursor, len(text) + 1):
        moved[i] = length + i - cursor
    parts.append(text[cursor:])
    new_starts.extend(starts[cursor:])
    new_ends.extend(ends[cursor:])
    return Normalised("".join(parts), tuple(new_starts), tuple(new_ends)), moved


# ---------------------------------------------------------------------------------------
# 1. Characters

_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u034f")
_DASHES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d")
_SINGLE_QUOTES = frozenset("\u2018\u2019\u201a\u201b\u2032\u0060\u00b4")
_DOUBLE_QUOTES = frozenset("\u201c\u201d\u201e\u201f\u2033")
# Look-alike letters used to dodge keyword filters ("Кamathipura" with a Cyrillic K).
_CONFUSABLES = {
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w", "ү": "y", "ɡ": "g", "ɑ": "a", "ı": "i",
    "ȷ": "j", "ʏ": "y", "ᴅ": "d", "օ": "o", "ս": "u", "ց": "g", "ք": "p", "զ": "q",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S", "Ү": "Y", "Ӏ": "I",
    "Ԛ": "Q", "Ԝ": "W", "Ꭺ": "A", "Ᏼ": "B", "Ꮯ": "C", "Ꭼ": "E", "Ꮋ": "H", "Ꮶ": "K",
    "Ꮇ": "M", "Ꮲ": "P", "Ꮪ": "S", "Ꭲ": "T",
    "ο": "o", "α": "a", "ν": "v", "ρ": "p", "ι": "i", "κ": "k", "τ": "t", "υ": "u",
    "ϲ": "c", "ϳ": "j", "ε": "e", "η": "n", "μ": "u", "ω": "w", "γ": "y",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
}  # fmt: skip


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    if ch in _ZERO_WIDTH:
        return ""
    if ch in _DASHES:
        return "-"
    if ch in _SINGLE_QUOTES:
        return "'"
    if ch in _DOUBLE_QUOTES:
        return '"'
    if ch in "\u0964\u0965":  # Devanagari danda ends a sentence
        return "."
    if ch in _CONFUSABLES:
        return _CONFUSABLES[ch]
    digit = unicodedata.digit(ch, None)  # any script's digits: Devanagari, Bengali, fullwidth
    if digit is not None:
        return str(digit)
    folded = unicodedata.normalize("NFKC", ch)
    if folded.isascii():
        return folded
    # Strip diacritics from Latin letters ("Kamāṭhipurā"); keep other scripts intact.
    base = "".join(c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c))
    if base:
        return base if base.isascii() else folded
    # A lone accent after a Latin letter goes; a Devanagari vowel sign or virama stays.
    return "" if unicodedata.name(ch, "").startswith("COMBINING") else folded


_WORD_RE = re.compile(r"[A-Za-z]+")
_ASCII_DIGIT_RE = re.compile(r"[0-9]")


def _words_with_invisible_characters(text: str, norm: Normalised) -> list[tuple[int, int]]:
    """Folded words that had a zero-width character inside them ("mon\u200bdal")."""
    spans = []
    for m in _WORD_RE.finditer(norm.text):
        first, last = norm.starts[m.start()], norm.ends[m.end() - 1]
        if any(ch in _ZERO_WIDTH for ch in text[first:last]):
            spans.append((m.start(), m.end()))
    return spans


def _invisible_breaks(text: str, norm: Normalised) -> frozenset[int]:
    """Folded positions of letters that follow a letter across a zero-width character."""
    return frozenset(
        j
        for j in range(1, len(norm.text))
        if norm.text[j].isalpha()
        and norm.text[j - 1].isalpha()
        and any(ch in _ZERO_WIDTH for ch in text[norm.ends[j - 1] : norm.starts[j]])
    )


def _accented_letters(text: str, norm: Normalised) -> frozenset[int]:
    """Folded positions of Latin letters that carried an accent ("ā" folded to "a")."""
    return frozenset(
        j
        for j, ch in enumerate(norm.text)
        if ch.isascii()
        and ch.isalpha()
        and not text[norm.starts[j]].isascii()
        # A canonical decomposition is a letter with an accent; look-alikes have none.
        and unicodedata.decomposition(text[norm.starts[j]])[:1] not in ("", "<")
    )


def _identity(text: str) -> Normalised:
    """`_fold(text)` of an ASCII text: each character stays, in its place."""
    return Normalised(text, tuple(range(len(text))), tuple(range(1, len(text) + 1)))


def _fold(text: str) -> Normalised:
    parts: list[str] = []
    starts: list[int] = []
    for index, ch in enumerate(text):
        folded = ch if ch.isascii() else _fold_char(ch)
        parts.append(folded)
        starts.extend([index] * len(folded))
    return Normalised("".join(parts), tuple(starts), tuple(s + 1 for s in starts))


# ---------------------------------------------------------------------------------------
# 2. Look-alike letters inside digit runs

# A separator is anything that is neither a letter nor a digit nor a line break.
_SEP = r"[^A-Za-z0-9\u0900-\u097f\n]"
_LOOKALIKE_DIGITS = {"O": "0", "o": "0", "I": "1", "l": "1", "i": "1"}
# A token of digits and look-alikes with at least one real digit, after an optional letter
# prefix that stays letters ("MH0l" is "MH01").
_LOOKALIKE_TOKEN_RE = re.compile(
    r"(?<![A-Za-z0-9])(?P<prefix>[A-Za-z]{0,4}?)(?P<body>[0-9OoIli]*[0-9][0-9OoIli]*)"
    r"(?![A-Za-z0-9])"
)
# A look-alike standing alone between digits: "98200 O 12345", "4987 / l / 234".
_LOOKALIKE_ALONE_RE = re.compile(r"(?<![A-Za-z0-9])[OoIl]{1,3}(?![A-Za-z0-9])")
_DIGIT_BEFORE_RE = re.compile(rf"[0-9]{_SEP}{{1,4}}$")
_DIGIT_AFTER_RE = re.compile(rf"{_SEP}{{1,4}}[0-9]")


def _digit_lookalike_edits(text: str) -> tuple[list[_Edit], list[tuple[int, int]]]:
    edits: list[_Edit] = []
    spans: list[tuple[int, int]] = []
    for m in _LOOKALIKE_TOKEN_RE.finditer(text):
        body = m.group("body")
        if body.isdigit() or len(body) < 2:
            continue
        if len(body) >= 5:
            spans.append((m.start(), m.end()))
        for offset, ch in enumerate(body, start=m.start("body")):
            if ch in _LOOKALIKE_DIGITS:
                edits.append((offset, offset + 1, _LOOKALIKE_DIGITS[ch]))
    return edits, spans


def _ends_a_digit_run(lookalikes: str, gap: str) -> bool:
    """ "713 1 ol", "71_310\\l": look-alikes closing a number. A lone "I" after a space
    is the pronoun ("in 2024 I went"), so one letter needs a separator glued to it."""
    return len(lookalikes) >= 2 or not any(ch.isspace() for ch in gap)


def _lone_lookalike_edits(text: str) -> tuple[list[_Edit], list[tuple[int, int]]]:
    edits: list[_Edit] = []
    spans: list[tuple[int, int]] = []
    for m in _LOOKALIKE_ALONE_RE.finditer(text):
        before = _DIGIT_BEFORE_RE.search(text, max(0, m.start() - 5), m.start())
        if before and (
            _DIGIT_AFTER_RE.match(text, m.end()) or _ends_a_digit_run(m.group(), before.group())
        ):
            edits.append((m.start(), m.end(), "".join(_LOOKALIKE_DIGITS[c] for c in m.group())))
    return edits, spans


# ---------------------------------------------------------------------------------------
# 3. Digit words

DIGIT_WORDS = {
    # English
    "zero": "0", "oh": "0", "o": "0", "nought": "0", "naught": "0", "nil": "0",
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9",
    # Hindi and Marathi in Latin script
    "shunya": "0", "shoonya": "0", "sunya": "0", "shuny": "0", "shunye": "0", "sifar": "0",
    "ek": "1", "do": "2", "don": "2", "doan": "2", "teen": "3", "tin": "3", "char": "4",
    "chaar": "4", "paanch": "5", "panch": "5", "paach": "5", "pach": "5",
    "paanc": "5", "chhe": "6", "chhah": "6", "chah": "6", "chheh": "6",
    "chhai": "6", "che": "6", "saha": "6", "saat": "7", "sat": "7", "saath": "7",
    "aath": "8", "ath": "8", "aat": "8", "nau": "9", "nao": "9", "nou": "9", "naw": "9",
    # Hindi and Marathi in Devanagari script
    "शून्य": "0", "शुन्य": "0", "सुन्य": "0", "एक": "1", "दो": "2", "दोन": "2",
    "तीन": "3", "तिन": "3", "चार": "4", "पांच": "5", "पाँच": "5", "पाच": "5", "छह": "6",
    "छः": "6", "छे": "6", "छै": "6", "सहा": "6", "सात": "7", "आठ": "8", "नौ": "9",
    "नऊ": "9",
}  # fmt: skip
_MULTIPLIERS = {
    "double": 2, "triple": 3, "treble": 3, "dabal": 2, "dubal": 2, "tripal": 3,
    "डबल": 2, "ट्रिपल": 3, "दुगना": 2,
}  # fmt: skip
_WORD_OR_NUMBER_RE = re.compile(r"[A-Za-z]+|[\u0900-\u097f]+|[0-9]+")
_YEAR_RE = re.compile(r"(?:19|20)\d\d")
_GAP_RE = re.compile(rf"{_SEP}{{0,4}}")


# What a digit word or a multiplier in Latin script adds at most to a run's digits: one for a
# digit word; n - 1 for a multiplier of n, which turns the next digit into n ("double five").
_COUNTING_WORDS = {
    **{w: 1 for w in DIGIT_WORDS if w.isascii()},
    **{w: n - 1 for w, n in _MULTIPLIERS.items() if w.isascii()},
}
_ASCII_WORD_RE = re.compile(r"[a-z]+")


def _no_digit_word_run(text: str) -> bool:
    """True only when `_digit_word_edits(text)` is empty. It rewrites a run only if the run
    holds a digit word or a multiplier and its digits add up to five or more. In ASCII text
    those are Latin tokens (whole words: `[a-z]+` of the lower-cased text), and no run adds
    up to more than every digit of the text plus, for each counting word, its weight times
    the number of times it occurs (`str.count`, which may count more, never fewer)."""
    if not text.isascii():
        return False
    lower = text.lower()
    present = _COUNTING_WORDS.keys() & set(_ASCII_WORD_RE.findall(lower))
    if not present:
        return True
    digits = sum(map(text.count, "0123456789"))
    return digits + sum(lower.count(w) * _COUNTING_WORDS[w] for w in present) < 5


def _digit_word_edits(text: str) -> list[_Edit]:
    """Digit words become digits where they take part in a run of five or more digits."""
    items: list[tuple[int, int, str, str]] = []  # start, end, kind, digits
    for m in _WORD_OR_NUMBER_RE.finditer(text):
        token = m.group()
        if token.isdigit():
            items.append((m.start(), m.end(), "number", token))
            continue
        low = token.lower()
        if low in DIGIT_WORDS:
            items.append((m.start(), m.end(), "word", DIGIT_WORDS[low]))
        elif low in _MULTIPLIERS:
            items.append((m.start(), m.end(), "times", str(_MULTIPLIERS[low])))
        else:
            items.append((m.start(), m.end(), "other", ""))
    edits: list[_Edit] = []
    run: list[tuple[int, int, str, str]] = []

    def close_run() -> None:
        # A multiplier repeats the first digit of what follows it ("double five" is 55).
        while run and run[-1][2] == "times":
            run.pop()
        if not run:
            return
        pieces: list[tuple[int, int, str, str]] = []
        k = 0
        while k < len(run):
            start, end, kind, digits = run[k]
            if kind == "times" and k + 1 < len(run) and run[k + 1][2] != "times":
                nxt = run[k + 1]
                pieces.append((start, nxt[1], "word", nxt[3][0] * int(digits) + nxt[3][1:]))
                k += 2
                continue
            if kind != "times":
                pieces.append(run[k])
            k += 1
        total = sum(len(p[3]) for p in pieces)
        words = [p for p in pieces if p[2] == "word"]
        numbers = [p for p in pieces if p[2] == "number"]
        if total >= 5 and words:
            # "two 2024" or "one, 2023": a count next to a year, not a hidden number.
            if not (numbers and len(words) <= 2 and all(_YEAR_RE.fullmatch(p[3]) for p in numbers)):
                edits.extend((p[0], p[1], p[3]) for p in words)
        run.clear()

    previous_end = -1
    for item in items:
        if item[2] == "other":
            close_run()
            previous_end = -1
            continue
        if run and not _GAP_RE.fullmatch(text, previous_end, item[0]):
            close_run()
        if item[2] == "times" and run and run[-1][2] == "times":
            close_run()
        run.append(item)
        previous_end = item[1]
    close_run()
    edits.sort()
    return edits


# ---------------------------------------------------------------------------------------
# 4. Letters split by separators

# Three or more single letters with the same one to three separator characters between
# them ("M-e-e-n-a", "m.e.e.n.a", "M e e n a", "S_u_n_i_t_a", "c. h. h. a. h"). The same
# separator throughout keeps "G.B. r|o|a|d" two words. A comma followed by a space is a
# list ("A, B, C"), not a split word.
_SPLIT_LETTERS_RE = re.compile(
    r"(?<![A-Za-z0-9'])(?<![A-Za-z][.\-_*|/~+:\\])"
    # A word may be glued to the first letter: "Kamathi\u200bP_U_R_A", "Кa-v-i-t-a".
    r"(?:[A-Za-z]+(?=[A-Za-z][._*|~+:\\])|[A-Za-z](?=[A-Za-z]-))?[A-Za-z]"
    r"(?P<sep>[ .\-_*/|~+:'\\]{1,3}|,(?! ))[A-Za-z](?![A-Za-z0-9])"
    r"(?:(?P=sep)[A-Za-z](?![A-Za-z0-9]))+"
)


# Two letters split by a mark no word uses ("g*b Road", "p|s", "N*R"), or two lower-case
# letters split by a full stop and a space ("n. r the"): "J. K." stays initials.
_SPLIT_PAIR_RE = re.compile(
    r"(?<![A-Za-z0-9.'\-])(?:[A-Za-z][*_|~+\\][A-Za-z]|[a-z]\. [a-z])(?![A-Za-z0-9])"
)


def _trim_to_known(
    text: str, letters: list[int], is_known: Callable[[str], bool] | None
) -> list[int]:
    """Drop a first or last letter that is a word of its own when the rest is a known word."""
    word = "".join(text[i] for i in letters).lower()
    if is_known is None or is_known(word) or word in _rewrite_table()[1]:
        return letters
    # A last letter is a word of its own when punctuation glues it to another letter ("p.s.",
    # "y/o"; the full stop of "r. a. i. d." ends the spelling) or when it is the article "a".
    glued_after = re.match(r"[^A-Za-z0-9\s]+[A-Za-z]", text[letters[-1] + 1 : letters[-1] + 4])
    # Two glued first letters are an abbreviation of their own ("Nr. t. h. e", "St. X. a. v").
    abbreviated = letters[1] == letters[0] + 1
    for a, b in ((1, 0), (0, 1), (1, 1), (2, 0)):
        if a == 1 and word[0] not in "aio" or a == 2 and not abbreviated:
            continue
        if b and not glued_after and word[-1] != "a":
            continue
        kept = letters[a : len(letters) - b]
        rest = word[a : len(word) - b]
        if len(kept) >= 3 and (is_known(rest) or rest in _rewrite_table()[1]):
            return kept
    return letters


def _split_letter_edits(
    text: str,
    is_known: Callable[[str], bool] | None = None,
    breaks: frozenset[int] = frozenset(),
    accented: frozenset[int] = frozenset(),
) -> tuple[list[_Edit], list[tuple[int, int]]]:
    """`breaks`: positions where an invisible character stood between two letters. There a
    spelled-out word may be glued to a whole one ("Kamathi\u200bp-u-r-a", "k a m a t h
    i\u200bpura"); the rules run on a probe with a NUL at each break, mapped back.
    `accented`: positions of letters folded from accented ones. A word holding one may be
    glued by a space to letters spelled out next to it ("Kamāṭh i p u rā")."""
    if not breaks and not accented:
        return _split_letter_edits_of(text, is_known, frozenset())
    probe_parts: list[str] = []
    to_text: list[int] = []
    probe_accented: set[int] = set()
    for index, ch in enumerate(text):
        if index in breaks:
            probe_parts.append("\0")
            to_text.append(index)
        if index in accented:
            probe_accented.add(len(to_text))
        probe_parts.append(ch)
        to_text.append(index)
    to_text.append(len(text))
    probe_edits, probe_words = _split_letter_edits_of(
        "".join(probe_parts), is_known, frozenset(probe_accented)
    )
    edits = [
        (to_text[a], to_text[b], repl)
        for a, b, repl in probe_edits
        if to_text[a] < to_text[b] or repl
    ]
    return edits, [(to_text[a], to_text[b]) for a, b in probe_words]


_GLUED_AT_BREAK_BEFORE_RE = re.compile(r"[A-Za-z]+\0$")
_GLUED_AT_BREAK_AFTER_RE = re.compile(r"\0[A-Za-z]+")
_ACCENTED_WORD_BEFORE_RE = re.compile(r"[A-Za-z]+ $")
_ACCENTED_WORD_AFTER_RE = re.compile(r" [A-Za-z]+(?![A-Za-z0-9])")


def _split_letter_edits_of(
    text: str, is_known: Callable[[str], bool] | None, accented: frozenset[int]
) -> tuple[list[_Edit], list[tuple[int, int]]]:
    edits: list[_Edit] = []
    words: list[tuple[int, int]] = []
    for m in _SPLIT_LETTERS_RE.finditer(text):
        begin, finish = m.start(), m.end()
        if glued := _GLUED_AT_BREAK_BEFORE_RE.search(text, max(0, begin - 40), begin):
            begin = glued.start()
        if glued := _GLUED_AT_BREAK_AFTER_RE.match(text, finish):
            finish = glued.end()
        if accented and m.group("sep") == " ":
            word = _ACCENTED_WORD_BEFORE_RE.search(text, max(0, begin - 40), begin)
            if word and accented.intersection(range(word.start(), word.end())):
                begin = word.start()
            word = _ACCENTED_WORD_AFTER_RE.match(text, finish)
            if word and accented.intersection(range(word.start(), word.end())):
                finish = word.end()
        letters = [i for i in range(begin, finish) if text[i].isalpha()]
        # Only a space can stand between a spelled-out word and a one-letter word next to it.
        spaced = " " in m.group("sep")
        glued_at_break = (begin, finish) != (m.start(), m.end())
        kept = _trim_to_known(text, letters, is_known) if spaced and not glued_at_break else letters
        if kept is not letters:
            start, stop = kept[0], kept[-1] + 1
            words.append((start, stop))
            for index in range(start, stop):
                if text[index].isalpha():
                    if text[index].islower():
                        edits.append((index, index + 1, text[index].upper()))
                elif index > start and text[index - 1].isalpha():
                    gap = index
                    while not text[gap].isalpha():
                        gap += 1
                    edits.append((index, gap, ""))
            if stop < letters[-1]:
                # "THIRTEEN y/o", "NAGPADA p.s.": only a space parts the word from the next.
                edits.append((stop, letters[letters.index(stop - 1) + 1], " "))
            continue
        words.append((begin, finish))
        gap_start = None
        for index in range(begin, finish):
            if text[index].isalpha():
                # Spelled-out letters read as an acronym or a capitalised name ("f.i.r."
                # is FIR, "m.e.e.n.a" is MEENA), so the rules for capitals apply.
                if text[index].islower():
                    edits.append((index, index + 1, text[index].upper()))
                if gap_start is not None:
                    edits.append((gap_start, index, ""))
                    gap_start = None
            elif gap_start is None:
                gap_start = index
        # "m.a.r.c.h. 12", "t.h.i.r.t.e.e.n.-year-old": the separator after the last
        # letter belongs to the spelling, not to the sentence.
        marks = set(m.group("sep").strip())
        end = finish
        while end < len(text) and end - finish < 2 and text[end] in marks:
            end += 1
        if end > finish:
            edits.append((finish, end, ""))
    taken = [(w[0], w[1]) for w in words]
    for m in _SPLIT_PAIR_RE.finditer(text):
        if any(m.start() < stop and m.end() > start for start, stop in taken):
            continue
        edits.append((m.start(), m.end(), (m.group()[0] + m.group()[-1]).upper()))
    edits.sort()
    return edits, words


# ---------------------------------------------------------------------------------------
# 5. Abbreviations and phrasings


@lru_cache(maxsize=1)
def _rewrite_table() -> tuple[re.Pattern[str], dict[str, str]]:
    raw = resources.files(__package__).joinpath("data", "rewrites.txt").read_text("utf-8")
    table: dict[str, str] = {}
    for line in raw.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        written, meant = (part.strip() for part in line.split("=", 1))
        table[" ".join(written.lower().split())] = meant
    alternatives = sorted(table, key=len, reverse=True)
    pattern = "|".join(r"\s+".join(re.escape(w) for w in key.split()) for key in alternatives)
    return re.compile(rf"(?i)(?<![A-Za-z0-9])(?:{pattern})(?![A-Za-z0-9])"), table


# "PS" and "P.S." after a word are a police station ("Colaba PS"); at the start of a
# sentence "P.S." is a postscript.
_POLICE_STATION_ABBR_RE = re.compile(r"(?<=[A-Za-z][ ,])(?i:p\.?\s?s\.?)(?![A-Za-z0-9])")


@lru_cache(maxsize=1)
def _rewritten_first_words() -> frozenset[str] | None:
    """The letters each rewritten form begins with, up to the first non-letter ("rd" of "rd.",
    "mera" of "mera naam"), and "p", "ps" of the police station's "P.S."; None if a form
    does not begin with a letter (then `_no_rewritten_word` cannot tell)."""
    firsts = {"p", "ps"}
    for written in _rewrite_table()[1]:
        first = _ASCII_WORD_RE.match(written)
        if first is None:
            return None
        firsts.add(first.group())
    return frozenset(firsts)


def _no_rewritten_word(text: str) -> bool:
    """True only when `_phrase_edits(text)` is empty. In ASCII text a match of either pattern
    starts where no letter or digit precedes and the text's letters there, up to the next
    non-letter, are the form's first letters (its next character, or the lookahead after
    it, is never a letter), so one of those words must be among the text's words."""
    firsts = _rewritten_first_words()
    if firsts is None or not text.isascii():
        return False
    return firsts.isdisjoint(_ASCII_WORD_RE.findall(text.lower()))


def _phrase_edits(text: str) -> list[_Edit]:
    regex, table = _rewrite_table()
    edits = [
        (m.start(), m.end(), table[" ".join(m.group().lower().split())])
        for m in regex.finditer(text)
    ]
    taken = {(s, e) for s, e, _ in edits}
    for m in _POLICE_STATION_ABBR_RE.finditer(text):
        if (m.start(), m.end()) not in taken:
            edits.append((m.start(), m.end(), "police station"))
    edits.sort()
    # Two matches can touch but never overlap (each needs a word boundary on both sides).
    return edits
