"""PII guard for the free text of the partner feed (`about` and `text`) and officers' edits of it.

`scan_text` reports every span that could help identify a child: names, contact details,
ID numbers, places, schools, exact dates and ages, case numbers. A record with any finding
is quarantined for a safeguarding officer, so the guard errs toward flagging: a false
positive costs a reviewer a minute, a false negative can cost a child her safety.

The text is normalised first (`normalise.py`: characters folded, look-alike digits, digit
words, letters split by separators, abbreviations and Hindi/Marathi phrasings) so that
"98200/12345", "nine eight two oh oh…", "M-e-e-n-a" or "lamington rd" cannot slip through.
Every normalised character remembers the original span it came from, so offsets always
point into the ORIGINAL text even when normalising changes its length.

Word lists live in `data/*.txt` next to this module; see docs/pii-guard.md.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, NamedTuple, TypeVar

from donorhub.guard.normalise import DIGIT_WORDS, Normalised, normalise

DETECTORS = (
    "person_name",
    "phone",
    "email",
    "url",
    "social_handle",
    "aadhaar",
    "id_number",
    "pin_code",
    "place",
    "school",
    "exact_date",
    "exact_age",
    "case_number",
)


@dataclass(frozen=True)
class Finding:
    detector: str  # one of DETECTORS
    start: int  # offsets into the original text: text[start:end] is the flagged span
    end: int
    rule: str  # short human description of why the span was flagged


GUARD_ERROR_RULE = "internal guard error: the whole text needs review"


def scan_text(text: str) -> list[Finding]:
    """Return every possible identifier in `text`, sorted by start offset.

    Pure and deterministic. Fails closed: if a detector ever breaks on some input, the whole
    text is reported as one finding instead of letting it through unchecked.
    """
    if not isinstance(text, str):
        raise TypeError("scan_text expects a str")
    if not text:
        return []
    try:
        return _scan(text)
    except Exception:  # failing open would publish unchecked text
        return [Finding("person_name", 0, len(text), GUARD_ERROR_RULE)]


# ---------------------------------------------------------------------------------------
# Word lists


_V = TypeVar("_V")


class _PhraseTable(dict[str, _V]):
    """Phrase key ("dil maya") -> value, and for every first word the lengths in words of
    the phrases it begins, longest first. A key of n words can only equal n tokens joined
    by spaces whose first is its first word, so `phrase_hits` looks up only those lengths,
    and nothing for a token that begins no phrase (most of them)."""

    def __init__(self, entries: dict[str, _V]) -> None:
        super().__init__(entries)
        lengths: dict[str, set[int]] = {}
        for key in self:
            words = key.split(" ")
            lengths.setdefault(words[0], set()).add(len(words))
        self.lengths = {word: tuple(sorted(n, reverse=True)) for word, n in lengths.items()}


@dataclass(frozen=True)
class _Lexicon:
    names: _PhraseTable[str]  # phrase key -> "given" | "surname"
    ambiguous_english: frozenset[str]
    ambiguous_indian: frozenset[str]
    common: frozenset[str]
    safe_words: frozenset[str]
    safe_phrases: _PhraseTable[frozenset[str] | None]
    places: _PhraseTable[frozenset[str] | None]
    schools: _PhraseTable[frozenset[str] | None]


def _read_list(name: str) -> list[str]:
    raw = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    entries = []
    for line in raw.splitlines():
        entry = line.split(" #", 1)[0].strip()
        if entry and not entry.startswith("#"):
            entries.append(entry)
    return entries


def _phrase_key(phrase: str) -> str:
    return " ".join(_TOKEN_RE.findall(phrase.lower()))


def _phrase_table(entries: list[str]) -> _PhraseTable[frozenset[str] | None]:
    """Map a phrase key to None (any case matches) or to the exact spellings allowed.

    A leading "=" in a list marks a name that is also an ordinary word ("=Puri"), which
    must then match with its exact capitalisation.
    """
    exact: dict[str, set[str]] = {}
    loose: set[str] = set()
    for entry in entries:
        if entry.startswith("="):
            body = entry[1:].strip()
            exact.setdefault(_phrase_key(body), set()).add(" ".join(_TOKEN_RE.findall(body)))
        else:
            loose.add(_phrase_key(entry))
    table: dict[str, frozenset[str] | None] = {k: frozenset(v) for k, v in exact.items()}
    for key in loose:
        table[key] = None
    table.pop("", None)
    return _PhraseTable(table)


@lru_cache(maxsize=1)
def _lexicon() -> _Lexicon:
    names: dict[str, str] = {}
    for entry in _read_list("surnames.txt"):
        names[_phrase_key(entry)] = "surname"
    for file in ("given_names_female.txt", "given_names_male.txt"):
        for entry in _read_list(file):
            names[_phrase_key(entry)] = "given"
    names.pop("", None)
    return _Lexicon(
        names=_PhraseTable(names),
        ambiguous_english=frozenset(_read_list("names_ambiguous_english.txt")),
        ambiguous_indian=frozenset(_read_list("names_ambiguous_indian.txt")),
        common=frozenset(_read_list("common_words.txt")),
        safe_words=frozenset(_read_list("safe_words.txt")),
        safe_phrases=_phrase_table(_read_list("safe_phrases.txt")),
        places=_phrase_table(_read_list("places.txt")),
        schools=_phrase_table(_read_list("schools.txt")),
    )


# ---------------------------------------------------------------------------------------
# Tokens and shared helpers

_TOKEN_RE = re.compile(r"[A-Za-z]+|[0-9]+")
_PHRASE_GAP_RE = re.compile(r"[ \t.'\-]{0,3}")
_PHRASE_GAP_CHARS = " \t.'-"
_ANY_DIGIT_RE = re.compile(r"\d")  # any script's decimal digits: it includes [0-9]
_ENGLISH_SUFFIXES = (
    "ing", "ings", "ly", "tion", "tions", "sion", "ment", "ments", "ness", "ful", "ous",
    "ity", "ies", "ive", "able", "ible", "ship", "ance", "ence", "ers", "ism", "ist",
    "ists", "less", "est", "ward", "wards",
)  # fmt: skip
_MONTH_WORDS = frozenset(
    "january february march april may june july august september october november "
    "december monday tuesday wednesday thursday friday saturday sunday".split()
)
_ROMAN_RE = re.compile(r"[IVXL]+")


class _Token(NamedTuple):
    """A word ([A-Za-z]+) or a number ([0-9]+) of the normalised text: its lower case and
    whether it is capitalised are computed once, as every detector asks."""

    start: int
    end: int
    text: str
    lower: str  # text.lower()
    is_cap: bool  # text[0].isupper()


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for m in _TOKEN_RE.finditer(text):
        word = m.group()
        tokens.append(_Token(m.start(), m.end(), word, word.lower(), word[0].isupper()))
    return tokens


class _Context:
    """Folded text, its tokens and the findings collected so far (in folded offsets)."""

    def __init__(self, folded: Normalised, shortcuts: bool = True) -> None:
        self.folded = folded
        self.text = folded.text
        self.lex = _lexicon()
        self.tokens = _tokens(self.text)
        self.lowers = [tok.lower for tok in self.tokens]
        self.token_at = {tok.start: i for i, tok in enumerate(self.tokens)}
        gaps = [
            self.text[a.end : b.start] for a, b in zip(self.tokens, self.tokens[1:], strict=False)
        ]
        # _PHRASE_GAP_RE.fullmatch: at most three characters, each one of those it allows.
        self.phrase_gap = [len(gap) <= 3 and not gap.strip(_PHRASE_GAP_CHARS) for gap in gaps]
        self.space_gap = [gap in (" ", "  ") for gap in gaps]
        # Without `shortcuts` every pattern is run, as if the text had a digit.
        self.has_digit = not shortcuts or _ANY_DIGIT_RE.search(self.text) is not None
        self.findings: list[tuple[str, int, int, str]] = []
        self.joined_starts = frozenset(start for start, _ in folded.joined)
        self.masked = bytearray(len(self.text))  # safe phrases
        self.numeric_claimed = bytearray(len(self.text))  # numbers already explained
        self.covered = bytearray(len(self.text))  # any non-name finding

    def finditer(self, regex: re.Pattern[str]) -> Iterator[re.Match[str]]:
        """`regex.finditer(text)`; for a pattern of which every match holds a digit
        (`_NEEDS_A_DIGIT`), nothing without a scan when the text has no digit at all."""
        if not self.has_digit and id(regex) in _NEEDS_A_DIGIT_IDS:
            return iter(())
        return regex.finditer(self.text)

    def add(self, detector: str, start: int, end: int, rule: str) -> None:
        if end <= start:
            return
        self.findings.append((detector, start, end, rule))
        if detector != "person_name":
            self.covered[start:end] = b"\x01" * (end - start)

    def claim_numbers(self, start: int, end: int) -> None:
        self.numeric_claimed[start:end] = b"\x01" * (end - start)

    def is_masked(self, start: int, end: int) -> bool:
        return any(self.masked[start:end])

    def is_covered(self, start: int, end: int) -> bool:
        return any(self.covered[start:end])

    def is_common(self, word: str) -> bool:
        """True for ordinary English (or safe) words, including regular inflections."""
        low = word.lower()
        lex = self.lex
        if low in lex.common or low in lex.safe_words:
            return True
        if low.endswith("'s"):
            low = low[:-2]
        if low.endswith("s") and (low[:-1] in lex.common or low[:-1] in lex.safe_words):
            return True
        if low.endswith("es") and low[:-2] in lex.common:
            return True
        if low.endswith("ies") and low[:-3] + "y" in lex.common:
            return True
        if len(low) >= 6 and low.endswith("ed"):
            return True
        return len(low) >= 5 and low.endswith(_ENGLISH_SUFFIXES)

    def sentence_initial(self, start: int) -> bool:
        j = start - 1
        while j >= 0 and self.text[j] in " \t\"'([{*-\u2022>":
            j -= 1
        return j < 0 or self.text[j] in ".!?:;\n\r|"

    def phrase_hits(self, table: _PhraseTable[Any], max_len: int) -> list[tuple[int, int]]:
        """Longest-first matches of multi-word phrases; returns token index ranges."""
        hits = []
        tokens, lowers, phrase_gap = self.tokens, self.lowers, self.phrase_gap
        count = len(tokens)
        i = 0
        while i < count:
            matched = 0
            for length in table.lengths.get(lowers[i], ()):
                if length > max_len or length > count - i:
                    continue
                if length > 1 and not all(phrase_gap[i : i + length - 1]):
                    continue
                spellings = table.get(" ".join(lowers[i : i + length]), ...)
                if spellings is ...:
                    continue
                if isinstance(spellings, frozenset):
                    surface = " ".join(t.text for t in tokens[i : i + length])
                    if surface not in spellings and not surface.isupper():
                        continue
                hits.append((i, i + length))
                matched = length
                break
            i += matched or 1
        return hits


def _scan(text: str, shortcuts: bool = True) -> list[Finding]:
    """`shortcuts=False` runs every stage of the normaliser and every pattern (the same
    findings, slower: tests/guard/test_shortcuts.py)."""
    ctx = _Context(normalise(text, _is_known_word, shortcuts=shortcuts), shortcuts)
    _mask_safe_phrases(ctx)
    _detect_contact(ctx)
    _detect_case_numbers(ctx)
    _detect_dates(ctx)
    _detect_id_patterns(ctx)
    _detect_digit_runs(ctx)
    _detect_spelled_digits(ctx)
    _detect_ages(ctx)
    _detect_places(ctx)
    _detect_schools(ctx)
    _detect_names(ctx)
    _detect_unreadable_script(ctx)
    return _finalise(ctx)


def _is_known_word(word: str) -> bool:
    """A word the lists know: common, a name, a place, a digit word or a month."""
    lex = _lexicon()
    return (
        word in lex.common
        or word in lex.safe_words
        or word in lex.names
        or word in lex.places
        or word in DIGIT_WORDS
        or word in _MONTH_WORDS
        or word in _ADDRESS_SUFFIXES
        or word in _SCHOOL_SUFFIXES
        or word in _school_words()
    )


@lru_cache(maxsize=1)
def _school_words() -> frozenset[str]:
    """Words of listed school names ("xavier"), so "S. t. X. a. v. i. e. r" can be read."""
    return frozenset(w for key in _lexicon().schools for w in key.split() if len(w) >= 3)


def _finalise(ctx: _Context) -> list[Finding]:
    """Map to original offsets and merge overlapping findings of the same detector."""
    by_detector: dict[str, list[tuple[int, int, str]]] = {}
    for detector, start, end, rule in ctx.findings:
        o_start, o_end = ctx.folded.to_original(start, end)
        by_detector.setdefault(detector, []).append((o_start, o_end, rule))
    results = []
    for detector, spans in by_detector.items():
        spans.sort(key=lambda s: (s[0], -s[1]))
        current: list = list(spans[0])  # start, end, rule
        for start, end, rule in spans[1:]:
            if start < current[1]:
                current[1] = max(current[1], end)
            else:
                results.append(Finding(detector, current[0], current[1], current[2]))
                current = [start, end, rule]
        results.append(Finding(detector, current[0], current[1], current[2]))
    results.sort(key=lambda f: (f.start, f.end, DETECTORS.index(f.detector)))
    return results


def _mask_safe_phrases(ctx: _Context) -> None:
    for i, j in ctx.phrase_hits(ctx.lex.safe_phrases, 4):
        start, end = ctx.tokens[i].start, ctx.tokens[j - 1].end
        ctx.masked[start:end] = b"\x01" * (end - start)


# ---------------------------------------------------------------------------------------
# E-mail, URL, social handles

_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*"
)
_OBFUSCATED_EMAIL_RE = re.compile(
    r"(?i:\b[a-z0-9._%+\-]+\s*(?:\(at\)|\[at\]|\{at\}|<at>|\sat\s|@)\s*[a-z0-9\-]+"
    r"\s*(?:\(dot\)|\[dot\]|\{dot\}|<dot>|\sdot\s|\.)\s*(?:com|in|org|net|co)\b)"
)
_PROVIDER_EMAIL_RE = re.compile(
    r"(?i:\b[a-z0-9._%+\-]+\s*(?:\(at\)|\[at\]|\{at\}|<at>|\sat\s|@)\s*"
    r"(?:gmail|g\s?mail|yahoo|hotmail|outlook|rediffmail|rediff|ymail|icloud|protonmail|"
    r"okaxis|oksbi|okhdfcbank|okicici|ybl|ibl|axl|apl|paytm|upi)\b)"
)
_EMAIL_MENTION_RE = re.compile(
    r"(?i:\b(?:e-?mail|gmail|mail)\s*(?:(?:id|address)\s*(?:is|:|-|=)?|:)\s*[a-z0-9._%+\-]{3,})"
)
_URL_RE = re.compile(r"(?i:(?:https?|hxxps?|ftp)://|www\.)[^\s<>\"']+")
_BARE_DOMAIN_RE = re.compile(
    r"(?<![A-Za-z0-9@.\-])(?:[A-Za-z0-9][A-Za-z0-9\-]*\.)+"
    r"(?:com|org|net|in|io|me|ly|co|info|biz|app|xyz|online|site|link|gl|to|tk|us|uk|edu"
    r"|gov|ngo|page|club|live|store|shop|blog|tv|cc|ws|gg|ai|ml|ga|cf|be)"
    r"(?![A-Za-z0-9\-])(?:/[^\s<>\"']*)?"
)
_OBFUSCATED_URL_RE = re.compile(
    r"(?i:\b(?:www\s*(?:\(dot\)|\[dot\]|\sdot\s)\s*)?[a-z0-9\-]{2,}\s*"
    r"(?:\(dot\)|\[dot\]|\{dot\}|\sdot\s)\s*(?:com|in|org|net|co|ly|me)\b)"
)
# "www . priyasart . in", "bit . ly/abc", "youtu dot be/abc": a domain with its dots
# spaced out or written as a word.
_SPACED_DOMAIN_RE = re.compile(
    r"(?i:\b(?:www\s*(?:\.|\(dot\)|\[dot\]|\sdot\s)\s*)?[a-z0-9\-]{2,}"
    r"(?:\s+\.\s*|\s*\.\s+|\s*(?:\(dot\)|\[dot\]|\{dot\})\s*|\s+dot\s+)"
    r"(?:com|in|org|net|co|ly|me|be|io|gl|to|tv)\b(?:\s*/\s*[^\s<>\"']+)?)"
)
_HANDLE_RE = re.compile(r"(?<![A-Za-z0-9_.@])@\s?[A-Za-z0-9_][A-Za-z0-9_.]{1,29}")
_SOCIAL_URL_RE = re.compile(
    r"(?i:\b(?:fb|facebook|instagram|insta|wa|t|twitter|x|tiktok|youtube|youtu|snapchat|"
    r"threads|linkedin)\.(?:com|me|be|net)/[^\s<>\"']+)"
)
_STRONG_PLATFORMS = (
    r"instagram|insta|facebook|whats\s?app|snapchat|snap|telegram|tik\s?tok|twitter|"
    r"sharechat|youtube|skype|discord|linkedin|roblox|free\s?fire|pubg|bgmi"
)
_WEAK_PLATFORMS = r"ig|fb|wa|yt|tg|x|moj|josh|imo"
_PLATFORM_ID_RE = re.compile(
    rf"(?i:\b(?:(?P<strong>{_STRONG_PLATFORMS})|(?P<weak>{_WEAK_PLATFORMS}))\b"
    r"(?:\s*(?P<idword>id|handle|user\s?name|account|acc|page|channel|no\.?|number|num|#))?"
    r"\s*(?P<sep>:|=|-|is|pe|par|as|on)?\s*"
    r"(?P<value>\d(?:[\s.,\-_/|]{0,3}\d){4,}|@?[a-z0-9_.]{3,40}))"
)


def _detect_contact(ctx: _Context) -> None:
    text = ctx.text
    for regex, detector, rule in (
        (_EMAIL_RE, "email", "e-mail address or UPI id (user@domain)"),
        (_OBFUSCATED_EMAIL_RE, "email", "e-mail address written out (name at domain dot com)"),
        (_PROVIDER_EMAIL_RE, "email", "e-mail address at a mail provider"),
        (_EMAIL_MENTION_RE, "email", "e-mail id given in words"),
        (_URL_RE, "url", "web address"),
        (_BARE_DOMAIN_RE, "url", "domain name or short link"),
        (_OBFUSCATED_URL_RE, "url", "web address written out (site dot com)"),
        (_SPACED_DOMAIN_RE, "url", "web address with its dots spaced or written out"),
        (_SOCIAL_URL_RE, "social_handle", "social-media profile link"),
    ):
        for m in regex.finditer(text):
            end = m.end()
            while end > m.start() + 1 and text[end - 1] in ".,;:!?)]}":
                end -= 1  # sentence punctuation after a link is not part of it
            ctx.add(detector, m.start(), end, rule)
            ctx.claim_numbers(m.start(), end)
    for m in _HANDLE_RE.finditer(text):
        if not any(ch.isalpha() for ch in m.group()):
            continue
        ctx.add("social_handle", m.start(), m.end(), "@handle")
        ctx.claim_numbers(m.start(), m.end())
    for m in _PLATFORM_ID_RE.finditer(text):
        value = m.group("value")
        introduced = bool(m.group("idword") or m.group("sep") in (":", "=", "-", "is"))
        id_like = any(ch.isdigit() or ch in "_.@" for ch in value)
        if m.group("weak") and not introduced:
            continue
        if not id_like and (not introduced or ctx.is_common(value.strip("@."))):
            continue
        # Numbers are not claimed: "WhatsApp 98200 12345" must also be reported as a phone.
        ctx.add("social_handle", m.start(), m.end(), "social-media platform with an id")


# ---------------------------------------------------------------------------------------
# Case numbers and legal references

_FIR_RE = re.compile(
    r"\bF\.?\s?I\.?\s?R\b\.?(?:\s*(?:(?i:no|number|num)\.?|#)\s*[:.\-]?\s*[\w/.\-]*\d[\w/\-]*)?"
)
_CASE_NO_RE = re.compile(
    r"(?i:\b(?:c\.?\s?r|crime|case|c\.\s?c|r\.?\s?c\.?\s?c|sessions\s+case|s\.\s?c|m\.\s?r|"
    r"g\.\s?d|n\.\s?c|file|ref(?:erence)?|complaint|petition|order|jjb|cwc|diary|register|"
    r"docket|fir)\.?\s*(?:no\.?|number|num|#)\s*[:.\-]?\s*[\w/.\-]*\d[\w/\-]*)"
)
_US_SECTION_RE = re.compile(
    r"(?i:\bu\s?/\s?s\.?\s*\d+[a-z]?(?:\s*\([0-9a-z]{1,4}\)){0,4}"
    r"(?:\s*(?:,|and|&|/|r/w)\s*\d+[a-z]?(?:\s*\([0-9a-z]{1,4}\)){0,4}){0,6}"
    r"(?:\s+(?:of\s+)?(?:the\s+)?(?:ipc|i\.p\.c\.?|bns|bnss|pocso|pita|itpa|crpc|jj\s+act))?)"
)
_SECTION_LAW_RE = re.compile(
    r"(?i:\b(?:sections?|secs?\.?|s\.)\s*\d+[a-z]?(?:\s*\([0-9a-z]{1,4}\)){0,4}"
    r"(?:\s*(?:,|and|&|/|r/w)\s*\d+[a-z]?(?:\s*\([0-9a-z]{1,4}\)){0,4}){0,6}"
    r"\s+(?:of\s+)?(?:the\s+)?(?:ipc|i\.p\.c\.?|bns|bnss|pocso|pita|itpa|crpc|"
    r"jj\s+act|immoral\s+traffic|juvenile\s+justice|it\s+act)\b)"
)
_LEGAL_ACRONYM_RE = re.compile(
    r"\b(?:POCSO|PITA|ITPA|IPC|BNS|BNSS|CrPC|JJB|CWC|NCPCR|SCPCR|AHTU|SJPU|DCPU|DLSA)\b"
    r"|(?i:\b(?:pocso|itpa|ipc|bnss|crpc|jjb|cwc|ncpcr|scpcr|ahtu|sjpu|dcpu|dlsa)\b)"
    # "pita" is also Hindi for father: in lower case only next to a legal word.
    r"|(?i:\b(?:pita|bns)\b(?=\s+(?:case|act|section|sections|court|hearing|charges?|trial)\b))"
)
_LEGAL_WORDS_RE = re.compile(
    r"(?i:\b(?:child\s+welfare\s+committee|juvenile\s+justice\s+board|"
    r"anti[\s-]human\s+trafficking\s+unit|immoral\s+traffic|sessions\s+court|magistrate|"
    r"charge[\s-]?sheet(?:ed)?|court\s+(?:hearing|case|date|order)s?|testif(?:y|ied|ies)|"
    r"deposition|traffickers?|brothels?|raid(?:s|ed)?|rescue\s+operations?|rescued\s+from|"
    r"pimp|pimps|madam\s+of)\b)"
)
_SERIAL_RE = re.compile(
    r"(?i:\b(?:s[rl]\.?\s?(?:no\.?|number|#)|serial\s+(?:no\.?|number|#))\s*[:.\-]?\s*\d+)"
)
_POLICE_RE = re.compile(r"(?i:\bpolice\s+(?:station|chowki|thana|post|outpost|choki)\b)")
_STATION_ABBR_RE = re.compile(r"\b([A-Z][a-z]+)\s+(?:P\.\s?S\.?|PS\b|(?i:thana)\b)")
_NUMBER_YEAR_RE = re.compile(r"(?<![\w/])\d{1,6}/(?:19|20)\d{2}(?![\w/])")
# "145 of 2024", "No. 88 of 2023": the way courts and the police number cases.
_NUMBER_OF_YEAR_RE = re.compile(
    r"(?:\b(?i:no|number|num)\.?\s*)?(?<![\w/])\d{1,6}\s+of\s+(?:19|20)\d{2}(?![\w/])"
)


# "_" counts as a separator here as it does in digit runs ("7531 _ 0864/2099").
_RUN_BEFORE_RE = re.compile(r"\d[^A-Za-z0-9\n]{1,4}$")
_RUN_AFTER_RE = re.compile(r"(?![,;.]\s)[^A-Za-z0-9\n]{1,4}\d")


def _continues_a_digit_run(text: str, start: int, end: int) -> bool:
    """True for "0864/2099" inside "7531 _ 0864/2099": part of a longer number."""
    return bool(
        _RUN_BEFORE_RE.search(text, max(0, start - 5), start) or _RUN_AFTER_RE.match(text, end)
    )


def _detect_case_numbers(ctx: _Context) -> None:
    text = ctx.text
    for regex, rule in (
        (_FIR_RE, "FIR (police first information report) reference"),
        (_CASE_NO_RE, "case, crime, order or file number"),
        (_US_SECTION_RE, "legal section reference (u/s)"),
        (_SECTION_LAW_RE, "legal section reference"),
        (_LEGAL_ACRONYM_RE, "legal body or law named (case details identify)"),
        (_LEGAL_WORDS_RE, "court, rescue or exploitation detail"),
        (_SERIAL_RE, "serial number"),
        (_POLICE_RE, "police station"),
    ):
        for m in ctx.finditer(regex):
            ctx.add("case_number", m.start(), m.end(), rule)
            ctx.claim_numbers(m.start(), m.end())
    for m in _STATION_ABBR_RE.finditer(text):
        if not ctx.is_common(m.group(1)):
            ctx.add("case_number", m.start(), m.end(), "named police station")
    for m in ctx.finditer(_NUMBER_YEAR_RE):
        if ctx.numeric_claimed[m.start()] or _continues_a_digit_run(text, m.start(), m.end()):
            continue
        number = m.group().split("/")[0]
        if len(number) <= 2 and 1 <= int(number) <= 12:
            continue  # month/year: the date detector reports it
        ctx.add("case_number", m.start(), m.end(), "number/year reference (case-number format)")
        ctx.claim_numbers(m.start(), m.end())
    for m in ctx.finditer(_NUMBER_OF_YEAR_RE):
        ctx.add("case_number", m.start(), m.end(), "'N of year' reference (case-number format)")
        ctx.claim_numbers(m.start(), m.end())


# ---------------------------------------------------------------------------------------
# Dates

_MONTH_FULL = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|"
    r"december)"
)
_MONTH_ANY = rf"(?:{_MONTH_FULL}|(?:jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?)"
_WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_FESTIVAL = (
    r"(?:diwali|deepavali|holi|eid|christmas|easter|navratri|navaratri|dussehra|dasara|onam|"
    r"pongal|sankranti|lohri|baisakhi|janmashtami|ganesh\s+chaturthi|durga\s+puja|"
    r"raksha\s+bandhan|rakhi|bhai\s+dooj|gudi\s+padwa|ugadi|bihu|chhath|muharram|ramzan|"
    r"ramadan|bakrid|new\s+year|(?:republic|independence|children'?s|valentine'?s|"
    r"teachers'?|women'?s|mother'?s|father'?s|friendship|yoga|sports|annual|gandhi\s+jayanti)"
    r"\s+day)"
)
_NUMERIC_DMY_RE = re.compile(
    r"(?<![\d/.\-])(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})(?![\d/]|[.\-]\d)"
)
_NUMERIC_YMD_RE = re.compile(
    r"(?<![\d/.\-])((?:19|20)\d{2})([/.\-])(\d{1,2})\2(\d{1,2})(?![\d/]|[.\-]\d)"
)
_NUMERIC_MY_RE = re.compile(r"(?<![\d/.\-])(0?[1-9]|1[0-2])[/.\-]((?:19|20)\d{2})(?![\d/]|[.\-]\d)")
_CONTEXT_DM_RE = re.compile(
    r"(?i:\b(?:on|dated|date|from|since|till|until|by|before|after|dob)[\s:]+"
    r"(\d{1,2})/(\d{1,2})\b(?![/.\-]\d))"
)
_DAY_MONTH_RE = re.compile(
    rf"(?i:\b(\d{{1,2}})(?:st|nd|rd|th)?(?:\s+of)?[\s\-/]*(?P<month>{_MONTH_ANY})(?![a-z])"
    r"(?:[\s,\-/]*(?:(?:19|20)\d{2}|'\d{2}))?)"
)
_MONTH_DAY_RE = re.compile(
    rf"(?i:\b(?P<month>{_MONTH_ANY})[\s\-]*(\d{{1,2}})(?:st|nd|rd|th)?\b"
    r"(?:,?\s*(?:19|20)\d{2})?)"
)
_MONTH_YEAR_RE = re.compile(rf"(?i:\b(?P<month>{_MONTH_ANY}),?\s*(?:of\s+)?(?:19|20)\d{{2}}\b)")
_MONTH_CONTEXT_RE = re.compile(
    r"(?i:\b(?:in|since|during|from|until|till|by|before|after|early|mid|late|end\s+of|"
    r"beginning\s+of|start\s+of|middle\s+of|month\s+of|last|this|next|every|of)[\s\-]+"
    rf"(?P<month>{_MONTH_FULL}|(?:jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\b\.?)(?![a-z]))"
)
_MONTH_CAPITAL_RE = re.compile(
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December|JANUARY|FEBRUARY|MARCH|APRIL|JUNE|JULY|AUGUST|SEPTEMBER|OCTOBER|NOVEMBER|"
    r"DECEMBER)\b"
)
_WEEKDAY_RE = re.compile(rf"(?i:\b{_WEEKDAY}\b)")
_RELATIVE_RE = re.compile(
    r"(?i:\b(?:last|this|next|previous|past|coming|earlier\s+this|later\s+this)\s+"
    rf"(?:week|weekend|fortnight|month|{_WEEKDAY})\b)"
)
_ORDINAL_DAY_RE = re.compile(
    r"(?i:\b(?:on|by|from|since|until|till|before|after|dated)\s+(?:the\s+)?"
    r"(\d{1,2})(?:st|nd|rd|th)\b(?!\s+(?:class|standard|std|grade|position|place|rank|floor|"
    r"time|attempt|round|birthday|year|term|book|chapter|lesson|level|page|prize))"
    r"|\bthe\s+\d{1,2}(?:st|nd|rd|th)\s+of\b)"
)
_FESTIVAL_YEAR_RE = re.compile(
    rf"(?i:\b{_FESTIVAL}(?:\s+of)?[\s,']+(?:19|20)\d{{2}}\b|\b(?:19|20)\d{{2}}\s+{_FESTIVAL}\b)"
)
_FESTIVAL_SINCE_RE = re.compile(rf"(?i:\bsince\s+(?:the\s+)?{_FESTIVAL}\b)")
_FESTIVAL_ARRIVAL_RE = re.compile(
    r"(?i:\b(?:arrived|arrival|came|come|joined|rescued|brought|admitted|moved|reached)\b"
    r"[^.!?\n]{0,60}?\b(?:after|before|around|during|on|at)\s+(?:the\s+)?"
    rf"{_FESTIVAL}\b)"
)
_HINDU_MONTH_RE = re.compile(
    r"(?i:\b(?:in|during|since|from|of)\s+(?:the\s+month\s+of\s+)?(?:chaitra|vaishakh|"
    r"jyeshtha|ashadh|shravan|bhadrapad|ashwin|kartik|margashirsha|paush|magh|phalgun|"
    r"falgun|boishakh|baisakh|shraban|poush|falgun)\b)"
)


def _valid_day_month(day: int, month: int) -> bool:
    return (1 <= day <= 31 and 1 <= month <= 12) or (1 <= month <= 31 and 1 <= day <= 12)


_DATE_IN_MATCH_RE = re.compile(r"(?:19|20)\d{2}|'\d{2}|\d(?:st|nd|rd|th)")
_DATE_CONTEXT_BEFORE_RE = re.compile(
    r"(?i:\b(?:born|birth\s*-?\s*date|birthday|b'?day|dob|d\.o\.b\.?|dated|date|on)"
    r"[\s:,\-]*(?:is|was)?[\s:,\-]*$)"
)


def _month_is_verb(ctx: _Context, m: re.Match[str]) -> bool:
    """'may' and 'march' in lower case are usually verbs ("she may join"), unless a year,
    an ordinal or a date word shows a date ("born 3 may 2012", "on 3 march")."""
    word = m.group("month")
    if not (word.islower() and word.rstrip(".").lower() in ("may", "march")):
        return False
    if m.re is _MONTH_CONTEXT_RE and m.group().split()[0].lower() not in ("this", "every", "of"):
        return False  # "in march", "since may": after a preposition it is the month
    if _DATE_IN_MATCH_RE.search(m.group()):
        return False
    return not _DATE_CONTEXT_BEFORE_RE.search(ctx.text, max(0, m.start() - 20), m.start())


def _detect_dates(ctx: _Context) -> None:
    text = ctx.text

    def add(m: re.Match[str], rule: str) -> None:
        ctx.add("exact_date", m.start(), m.end(), rule)
        ctx.claim_numbers(m.start(), m.end())

    for m in ctx.finditer(_NUMERIC_DMY_RE):
        if not ctx.numeric_claimed[m.start()] and _valid_day_month(
            int(m.group(1)), int(m.group(3))
        ):
            add(m, "numeric date")
    for m in ctx.finditer(_NUMERIC_YMD_RE):
        if 1 <= int(m.group(3)) <= 12 and 1 <= int(m.group(4)) <= 31:
            add(m, "numeric date (year first)")
    for m in ctx.finditer(_NUMERIC_MY_RE):
        if not ctx.numeric_claimed[m.start()]:
            add(m, "month and year")
    for m in ctx.finditer(_CONTEXT_DM_RE):
        if _valid_day_month(int(m.group(1)), int(m.group(2))):
            add(m, "day/month date")
    for regex, rule in (
        (_DAY_MONTH_RE, "day and month"),
        (_MONTH_DAY_RE, "month and day"),
        (_MONTH_YEAR_RE, "month and year (a month of arrival identifies)"),
        (_MONTH_CONTEXT_RE, "month named as a time (only years or quarters are allowed)"),
    ):
        for m in ctx.finditer(regex):
            if _month_is_verb(ctx, m):
                continue
            if regex is _DAY_MONTH_RE and not 1 <= int(m.group(1)) <= 31:
                continue
            if regex is _MONTH_DAY_RE and not 1 <= int(m.group(2)) <= 31:
                continue
            add(m, rule)
    for m in _MONTH_CAPITAL_RE.finditer(text):
        add(m, "month name (only years or quarters are allowed)")
    for m in re.finditer(r"\bMay\b", text):
        if not ctx.sentence_initial(m.start()):
            add(m, "month name (only years or quarters are allowed)")
    for m in _WEEKDAY_RE.finditer(text):
        before = text[max(0, m.start() - 12) : m.start()].lower().split()
        if before and before[-1] in ("every", "each", "most", "all", "alternate"):
            continue
        add(m, "day of the week (pins an exact date)")
    for regex, rule in (
        (_RELATIVE_RE, "relative date finer than a quarter"),
        (_ORDINAL_DAY_RE, "day of the month"),
        (_FESTIVAL_YEAR_RE, "festival with a year (pins a date)"),
        (_FESTIVAL_SINCE_RE, "time measured from a festival"),
        (_FESTIVAL_ARRIVAL_RE, "arrival dated by a festival"),
        (_HINDU_MONTH_RE, "month of the Hindu/Bengali calendar"),
    ):
        for m in ctx.finditer(regex):
            add(m, rule)


# ---------------------------------------------------------------------------------------
# ID numbers that contain letters (Aadhaar and bare digit runs are below)

_ID_PATTERNS = (
    (re.compile(r"(?i:\b[a-z]{5}\d{4}[a-z]\b)"), "PAN-format number"),
    (re.compile(r"(?i:\b[a-z]{3}\d{7}\b)"), "voter ID (EPIC) format"),
    (re.compile(r"\b[A-Z]\s?\d{7}\b"), "passport-format number"),
    (
        re.compile(r"(?i:\b[a-z]{2}[\s\-]?\d{2}[\s\-]?(?:19|20)\d{2}[\s\-]?\d{7}\b)"),
        "driving-licence format",
    ),
    (
        re.compile(r"\b[A-Z]{2}[\s\-]?\d{1,2}[\s\-]?[A-Z]{1,3}[\s\-]?\d{4}\b"),
        "vehicle registration number",
    ),
    (re.compile(r"\b[A-Z]{4}0[A-Z0-9]{6}\b"), "IFSC bank code"),
    (
        re.compile(
            r"(?i:\b(?:aadhaa?r|adhaa?r|uid|pan|voter\s*id|epic|passport|ration\s*card|"
            r"driving\s*licen[cs]e|licen[cs]e|dl|birth\s*certificate|bank\s*(?:account|a/c)|"
            r"account|a/c|acct|ifsc|upi|roll|admission|registration|reg|enrol?ment|"
            r"student\s*id|id\s*card|id|gr|udise|apaar|abha)\s*"
            r"(?:no\.?|number|num|#|id)\s*[:.\-=]?\s*[a-z0-9/\-]*\d[a-z0-9/\-]*)"
        ),
        "identity-document or register number",
    ),
)
_ALNUM_TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:[/\-][A-Za-z0-9]+)*")
_ALNUM_HARMLESS_RE = re.compile(
    r"(?i:(?:(?:19|20)\d{2}-?q[1-4]|q[1-4]-?(?:19|20)\d{2})(?:[/\-](?:(?:19|20)\d{2}-?q[1-4]"
    r"|q[1-4]-?(?:19|20)\d{2}))*|\d+(?:st|nd|rd|th|s|m|km|kg|g|cm|mm|ml|rs|k|hrs|mins|pm|am)"
    r"|(?:rs|inr)\.?\d+)"
)


def _detect_id_patterns(ctx: _Context) -> None:
    text = ctx.text
    for start, end in ctx.folded.disguised:
        ctx.add("id_number", start, end, "digits written with look-alike letters (O for 0)")
    for regex, rule in _ID_PATTERNS:
        for m in ctx.finditer(regex):
            if ctx.numeric_claimed[m.start()]:
                continue
            ctx.add("id_number", m.start(), m.end(), rule)
            ctx.claim_numbers(m.start(), m.end())
    # A code with five digits needs a digit.
    for m in _ALNUM_TOKEN_RE.finditer(text) if ctx.has_digit else ():
        token = m.group()
        digits = sum(ch.isdigit() for ch in token)
        if digits < 5 or not any(ch.isalpha() for ch in token):
            continue
        if _ALNUM_HARMLESS_RE.fullmatch(token) or ctx.numeric_claimed[m.start()]:
            continue
        ctx.add("id_number", m.start(), m.end(), "code mixing letters and 5+ digits")
        ctx.claim_numbers(m.start(), m.end())


# ---------------------------------------------------------------------------------------
# Digit runs: phone numbers, Aadhaar, long IDs, PIN codes

# Digits separated by up to four characters that are neither letters, digits nor line
# breaks: "98200/12345", "2345_6789_0124", "98 | 200 . 12". Separators never match digits,
# so every repetition consumes a digit and matching stays linear. A run may start right
# after a letter ("phone9820 012345", "B1204 5678"): starting it only after the glued group
# would leave that group's digits in the clear beside the masked rest.
_DIGIT_SEPARATORS = r"[^A-Za-z0-9\u0900-\u097f\n]"
_DIGIT_RUN_RE = re.compile(rf"(?<![0-9+])(?:\+\s?)?\(?\d(?:{_DIGIT_SEPARATORS}{{0,4}}\d)*")
_CURRENCY_BEFORE_RE = re.compile(r"(?i:(?:\u20b9|rs\.?|inr|\$|usd|\u20ac|\u00a3)\s*)$")
_TIME_RANGE_RE = re.compile(r"\d{1,2}[.:]\d{2}(?:\s{0,2}-\s{0,2}\d{1,2}[.:]\d{2})+")
_YEAR_RE = re.compile(r"(?:19|20)\d{2}")
_YEAR_GROUPS_RE = re.compile(r"(?:19|20)\d{2}(?:[ .,/\-]{1,3}(?:(?:19|20)\d{2}|\d{2}))+")
# An amount in Indian or Western grouping ("1,20,000", "10,000") of at most seven digits,
# followed by what it counts: it cannot hold a whole phone number.
_GROUPED_AMOUNT_RE = re.compile(r"\d{1,3}(?:,\d{2})*,\d{3}|\d{1,3}(?:,\d{3})+")
_COUNTED_AFTER_RE = re.compile(
    r"(?i:\s*(?:rupees|rs\b|inr\b|dollars|pounds|euros|lakh|crore|steps|people|children|girls|"
    r"boys|women|men|families|students|trees|books|meals|km\b|kilometres|kilometers|metres|"
    r"meters|kg\b|litres|liters|copies|signatures|volunteers|donors|sponsors|visitors|views))"
)

_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def verhoeff_is_valid(digits: str) -> bool:
    """True if the last digit of `digits` is a correct Verhoeff check digit (as in Aadhaar)."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    check = 0
    for position, ch in enumerate(reversed(digits)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position % 8][int(ch)]]
    return check == 0


def _valid_compact_date(digits: str) -> bool:
    """YYYYMMDD or DDMMYYYY written without separators."""
    year, month, day = int(digits[:4]), int(digits[4:6]), int(digits[6:])
    if 1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31:
        return True
    day, month, year = int(digits[:2]), int(digits[2:4]), int(digits[4:])
    return 1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31


def _valid_grouped_date(groups: list[str]) -> bool:
    """Day, month and year ("12 03 2024", "12 / 03 / 24") or year, month and day."""
    lengths = [len(g) for g in groups]
    if lengths[0] == 4 and lengths[1] <= 2 and lengths[2] <= 2:
        year, month, day = (int(g) for g in groups)
        return 1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31
    if lengths[0] <= 2 and lengths[1] <= 2 and lengths[2] in (2, 4):
        day, month, year = (int(g) for g in groups)
        if lengths[2] == 4 and not 1900 <= year <= 2099:
            return False
        return _valid_day_month(day, month)
    return False


def _classify_digit_run(raw: str, digits: str) -> tuple[str, str] | None:
    count = len(digits)
    international = raw.lstrip("(").startswith("+") or digits.startswith("00")
    groups = re.findall(r"\d+", raw)
    if len(groups) == 3 and _valid_grouped_date(groups):
        return "exact_date", "date with unusual separators"
    if (
        len(groups) == 2
        and len(groups[0]) <= 2
        and 1 <= int(groups[0]) <= 12
        and _YEAR_RE.fullmatch(groups[1])
    ):
        return "exact_date", "month and year"
    if count < 5:
        return None
    if len(groups) == 2 and len(groups[0]) <= 4 and _YEAR_RE.fullmatch(groups[1]):
        # "123 - 2024", "123_2024": a case number written with another separator.
        return "case_number", "number/year reference (case-number format)"
    if count == 5:
        return "phone", "run of 5 digits (part of a phone number or an ID)"
    if count == 6:
        if len(groups) == 2 and len(groups[0]) == 4 and digits[:2] in ("19", "20"):
            return None  # an academic year such as 2024-25
        if digits[0] in "12345678" and len(groups) <= 2:
            return "pin_code", "6-digit number (Indian PIN code format)"
        return "pin_code", "standalone 6-digit number"
    if count == 8 and len(groups) == 1 and _valid_compact_date(digits):
        return "exact_date", "date written as 8 digits"
    if count <= 11:
        if international or (count == 10 and digits[0] in "6789"):
            return "phone", "mobile phone number"
        if count == 11 and digits[0] == "0":
            return "phone", "phone number with trunk prefix 0"
        return "phone", "phone-like run of 7-11 digits"
    if count == 12:
        mobile_with_code = digits.startswith("91") and digits[2] in "6789"
        if international or (mobile_with_code and [len(g) for g in groups] != [4, 4, 4]):
            return "phone", "phone number with country code"
        if digits[0] in "23456789" and verhoeff_is_valid(digits):
            return "aadhaar", "12-digit number with a valid Verhoeff check digit (Aadhaar)"
        return "id_number", "12-digit number (Aadhaar-like, check digit not valid)"
    if international and count <= 15:
        return "phone", "international phone number"
    return "id_number", f"long run of {count} digits (ID or account number)"


_PROSE_BREAK_RE = re.compile(r"[,;.]\s+")


def _digit_runs(text: str) -> list[tuple[str, int, int]]:
    """Digit runs, split where prose punctuation meets a year ("In 2024, 150 girls")."""
    runs = []
    for m in _DIGIT_RUN_RE.finditer(text):
        raw, start = m.group(), m.start()
        # A run may start inside a bracket: trim so spans stay tight.
        if raw.startswith("(") and ")" not in raw:
            raw, start = raw[1:], start + 1
        groups = list(re.finditer(r"\d+", raw))
        cut = 0
        for left, right in zip(groups, groups[1:], strict=False):
            if _PROSE_BREAK_RE.fullmatch(raw, left.end(), right.start()) and (
                _YEAR_RE.fullmatch(left.group()) or _YEAR_RE.fullmatch(right.group())
            ):
                runs.append((raw[cut : left.end()], start + cut, start + left.end()))
                cut = right.start()
        runs.append((raw[cut:], start + cut, start + len(raw)))
    return runs


def _detect_digit_runs(ctx: _Context) -> None:
    if not ctx.has_digit:
        return  # a run starts with a digit
    text = ctx.text
    for raw, start, end in _digit_runs(text):
        digits = "".join(ch for ch in raw if ch.isdigit())
        claimed = [ctx.numeric_claimed[i] for i in range(start, end) if text[i].isdigit()]
        # A run another rule read only part of ("7531 _ 0864/2099" as a case number) is
        # still one long number: the officer's masked view would show the unclaimed digits.
        if all(claimed) or (any(claimed) and len(digits) < 5):
            continue
        groups = re.findall(r"\d+", raw)
        if len(groups) == 3 and _valid_grouped_date(groups) and not _TIME_RANGE_RE.fullmatch(raw):
            ctx.add("exact_date", start, end, "date with unusual separators")
            ctx.claim_numbers(start, end)
            continue
        if _YEAR_GROUPS_RE.fullmatch(raw) or _TIME_RANGE_RE.fullmatch(raw):
            continue  # "2023 2024", "2024-25" or "9.30-11.30": years and times are allowed
        if len(digits) < 10 and _CURRENCY_BEFORE_RE.search(text, max(0, start - 6), start):
            continue
        if (
            len(digits) <= 7
            and _GROUPED_AMOUNT_RE.fullmatch(raw)
            and _COUNTED_AFTER_RE.match(text, end)
        ):
            continue  # "10,000 steps", "1,20,000 rupees"
        if text[end : end + 1].isalpha() and re.fullmatch(r"\d+", raw):
            unit = re.match(r"[A-Za-z]+", text[end:])
            if unit and _ALNUM_HARMLESS_RE.fullmatch(raw + unit.group()):
                continue  # "10000m", "25000rs": a quantity with its unit
        verdict = _classify_digit_run(raw, digits)
        if verdict:
            ctx.add(verdict[0], start, end, verdict[1])
            ctx.claim_numbers(start, end)


_NUMBER_WORDS = {
    "zero": 1, "oh": 1, "o": 1, "one": 1, "two": 1, "three": 1, "four": 1, "five": 1,
    "six": 1, "seven": 1, "eight": 1, "nine": 1, "double": 0, "triple": 0,
    # Hindi / Marathi / Bengali
    "ek": 1, "do": 1, "don": 1, "teen": 1, "tin": 1, "char": 1, "chaar": 1, "paanch": 1,
    "panch": 1, "pach": 1, "paach": 1, "chhe": 1, "chhah": 1, "che": 1, "saha": 1,
    "saat": 1, "sat": 1, "aath": 1, "ath": 1, "nau": 1, "nou": 1, "shunya": 1,
    "shoonya": 1, "sunya": 1, "shuny": 1,
}  # fmt: skip
_SPELLED_GAP_RE = re.compile(r"[\s,.\-]{1,3}")


def _detect_spelled_digits(ctx: _Context) -> None:
    """Seven or more digits written as words ("nine eight two zero ...") form a phone."""
    tokens = ctx.tokens
    i = 0
    while i < len(tokens):
        j, digits, words = i, 0, 0
        while j < len(tokens):
            tok = tokens[j]
            if tok.text.isdigit():
                digits += len(tok.text)
            elif tok.lower in _NUMBER_WORDS:
                digits += _NUMBER_WORDS[tok.lower]
                words += 1
            else:
                break
            nxt = j + 1
            if nxt < len(tokens) and not _SPELLED_GAP_RE.fullmatch(
                ctx.text, tok.end, tokens[nxt].start
            ):
                j = nxt
                break
            j = nxt
        if digits >= 7 and words >= 2:
            ctx.add("phone", tokens[i].start, tokens[j - 1].end, "digits spelled out as words")
        i = max(j, i + 1)


# ---------------------------------------------------------------------------------------
# Exact ages and birthdays

_NUMBER_WORD_AGE = (
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty(?:[\s\-](?:one|two|three))?)"
)
_AGE_NUM = rf"(?:\d{{1,2}}|{_NUMBER_WORD_AGE})"
_HINDI_AGE_NUM = (
    r"(?:\d{1,2}|ek|do|don|teen|char|chaar|paanch|panch|pach|chhah|chhe|saha|saat|aath|nau|"
    r"das|daha|gyarah|gyara|akra|barah|bara|terah|tera|chaudah|chauda|pandrah|pandhra|solah|"
    r"sola|satrah|satra|atharah|athra|unnis|ekonis|bees|vees|" + _NUMBER_WORD_AGE[3:-1] + ")"
)
_AGE_PATTERNS = (
    (
        re.compile(rf"(?i:\b{_AGE_NUM}[\s\-]*(?:years?|yrs?\.?|yr)[\s\-]*(?:old|of\s+age)\b)"),
        "age in years",
    ),
    (re.compile(rf"(?i:\b{_AGE_NUM}\s*(?:y/o|y\.o\.?|yo)(?![\w/]))"), "age in years"),
    (
        re.compile(
            rf"(?i:\b(?:aged?|ages|age\s*[:=\-]|umar|umr|umra|vay|vayas)\s*"
            rf"(?:of\s+|is\s+|was\s+|about\s+|around\s+|just\s+)?{_AGE_NUM}\b"
            rf"(?!\s*(?:-|to|and|or)\s*(?:\d|{_NUMBER_WORD_AGE})))"
        ),
        "stated age",
    ),
    (
        re.compile(
            r"(?i:\b(?:she|he|i|who|sister|brother|girl|boy|child|daughter|son)"
            r"(?:'s|\s+is|\s+was|\s+will\s+be|\s+turned|\s+turns|\s+has\s+turned|"
            r"\s+will\s+turn|\s+became|\s+becomes|\s+am)\s+"
            r"(?:now\s+|just\s+|only\s+|almost\s+|nearly\s+|about\s+|barely\s+)?"
            rf"{_AGE_NUM}(?=\s*(?:years?\b|yrs?\b|now\b|today\b|this\b|next\b|and\b|but\b|"
            r"already\b|when\b|so\b|[,.!;)]|$)))"
        ),
        "stated age",
    ),
    (
        re.compile(rf"(?i:\b(?:turned|turns|turning|will\s+turn|to\s+turn)\s+{_AGE_NUM}\b)"),
        "age reached",
    ),
    (
        re.compile(
            r"(?i:\b(?:birthday|b[^A-Za-z0-9\n]{0,3}d[^A-Za-z0-9\n]{0,3}a[^A-Za-z0-9\n]{0,3}y|birth\s+day|janam\s*din|janm(?:a)?\s*din|"
            r"vaa?dh\s*divas|wadh\s*divas|date\s+of\s+birth|born\s+on|born\s+in|"
            r"born\s+(?:19|20)\d{2}|birth\s*-?\s*dates?|janm?a?\s*tithi|janm?a?\s*tarikh)\b"
            rf"|\bborn(?=[\s,]+(?:the\s+)?(?:\d|{_MONTH_ANY}\b))|\bd\.?o\.?b\b\.?)"
        ),
        "birthday or birth date (identifies)",
    ),
    (
        re.compile(
            rf"(?i:\b{_HINDI_AGE_NUM}\s*(?:(?:saal|sal|baras)\s*(?:ki|ka|ke)|"
            r"varsh(?:a|e|achi|anchi|aanchi|achya|anchya)?)\b)"
        ),
        "age in years (Hindi/Marathi)",
    ),
)
_YEARS_RE = re.compile(rf"(?i:\b{_AGE_NUM}[\s\-]*(?:years?|yrs?\.?)(?![\w\-]))")
_DURATION_BEFORE = frozenset(
    "for since past last next over within in after than about around nearly almost spent "
    "took takes take of first few the those these many some all every each both her his "
    "their our its here there home us programme school care another two".split()
)
_DURATION_AFTER = frozenset(
    "ago later earlier back before after of in with at here there since running straight "
    "together on".split()
)


def _detect_ages(ctx: _Context) -> None:
    text = ctx.text
    for regex, rule in _AGE_PATTERNS:
        for m in regex.finditer(text):
            ctx.add("exact_age", m.start(), m.end(), rule)
    # "13 yrs" is an age, "for 3 years" or "2 years ago" a duration.
    for m in _YEARS_RE.finditer(text):
        before = text[max(0, m.start() - 20) : m.start()].lower().split()
        after = text[m.end() : m.end() + 20].lower().split()
        if not before or before[-1][-1] in ".!?:;" or before[-1].strip(",") in _DURATION_BEFORE:
            continue  # sentence-initial "Two years on" or "for 3 years": a duration
        if after and after[0].strip(",.") in _DURATION_AFTER:
            continue
        ctx.add("exact_age", m.start(), m.end(), "number of years (likely an age)")


# ---------------------------------------------------------------------------------------
# Places

_ADDRESS_SUFFIXES = frozenset(
    "road rd marg street st lane ln gully galli gali nagar colony chawl wadi peth bazaar "
    "bazar chowk pada path vihar puram basti society apartment apartments tower towers "
    "building bldg compound estate layout sector bagh ganj mohalla wada khurd budruk gaon "
    "taluka tehsil district dist mandal ward camp cross circle maidan market mandi station "
    "depot junction nagari vasti bhavan bhawan niwas sadan kunj enclave extension park "
    "garden gardens gate bridge naka tekdi pura gunj haat para palli pally tola village "
    "town city bunder bandar talao tank hill hills lake beach fort chawls nagar".split()
)
_GLUED_PLACE_ENDINGS = (
    "nagar", "pura", "wadi", "wada", "pada", "peth", "ganj", "gunj", "bagh", "pur", "puram",
    "abad", "garh", "gaon", "gaum", "pally", "palli", "halli", "kheda", "khurd", "patti",
    "pet", "guda", "gudem", "palem", "palayam",
)  # fmt: skip
_LANDMARKS = frozenset(
    "temple mandir masjid mosque dargah church gurudwara station hospital school market "
    "bridge flyover signal naka circle chowk pump tank talkies cinema theatre hotel bank "
    "office stop stand depot garden park lake river well tower building chawl mill factory "
    "godown lodge bar dhaba lodge college maidan ground".split()
)
_NUMBERED_LANE_RE = re.compile(
    r"(?i:\b(?:\d{1,2}(?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth|seventh|eighth|"
    r"ninth|tenth|eleventh|twelfth|thirteenth|fourteenth)\s+(?:gully|galli|gali|lane|"
    r"cross\s+lane|cross|khetwadi|kumbharwada)\b|\b(?:gully|galli|gali|lane|sector|sec\.?|plot|ward|"
    r"khetwadi|kumbharwada)\s*(?:no[.:]?|number|#)?\s*\d{1,3}\b|"
    r"\b\d{1,2}\s*(?:no\.?|number|nambar|#)\s*(?:gully|galli|gali|lane)\b)"
)
_HOUSE_NUMBER_RE = re.compile(
    r"(?i:\b(?:house|h|flat|room|plot|building|bldg|chawl|block|door|shop|survey|gala|kholi|"
    r"hut|wing|quarters?)\.?\s*(?:no\.?|number|num|#)\s*[:.\-]?\s*[a-z0-9/\-]*\d[a-z0-9/\-]*)"
)
_PREPOSITION_RE = re.compile(
    r"(?i:\b(?:near|nearby|opp\.?|opposite|behind|beside|next\s+to|in\s+front\s+of|"
    r"close\s+to|adjacent\s+to|outside)\s+)"
)
_DETERMINERS = frozenset("the a an this that our their her his its".split())
_PIN_WORD_RE = re.compile(r"(?i:\bpin\s*(?:code)?\s*[:.\-]?\s*\d{3}\s?\d{3}\b)")


def _capitalised_run_before(ctx: _Context, index: int, limit: int = 3) -> int | None:
    """Index of the first capitalised, non-common token in the run ending at index - 1."""
    first = None
    k = index - 1
    while k >= 0 and index - k <= limit:
        tok = ctx.tokens[k]
        if not tok.is_cap or not tok.text.isalpha():
            break
        first = k
        if k == 0 or not ctx.space_gap[k - 1]:
            break
        k -= 1
    if first is None:
        return None
    while first < index and ctx.is_common(ctx.tokens[first].text):
        first += 1
    return first if first < index else None


# Address words after which a lower-case unknown word is a place name. Generic English
# ones (park, garden, station) are left out: "herb garden", "fire station".
_INDIAN_ADDRESS_SUFFIXES = frozenset(
    "road rd marg street st lane gully galli gali nagar colony chawl wadi peth bazaar bazar "
    "chowk pada mohalla basti vasti nagari naka tekdi pura gaon taluka tehsil district "
    "mandi sector".split()
)
# Place-name endings distinctive enough to flag a long word in lower case too.
_LOWER_PLACE_ENDINGS = (
    "nagar", "pura", "wadi", "wada", "pada", "peth", "ganj", "gunj", "bagh", "puram",
    "abad", "garh", "gaon", "pally", "palli", "halli", "kheda", "khurd", "palem", "palayam",
)  # fmt: skip


def _unknown_lower_word(ctx: _Context, tok: _Token) -> bool:
    """A lower-case word nobody vouched for, where a place name could stand."""
    low = tok.text
    return (
        low.isalpha()
        and low.islower()
        and len(low) >= 4
        and not ctx.is_common(low)
        and low not in _DETERMINERS
        and low not in _MONTH_WORDS
    )


def _detect_places(ctx: _Context) -> None:
    text, tokens = ctx.text, ctx.tokens
    for i, j in ctx.phrase_hits(ctx.lex.places, 5):
        start, end = tokens[i].start, tokens[j - 1].end
        if not ctx.is_masked(start, end):
            ctx.add("place", start, end, "place in the gazetteer (locality, street or city)")
    for regex, rule in (
        (_NUMBERED_LANE_RE, "numbered lane or gully"),
        (_HOUSE_NUMBER_RE, "house, flat or room number"),
        (_PIN_WORD_RE, "PIN code"),
    ):
        for m in ctx.finditer(regex):
            ctx.add("pin_code" if regex is _PIN_WORD_RE else "place", m.start(), m.end(), rule)
            ctx.claim_numbers(m.start(), m.end())
    for index, tok in enumerate(tokens):
        low = tok.lower
        if low in _ADDRESS_SUFFIXES and index > 0 and ctx.space_gap[index - 1]:
            first = _capitalised_run_before(ctx, index)
            before = tokens[index - 1]
            if first is None and (
                (low in _INDIAN_ADDRESS_SUFFIXES and _unknown_lower_word(ctx, before))
                or (before.text.islower() and before.lower in ctx.lex.names)
            ):
                first = index - 1  # "lamington road", "bhendi gali"
            if first is not None and not ctx.is_masked(tokens[first].start, tok.end):
                ctx.add("place", tokens[first].start, tok.end, f"address: <Name> {tok.text}")
        if (
            (
                (tok.is_cap and len(low) >= 6 and low.endswith(_GLUED_PLACE_ENDINGS))
                or (len(low) >= 8 and low.endswith(_LOWER_PLACE_ENDINGS))
            )
            and not ctx.is_common(low)
            and low not in ctx.lex.names
            and not ctx.is_masked(tok.start, tok.end)
        ):
            ctx.add("place", tok.start, tok.end, "word with a place-name ending (-nagar, -pur...)")
    for m in _PREPOSITION_RE.finditer(text):
        k = ctx.token_at.get(m.end())
        if k is None:
            continue
        if tokens[k].lower in _DETERMINERS:
            k += 1
        if k >= len(tokens):
            continue
        tok = tokens[k]
        if _unknown_lower_word(ctx, tok) and not ctx.is_masked(tok.start, tok.end):
            ctx.add("place", m.start(), tok.end, "place after near/opposite/behind")
            continue
        if tok.is_cap and tok.text.isalpha() and not ctx.is_common(tok.text):
            end = tok.end
            while (
                k + 1 < len(tokens)
                and ctx.space_gap[k]
                and (tokens[k + 1].is_cap or tokens[k + 1].lower in _LANDMARKS)
            ):
                k += 1
                end = tokens[k].end
            if not ctx.is_masked(tok.start, end):
                ctx.add("place", m.start(), end, "landmark after near/opposite/behind")
            continue
        # "behind the Hanuman temple", "near the railway station": a named landmark.
        for offset in (1, 2):
            n = k + offset
            if n < len(tokens) and tokens[n].lower in _LANDMARKS:
                ctx.add("place", m.start(), tokens[n].end, "landmark after near/opposite/behind")
                break


# ---------------------------------------------------------------------------------------
# Schools

_SCHOOL_SUFFIXES = frozenset(
    "school vidyalaya vidyalay vidyamandir convent academy college shala shaala madrasa "
    "madrasah madarsa madrassa ashramshala prashala mahavidyalaya vidyapeeth vidyapith "
    "gurukul pathshala institute university polytechnic iti anganwadi balwadi classes "
    "tutorials".split()
)
_SCHOOL_PATTERNS = (
    (
        re.compile(
            r"(?i:\bz[\s.\-*_|]{0,2}p\.?\s+(?:school|shala|prathamik|primary|high|vidyalaya)|"
            r"\bzill?a\s+parishad)"
        ),
        "Zilla Parishad school",
    ),
    (
        re.compile(
            r"(?i:\b(?:bmc|mcgm|pmc|nmmc|tmc|kdmc|mnp|nmc|pcmc|zp|kmc|mcd|ndmc)\s+"
            r"(?:school|shala|vidyalaya))"
        ),
        "municipal school",
    ),
    (
        re.compile(r"(?i:\b(?:school|shala|vidyalaya)\s*(?:no[.:]?|number|#)\s*\d+)"),
        "numbered school",
    ),
    (
        re.compile(r"\b(?:St\.?|Saint|Sant)\s+[A-Z](?:[a-z]+|[A-Z]+)(?:'s)?"),
        "saint-named institution",
    ),
)


def _lower_run_before(ctx: _Context, index: int, limit: int = 4) -> int | None:
    """First token of lower-case words before `index` that include an unknown one."""
    tokens = ctx.tokens
    first = None
    unknown = False
    k = index - 1
    while k >= 0 and index - k <= limit and ctx.phrase_gap[k]:
        tok = tokens[k]
        possessive_s = tok.text == "s" and ctx.text[tok.start - 1 : tok.start] == "'"
        spelled = tok.start in ctx.joined_starts
        if not (possessive_s or spelled or (tok.text.isalpha() and tok.text.islower())):
            break
        if tok.lower in _DETERMINERS:
            break
        unknown = unknown or spelled or _unknown_lower_word(ctx, tok)
        first = k
        k -= 1
    return first if unknown else None


def _detect_schools(ctx: _Context) -> None:
    tokens = ctx.tokens
    for i, j in ctx.phrase_hits(ctx.lex.schools, 4):
        ctx.add("school", tokens[i].start, tokens[j - 1].end, "known school or school chain")
    for regex, rule in _SCHOOL_PATTERNS:
        for m in ctx.finditer(regex):
            ctx.add("school", m.start(), m.end(), rule)
            ctx.claim_numbers(m.start(), m.end())
    for index, tok in enumerate(tokens):
        if tok.lower not in _SCHOOL_SUFFIXES or index == 0 or not ctx.space_gap[index - 1]:
            continue
        first = _capitalised_run_before(ctx, index, limit=5)
        if first is None and tok.lower not in ("classes", "tutorials"):
            first = _lower_run_before(ctx, index)  # "saraswati vidyalaya", "st mary's convent"
        if first is not None:
            ctx.add("school", tokens[first].start, tok.end, f"named school: <Name> {tok.text}")


# ---------------------------------------------------------------------------------------
# Person names

_STRONG_HONORIFIC_RE = re.compile(
    r"(?i:\b(?:mr|mrs|ms|mx|dr|smt|shrimati|shri|shree|sri|kumari|kum|km|sushri|janab)\b\.?\s*)"
)
_WEAK_HONORIFIC_RE = re.compile(
    r"\b(?:Miss|Master|Baby|Sister|Brother|Father|Mother|Sir|Madam|Pastor|Maulana|Maulvi|"
    r"Pandit|Pt|Swami|Begum|Bibi|Sr|Fr|Br)\b\.?\s*"
)
_JI_SUFFIX_RE = re.compile(r"\b([A-Z][a-z]{2,})(?:-|\s)?ji\b")
_KINSHIP_AFTER_RE = re.compile(
    r"\b([A-Za-z][a-z]+)[\s\-](?i:didi|di|bhai|bhaiya|bhaiyya|bhau|aunty|auntie|uncle|dada|"
    r"dadi|tai|tayi|mausi|mavshi|maushi|kaka|kaki|chacha|chachi|mama|mami|akka|anna|bhabhi|"
    r"bua|nani|nana|appa|amma|behen|bahen|ben|jiju|madam|maam|ma'am|sir|teacher|miss|"
    r"ma|maa|baba)\b"
)
_KINSHIP_BEFORE_RE = re.compile(
    r"(?i:\b(?:friends?|sisters?|brothers?|mother|father|mom|mum|mummy|papa|dad|daddy|"
    r"cousins?|aunt|aunty|auntie|uncle|grandmother|grandma|grandfather|grandpa|niece|nephew|"
    r"daughter|son|husband|wife|neighbou?r|classmates?|roommates?|didi|bhai|behen|bahen|"
    r"dost|saheli|maa|aai|baba|appa|amma|mausi|chacha|chachi|mama|mami|nani|dadi|nana|"
    r"dada|bhaiya|bhabhi|guardian|stepfather|stepmother|siblings?|relatives?|teacher|tutor|"
    r"beti|bitiya|beta|mulgi|mulga|bahin|bahan|maitrin|maitri|"
    r"caregiver|housemother|counsell?or|sponsor|boyfriend|girlfriend)(?:'s)?"
    r"(?:\s*,|\s+name\s+(?:is|was)|\s+named|\s+called|\s+is|\s+was)?\s+)"
)
_NAMED_RE = re.compile(
    r"(?i:\b(?:call(?:s|ed)?\s+(?:her|him|me)|named|called|nicknamed|name\s+is|name\s+was|"
    r"name's|names\s+are|(?:naam|naav|nav)(?:\s+(?:is|hai|h|aahe|ahe|was|tha|thi))?|"
    r"known\s+as|goes\s+by|calls?\s+(?:her|him|me)|call\s+her|name\s*:)\s*[:\-]?\s*)"
)
_NON_LATIN_RUN_RE = re.compile(r"[^\x00-\x7f\s]+")
# "Hamari Grace", "Amchi Hope": "our" in Hindi and Marathi before a capitalised name.
_OUR_RE = re.compile(r"(?i:\b(?:hamari|hamara|hamare|amchi|aamchi|amcha|aamcha|amchya)\s+)")
_LOWER_JI_RE = re.compile(r"\b([a-z]{3,})(?:-|\s)?ji\b")
# Hindi and Marathi sentences where the name sits between two fixed words: "mi Chinu ahe"
# (I am Chinu), "main Chinu hoon", "tila Chinu mhantat" (they call her Chinu).
_NAME_BETWEEN_RE = re.compile(
    r"(?i:\b(?:mi|mee|me)\s+([a-z]+)\s+(?:ahe|aahe|ahey|aahey|hai)\b"
    r"|\b(?:main|mai|mein|mae|mei)\s+([a-z]+)\s+(?:hoon|hun|hu|hoo|hoo+n)\b"
    r"|\b(?:tila|tyala|tyanna|use|usko|isko|ise|unhe|inhe)\s+([a-z]+)\s+"
    r"(?:mhantat|mhanatat|mhantaat|mhanta|bulate|bulaate|bulati|kehte|kahte|kahate)\b)"
)
# Hindi and Marathi words that can stand between those fixed words without being a name.
_NOT_A_NAME_BETWEEN = frozenset(
    "khush khushi theek thik thick achha achhi accha acchi thaki thakli ithe tithe ghari "
    "ghar bara bari mast hushar tayar taiyar ready fine okay ok thoda thodi bahut pan pun "
    "aata ab abhi yahan wahan".split()
)


def _is_name_like(ctx: _Context, tok: _Token, allow_lower: bool) -> bool:
    low = tok.lower
    if not tok.text.isalpha() or len(low) < 2:
        return False
    if low in ctx.lex.names or low in ctx.lex.ambiguous_english:
        return True
    if ctx.is_common(low) or low in _MONTH_WORDS:
        return False
    if tok.is_cap:
        return True
    return allow_lower and tok.text.islower() and len(low) >= 3


def _name_after(ctx: _Context, pos: int, allow_lower: bool, rule: str, start: int = -1) -> None:
    """Flag the name-like token that begins at `pos` (and a following capitalised surname)."""
    k = ctx.token_at.get(pos)
    if k is None:
        return
    tok = ctx.tokens[k]
    if (
        len(tok.text) == 1
        and k + 1 < len(ctx.tokens)
        and ctx.text[tok.end : ctx.tokens[k + 1].start] == "'"
        and f"{tok.lower} {ctx.tokens[k + 1].lower}" in ctx.lex.names
    ):
        # "mr. d'souza": a surname with an elided particle, in any case.
        ctx.add("person_name", start if start >= 0 else tok.start, ctx.tokens[k + 1].end, rule)
        return
    if not _is_name_like(ctx, tok, allow_lower) or ctx.is_masked(tok.start, tok.end):
        return
    end = tok.end
    if (
        k + 1 < len(ctx.tokens)
        and ctx.space_gap[k]
        and ctx.tokens[k + 1].is_cap
        and _is_name_like(ctx, ctx.tokens[k + 1], False)
    ):
        end = ctx.tokens[k + 1].end
    ctx.add("person_name", start if start >= 0 else tok.start, end, rule)


def _detect_names(ctx: _Context) -> None:
    lex, tokens, text = ctx.lex, ctx.tokens, ctx.text
    flagged: set[int] = set()
    for i, j in ctx.phrase_hits(lex.names, 2):
        first = tokens[i]
        start, end = first.start, tokens[j - 1].end
        key = " ".join(t.lower for t in tokens[i:j])
        if ctx.is_masked(start, end) or key in lex.ambiguous_english:
            continue
        if first.is_cap:
            if ctx.sentence_initial(start) and ctx.is_common(key):
                continue  # "More girls joined" is not Mr More
            kind = "surname" if lex.names[key] == "surname" else "given name"
            ctx.add("person_name", start, end, f"common Indian {kind}")
            flagged.update(range(i, j))
        elif (
            first.text.islower()
            and lex.names[key] == "given"
            and key not in lex.ambiguous_indian
            and not ctx.is_common(key)
        ):
            ctx.add("person_name", start, end, "given name written in lower case")
            flagged.update(range(i, j))

    for m in _STRONG_HONORIFIC_RE.finditer(text):
        _name_after(ctx, m.end(), True, "name after an honorific (Mr/Mrs/Smt/Shri/Kumari)")
    for m in _WEAK_HONORIFIC_RE.finditer(text):
        _name_after(ctx, m.end(), False, "name after a title (Miss/Sister/Master...)")
    for m in _KINSHIP_BEFORE_RE.finditer(text):
        # After a possessive ("her uncle's shop") a lower-case word is the thing owned.
        possessive = "'s" in m.group().lower()
        _name_after(ctx, m.end(), not possessive, "name after a kinship or relationship word")
    for m in _NAMED_RE.finditer(text):
        _name_after(ctx, m.end(), True, "name introduced by named/called/my name is")
    for m in _NAME_BETWEEN_RE.finditer(text):
        group = next(g for g in (1, 2, 3) if m.group(g))
        if m.group(group).lower() not in _NOT_A_NAME_BETWEEN:
            _name_after(ctx, m.start(group), True, "name in 'mi … ahe' / 'main … hoon'")
    for start, end in ctx.folded.joined:
        word = text[start:end]
        # "m\u200bo\u200bh...": a listed name stays a name though it looks like "-ed" English.
        known_name = word.lower() in lex.names
        if (known_name or not ctx.is_common(word)) and not ctx.is_masked(start, end):
            ctx.add("person_name", start, end, "word spelled out letter by letter")
    for m in _OUR_RE.finditer(text):
        _name_after(ctx, m.end(), False, "name after 'our' (hamari/amchi)")
    for m in _LOWER_JI_RE.finditer(text):
        if m.group(1) in lex.names and not ctx.is_masked(m.start(), m.end()):
            ctx.add("person_name", m.start(), m.end(), "name with the respectful -ji")
    for m in _JI_SUFFIX_RE.finditer(text):
        if not ctx.is_common(m.group(1)) and not ctx.is_masked(m.start(), m.end()):
            ctx.add("person_name", m.start(), m.end(), "name with the respectful -ji")
    for m in _KINSHIP_AFTER_RE.finditer(text):
        word = m.group(1)
        k = ctx.token_at.get(m.start(1))
        if k is None or ctx.is_masked(m.start(), m.end()):
            continue
        capitalised = word[0].isupper() and not (
            ctx.sentence_initial(m.start()) and ctx.is_common(word)
        )
        if (capitalised and not ctx.is_common(word)) or word.lower() in lex.names:
            ctx.add("person_name", m.start(), m.end(), "name with a kinship word (didi/bhai...)")

    # Capitalised words nobody vouched for: names and places missing from the lists.
    for index, tok in enumerate(tokens):
        if index in flagged or not _unknown_capitalised(ctx, tok):
            continue
        ctx.add(
            "person_name",
            tok.start,
            tok.end,
            "capitalised word not in the known-safe vocabulary (possible name or place)",
        )
    _detect_capitalised_pairs(ctx)


def _unknown_capitalised(ctx: _Context, tok: _Token) -> bool:
    text = tok.text
    if len(text) < 2 or not text.isalpha() or not tok.is_cap:
        return False
    if _ROMAN_RE.fullmatch(text):
        return False
    low = tok.lower
    if ctx.is_common(low) or low.removesuffix("s") in _MONTH_WORDS:
        return False
    if low in ctx.lex.ambiguous_english:
        return False
    return not ctx.is_masked(tok.start, tok.end) and not ctx.is_covered(tok.start, tok.end)


def _detect_capitalised_pairs(ctx: _Context) -> None:
    """Two or more consecutive capitalised words mid-sentence look like a full name."""
    tokens = ctx.tokens
    i = 0
    while i < len(tokens):
        j = i
        while (
            j < len(tokens)
            and tokens[j].is_cap
            and tokens[j].text.isalpha()
            and (j == i or ctx.space_gap[j - 1])
        ):
            j += 1
        run = tokens[i:j]
        if run and ctx.sentence_initial(run[0].start):
            run = run[1:]
        if len(run) >= 2:
            unknown = [t for t in run if not ctx.is_common(t.text) and t.lower not in _MONTH_WORDS]
            start, end = run[0].start, run[-1].end
            if unknown and not ctx.is_masked(start, end) and not ctx.is_covered(start, end):
                ctx.add("person_name", start, end, "two or more capitalised words in a row")
        i = max(j, i + 1)


def _detect_unreadable_script(ctx: _Context) -> None:
    """Text in scripts the lists do not cover (Devanagari, Bengali...) could hide a name."""
    for m in _NON_LATIN_RUN_RE.finditer(ctx.text):
        letters = [ch for ch in m.group() if ch.isalpha()]
        if len(letters) < 2:
            continue
        if all(unicodedata.name(ch, "").startswith("LATIN") for ch in letters):
            continue
        ctx.add(
            "person_name",
            m.start(),
            m.end(),
            "text in a script the guard cannot check (for example Devanagari)",
        )


# Patterns of which every match holds a digit (\d or [0-9], both within \d): each has one
# outside any optional part or alternative, in every alternative. `_Context.finditer` does
# not run them over a text without a digit; tests/guard/test_shortcuts.py checks both ways.
_NEEDS_A_DIGIT = frozenset(
    {
        _CASE_NO_RE,  # ...\d[\w/\-]*
        _US_SECTION_RE,  # u/s \d+
        _SECTION_LAW_RE,  # section \d+
        _SERIAL_RE,  # sr. no. \d+
        _NUMBER_YEAR_RE,  # \d{1,6}/(?:19|20)\d{2}
        _NUMBER_OF_YEAR_RE,  # \d{1,6} of (?:19|20)\d{2}
        _NUMERIC_DMY_RE,
        _NUMERIC_YMD_RE,
        _NUMERIC_MY_RE,
        _CONTEXT_DM_RE,
        _DAY_MONTH_RE,  # (\d{1,2}) month
        _MONTH_DAY_RE,  # month (\d{1,2})
        _MONTH_YEAR_RE,  # month (?:19|20)\d{2}
        _ORDINAL_DAY_RE,  # both alternatives: \d{1,2}(?:st|nd|rd|th)
        _FESTIVAL_YEAR_RE,  # both alternatives: (?:19|20)\d{2}
        *(regex for regex, _ in _ID_PATTERNS),  # each has \d, the IFSC code a literal 0
        _HOUSE_NUMBER_RE,  # ...\d[a-z0-9/\-]*
        _PIN_WORD_RE,  # \d{3}\s?\d{3}
        _SCHOOL_PATTERNS[2][0],  # school no. \d+
    }
)
# Looked up by identity: hashing a compiled pattern hashes its whole program, every time.
_NEEDS_A_DIGIT_IDS = frozenset(id(regex) for regex in _NEEDS_A_DIGIT)
