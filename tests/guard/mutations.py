"""The mutation corpus: every identifier of the positive corpus, rewritten the ways people
write identifiers to get them past a filter.

Every marked identifier of tests/guard/corpus/pii_positive.tsv is rewritten in place in its
sentence by hypothesis strategies, one or several mutations at a time:

- digits: any separator or spacing between them ("98200/12345", "2345_6789_0124",
  "9 8|2 0.0"), irregular regrouping, digits of other scripts (Devanagari, full-width,
  Bengali, Gujarati, Gurmukhi, Odia, Tamil, Telugu, Kannada, Malayalam, Arabic-Indic, mixed
  within one number), digit words in English ("nine eight double two"), Hindi in Latin
  letters ("ek do teen") and in Devanagari ("एक दो तीन"), partly words and partly digits,
  look-alikes (O or o for 0, l or I for 1);
- dates and case numbers keep their shape (a date stays day, month, year) but change
  separators ("12_03_2024", "123 of 2024"); months are written in lower case ("3 may 2012")
  or abbreviated; ages are written as English or Hindi number words ("terah saal ki");
- letters: a word split by separators ("M-e-e-n-a", "m.e.e.n.a"), Cyrillic and Greek
  look-alike letters, common abbreviations (road to rd, street to st, station to stn, near to
  nr, opposite to opp, police station to PS, gali/galli/gully, chowk/chauk, number to no./#),
  lower case where the words around it still say what it is ("lamington rd");
- names: Hinglish and Marathi phrasings ("mera naam Meena hai", "majha naav Meena aahe",
  "meri beti Meena ...") that replace the sentence around the name.

A mutation applies only where a human reader still recovers the identifier: regrouping and
number words only touch pure digit runs of five or more digits (a date is not regrouped
into a phone), letter splitting only words of 2 to 12 letters that carry the identifier (a
name, a locality, a month, an acronym such as CWC, never "the" or "road"), and a bare name
is never lower-cased without a word around it that says it is a name.

Reproducible: `generate_variants()` runs one `@given` per corpus row with `@seed(SEED +
row)`, `database=None` and only the generate phase, and keeps what the strategy drew (the test
body stores the example; nothing is asserted inside hypothesis, so no shrinking and no
early stop). Hypothesis draws from `random.Random(seed)`, so every run draws the same
variants for a given hypothesis version (pinned in constraints.txt); `fingerprint()` hashes
the list so that runs can be compared. Seeded `@given` rather than `.example()` because
`.example()` is neither seeded nor meant for tests.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TypeVar

import hypothesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

CORPUS = Path(__file__).parent / "corpus"
MUTATIONS_FILE = CORPUS / "pii_mutations.tsv"


@cache
def _int(low: int, high: int) -> st.SearchStrategy[int]:
    """Cached: building (and validating) a strategy costs more than drawing from it."""
    return st.integers(low, high)


_BOOL = st.booleans()


T = TypeVar("T")


def _pick(draw: st.DrawFn, options: Sequence[T]) -> T:
    return options[draw(_int(0, len(options) - 1))]


SEED = 20261205
EXAMPLES_PER_ROW = 60

_MARK_RE = re.compile(r"\[\[(.+?)\]\]")
_ESCAPE_RE = re.compile(r"\\u([0-9a-fA-F]{4})")


@dataclass(frozen=True)
class Row:
    index: int
    detector: str
    parts: tuple[str, ...]  # plain, identifier, plain, identifier, ..., plain

    @property
    def identifiers(self) -> tuple[str, ...]:
        return self.parts[1::2]


@dataclass(frozen=True)
class Variant:
    row: int
    detector: str
    text: str
    spans: tuple[tuple[int, int], ...]
    mutations: tuple[str, ...]

    def marked(self) -> str:
        """The text with the identifiers in [[...]], as in the corpus file."""
        out, cursor = "", 0
        for start, end in self.spans:
            out += self.text[cursor:start] + "[[" + self.text[start:end] + "]]"
            cursor = end
        return out + self.text[cursor:]


def load_rows() -> list[Row]:
    rows: list[Row] = []
    lines = (CORPUS / "pii_positive.tsv").read_text(encoding="utf-8").splitlines()
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        detector, marked = line.split("\t", 1)
        marked = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), marked)
        parts, cursor = [], 0
        for m in _MARK_RE.finditer(marked):
            parts += [marked[cursor : m.start()], m.group(1)]
            cursor = m.end()
        parts.append(marked[cursor:])
        rows.append(Row(len(rows), detector, tuple(parts)))
    return rows


# ---------------------------------------------------------------------------------------
# Digits

_SCRIPTS = {
    "devanagari": 0x0966,
    "bengali": 0x09E6,
    "gurmukhi": 0x0A66,
    "gujarati": 0x0AE6,
    "odia": 0x0B66,
    "tamil": 0x0BE6,
    "telugu": 0x0C66,
    "kannada": 0x0CE6,
    "malayalam": 0x0D66,
    "arabic-indic": 0x0660,
    "fullwidth": 0xFF10,
}
_SCRIPT_NAMES = tuple(_SCRIPTS)
_DIGIT_WORDS = {
    "english": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "english-oh": ("oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "hindi": ("shunya", "ek", "do", "teen", "char", "paanch", "chhe", "saat", "aath", "nau"),
    "hindi-zero": ("zero", "ek", "do", "teen", "chaar", "panch", "chhah", "saat", "aath", "nau"),
    "devanagari": ("शून्य", "एक", "दो", "तीन", "चार", "पाँच", "छह", "सात", "आठ", "नौ"),
}
_REPEAT_WORDS = {
    "english": ("double", "triple"),
    "english-oh": ("double", "triple"),
    "hindi": ("double", "triple"),
    "hindi-zero": ("double", "triple"),
    "devanagari": ("डबल", "ट्रिपल"),
}
_WORD_GAPS = (" ", " ", "-", ", ", " - ", "  ")
# Invisible ones too: a zero-width space or a soft hyphen shows nothing between the digits.
_DIGIT_SEPARATORS = (
    " ", "/", "_", ".", "-", "|", "  ", " / ", " - ", " _ ", ". ", "\u00a0", "\\", "\u200b",
    "\u00ad",
)  # fmt: skip
_AGE_WORDS_EN = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
_AGE_WORDS_HI = (
    "shunya ek do teen char paanch chhe saat aath nau das gyarah barah terah chaudah pandrah "
    "solah satrah atharah unnis bees"
).split()

# A digit run: digits with up to three separators between them.
_RUN_RE = re.compile(r"\d(?:[ .\-/()_|\u00a0\u200b\u00ad]{0,3}\d)*")
_WORD_VALUES = {
    word: str(value)
    for words in _DIGIT_WORDS.values()
    for value, word in enumerate(words)
    if word.isascii()
}
_NUMBER_WORD = "|".join(sorted(_WORD_VALUES, key=len, reverse=True)) + "|double|triple"
# Digits already spelled out in the corpus ("nine eight two ...", "ek do teen ...").
_SPELLED_RE = re.compile(rf"(?i)\b(?:{_NUMBER_WORD})(?:[\s,\-]+(?:{_NUMBER_WORD}))+\b")


def _ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.decimal(ch)) for ch in text if ch.isdecimal())


def _spelled_to_digits(words: str) -> str:
    out, repeat = "", 1
    for word in re.findall(r"[a-z]+", words.lower()):
        if word in ("double", "triple"):
            repeat = 2 if word == "double" else 3
            continue
        out += _WORD_VALUES[word] * repeat
        repeat = 1
    return out


def _grouping(draw: st.DrawFn, digits: str) -> list[str]:
    """Split `digits` into groups of 1 to 5."""
    groups, rest = [], digits
    while rest:
        size = draw(_int(1, min(5, len(rest))))
        groups.append(rest[:size])
        rest = rest[size:]
    return groups


def _join(draw: st.DrawFn, groups: list[str]) -> tuple[str, str]:
    if len(groups) == 1:
        return groups[0], "no separator"
    if draw(_BOOL):
        sep = _pick(draw, _DIGIT_SEPARATORS)
        return sep.join(groups), f"{sep!r}"
    out = groups[0]
    for group in groups[1:]:
        out += _pick(draw, _DIGIT_SEPARATORS) + group
    return out, "mixed separators"


def _spell(draw: st.DrawFn, digits: str) -> tuple[str, str]:
    """Digits as words, with double/triple for repeats, maybe only some groups spelled."""
    language = _pick(draw, tuple(_DIGIT_WORDS))
    words, repeats = _DIGIT_WORDS[language], _REPEAT_WORDS[language]
    use_repeats = draw(_BOOL)
    partly = draw(_BOOL) and len(digits) >= 8
    spelled_from = draw(_int(1, len(digits) - 4)) if partly else 0
    pieces, i = [], spelled_from
    while i < len(digits):
        run = 1
        while i + run < len(digits) and digits[i + run] == digits[i] and run < 3:
            run += 1
        if use_repeats and run >= 2:
            pieces.append(f"{repeats[run - 2]} {words[int(digits[i])]}")
            i += run
        else:
            pieces.append(words[int(digits[i])])
            i += 1
    gap = _pick(draw, _WORD_GAPS)
    text = gap.join(pieces)
    if spelled_from:
        text = digits[:spelled_from] + _pick(draw, (" ", "-", " ")) + text
    return text, f"number words: {language}" + (" partly" if spelled_from else "")


def _script(draw: st.DrawFn, text: str) -> tuple[str, str]:
    """ASCII digits of `text` written in another script (one script, or one per digit)."""
    if draw(_BOOL):
        base = _SCRIPTS[_pick(draw, _SCRIPT_NAMES)]
        out = "".join(chr(base + int(ch)) if ch.isdigit() and ch.isascii() else ch for ch in text)
        return out, f"digit script: {next(n for n, b in _SCRIPTS.items() if b == base)}"
    out = ""
    for ch in text:
        if ch.isdigit() and ch.isascii() and draw(_BOOL):
            ch = chr(_SCRIPTS[_pick(draw, _SCRIPT_NAMES)] + int(ch))
        out += ch
    return out, "digit script: mixed"


_DIGIT_LOOKALIKES = {"0": ("O", "o"), "1": ("l", "I")}


def _digit_lookalikes(draw: st.DrawFn, text: str) -> tuple[str, str] | None:
    """One or two 0s and 1s written as O, o, l or I (never the first digit of the run)."""
    positions = [i for i, ch in enumerate(text) if ch in _DIGIT_LOOKALIKES and i > 0]
    if not positions:
        return None
    chosen = {_pick(draw, positions) for _ in range(draw(_int(1, 2)))}
    chars = list(text)
    for i in sorted(chosen):
        chars[i] = _pick(draw, _DIGIT_LOOKALIKES[chars[i]])
    return "".join(chars), "digit look-alikes: O o l I"


def _is_free_run(detector: str, ident: str, start: int, end: int, digits: str) -> bool:
    """A run of 5+ digits that is the number itself (phone, Aadhaar, PIN, account), not part
    of a date, a case number or a code mixing letters and digits."""
    if len(digits) < 5 or detector not in (
        "phone",
        "aadhaar",
        "pin_code",
        "id_number",
        "social_handle",
    ):
        return False
    before = ident[start - 1] if start else " "
    after = ident[end] if end < len(ident) else " "
    return not (before.isalpha() or after.isalpha())


def _mutate_digits(draw: st.DrawFn, detector: str, ident: str) -> tuple[str, list[str]]:
    applied: list[str] = []
    if detector in ("phone", "social_handle", "pin_code", "aadhaar", "id_number"):
        for m in list(_SPELLED_RE.finditer(ident))[::-1]:
            digits = _spelled_to_digits(m.group())
            ident = ident[: m.start()] + digits + ident[m.end() :]
            applied.append("number words: read as digits")
    # Work on ASCII digits; other scripts are drawn below.
    ascii_ident = "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in ident)
    if ascii_ident != ident:
        applied.append("digit script: read as ASCII")
        ident = ascii_ident
    runs = list(_RUN_RE.finditer(ident))
    out, cursor = "", 0
    for m in runs:
        raw, digits = m.group(), _ascii_digits(m.group())
        start, end = m.start(), m.end()
        new = raw
        labelled = len(applied)
        if _is_free_run(detector, ident, start, end, digits):
            shape = _pick(draw, ("keep", "regroup", "regroup", "words", "separators"))
            if shape == "regroup":
                new, how = _join(draw, _grouping(draw, digits))
                applied.append(f"regroup: {how}")
            elif shape == "separators":
                groups = re.findall(r"\d+", raw)
                new, how = _join(draw, groups)
                applied.append(f"separators: {how}")
            elif shape == "words":
                new, how = _spell(draw, digits)
                applied.append(how)
        elif detector in ("exact_date", "case_number", "id_number", "place") and re.search(
            r"\d[/.\-]\d", raw
        ):
            # Keep the groups (a date stays a date), change the separators.
            if draw(_BOOL):
                seps: tuple[str, ...] = ("/", "_", "-", ".", "|", " / ", " - ", "\\", " ")
                if detector == "case_number":
                    seps += (" of ", " of ", "/")
                sep = _pick(draw, seps)
                new = "".join(sep if ch in "/.-" else ch for ch in raw)
                applied.append(f"separators: {sep!r}")
        elif detector == "exact_date" and len(digits) == 8 and raw.isdigit():
            if draw(_BOOL):
                sep = _pick(draw, ("-", "/", "_", " ", ".", "|"))
                new = sep.join((raw[:4], raw[4:6], raw[6:]))
                applied.append(f"separators: {sep!r}")
        elif detector == "exact_age" and raw.isdigit() and int(raw) <= 20 and draw(_BOOL):
            hindi = bool(re.search(r"(?i)saal|sal\b|varsh", ident)) and draw(_BOOL)
            words = _AGE_WORDS_HI if hindi else _AGE_WORDS_EN
            tail = ident[end : end + 2]
            if not tail[:1].isalpha():  # "13yo" stays digits; "13 years" may become words
                new = words[int(raw)]
                applied.append("number words: age in " + ("Hindi" if hindi else "English"))
        if new == raw:
            del applied[labelled:]  # regrouped into the groups it had
        if any(ch.isdigit() for ch in new):
            if len(digits) >= 5 and draw(_BOOL):
                looked = _digit_lookalikes(draw, new)
                if looked is not None:
                    new = looked[0]
                    applied.append(looked[1])
            if draw(_BOOL):
                new, how = _script(draw, new)
                applied.append(how)
        out += ident[cursor:start] + new
        cursor = end
    return out + ident[cursor:], applied


# ---------------------------------------------------------------------------------------
# Letters

# Words that never carry the identifier alone: they are not letter-split.
_GENERIC = frozenset(
    """a an the of and in on at to is was her his my she he it its from by for with near
    nearby opposite behind beside next front close in no number road rd street st lane gully
    gali galli chawl nagar colony station temple market park chowk room flat plot sector
    school high primary english convent academy vidyalaya vidya mandir shala prathamik
    mrs mr ms dr smt shri kumari sister didi bhai aunty uncle dada bhaiya friend mother
    father brother cousin teacher caregiver neighbour classmate grandmother uncle's mausi
    chacha saheli dost behen name named called calls naam hai is mera meri uski her him
    my said loves new best friends year years old yrs aged age she's turned born
    case crime order section hearing court raid rescued copy police p s about last this
    early since arrived came just after around month on the th st nd rd house id insta
    district village north south east west new old railway""".split()
)
_NAME_CONTEXT = frozenset(
    """mrs mr ms dr smt shri kumari sister didi bhai aunty uncle dada named called calls
    naam name friend sister brother mother teacher caregiver classmate cousin neighbour
    behen mausi chacha saheli grandmother her""".split()
)
_ADDRESS_WORDS = frozenset(
    """road rd street st lane gully gali galli chawl nagar colony station temple market park
    chowk room flat plot sector peth gully""".split()
)
_SCHOOL_WORDS = frozenset(
    "school vidyalaya convent academy shala mandir parishad prathamik vidyalay".split()
)
_WORD_RE = re.compile(r"[A-Za-z]+")

_SPLIT_SEPARATORS = ("-", ".", " ", "_", "*", ". ", "|", "\u200b")
_HOMOGLYPHS = {
    "a": ("\u0430", "\u03b1"), "c": ("\u0441", "\u03f2"), "e": ("\u0435",),
    "h": ("\u04bb",), "i": ("\u0456", "\u03b9"), "j": ("\u0458",), "k": ("\u03ba",),
    "o": ("\u043e", "\u03bf"), "p": ("\u0440", "\u03c1"), "s": ("\u0455",),
    "x": ("\u0445",), "y": ("\u0443",), "v": ("\u03bd",),
    "A": ("\u0410", "\u0391"), "B": ("\u0412", "\u0392"), "C": ("\u0421",),
    "E": ("\u0415", "\u0395"), "H": ("\u041d", "\u0397"), "I": ("\u0406", "\u0399"),
    "J": ("\u0408",), "K": ("\u041a", "\u039a"), "M": ("\u041c", "\u039c"),
    "N": ("\u039d",), "O": ("\u041e", "\u039f"), "P": ("\u0420", "\u03a1"),
    "S": ("\u0405",), "T": ("\u0422", "\u03a4"), "X": ("\u0425", "\u03a7"),
    "Y": ("\u03a5",), "Z": ("\u0396",),
}  # fmt: skip
_ABBREVIATIONS = (
    (r"\bpolice station\b", ("PS", "P.S.", "ps", "p.s.", "police stn", "pol. stn.", "thana")),
    (r"\broad\b", ("rd", "Rd", "Rd.", "rd.", "RD")),
    (r"\bstreet\b", ("st", "St.", "str", "St")),
    (r"\bstation\b", ("stn", "Stn.", "stn.", "STN")),
    (r"\bnear\b", ("nr", "nr.", "Nr.", "NR")),
    (r"\bopposite\b", ("opp", "opp.", "Opp.", "opps")),
    (r"\blane\b", ("ln", "Ln.", "ln.")),
    (r"\bgully\b", ("galli", "gali", "gully", "gulli")),
    (r"\bgali\b", ("galli", "gully", "gali")),
    (r"\bchowk\b", ("chauk", "chk", "chowk", "chouk")),
    (r"\bno\.", ("#", "number", "no", "No:", "nmbr")),
    (r"\bnumber\b", ("no.", "#", "num", "nambar")),
    (r"\bsector\b", ("sec", "Sec.", "sect")),
    (r"\bnagar\b", ("ngr", "Ngr.", "nagr")),
    (r"\bmarket\b", ("mkt", "Mkt.", "market")),
    (r"\bschool\b", ("sch", "Sch.", "schl")),
    (r"\bdistrict\b", ("dist", "dist.", "Dist.", "distt")),
    (r"\btemple\b", ("mandir", "tmpl")),
    (r"\bb'day\b", ("bday", "b-day", "B'day", "bdy")),
)


def _key_words(detector: str, ident: str) -> list[re.Match[str]]:
    """Words that carry the identifier: names, localities, months, acronyms; when every
    word is generic ("court hearing", "last month"), the words themselves."""
    if detector in ("email", "url", "social_handle", "id_number", "phone", "aadhaar"):
        return []
    splittable: list[re.Match[str]] = []
    generic: list[re.Match[str]] = []
    for m in _WORD_RE.finditer(ident):
        word = m.group()
        if len(word) < 2 or len(word) > 14 or (len(word) == 2 and not word.isupper()):
            continue
        # Letters glued to digits or inside an abbreviation ("4B", "b'day") are not split;
        # a possessive is ("X-a-v-i-e-r's").
        before = ident[m.start() - 1] if m.start() else " "
        after = ident[m.end() : m.end() + 2]
        if before.isdigit() or before == "'" or after[:1].isdigit():
            continue
        if after[:1] == "'" and after != "'s":
            continue
        (generic if word.lower() in _GENERIC else splittable).append(m)
    if splittable or any(ch.isdigit() for ch in ident):
        return splittable  # in "She is 13" the number is the identifier, not "She"
    return [m for m in generic if len(m.group()) >= 3]


def _lowercase_keeps_meaning(detector: str, ident: str) -> bool:
    words = [w.lower() for w in _WORD_RE.findall(ident)]
    if detector == "person_name":
        return any(w in _NAME_CONTEXT for w in words)
    if detector == "place":
        return any(w in _ADDRESS_WORDS for w in words)
    if detector == "school":
        return any(w in _SCHOOL_WORDS for w in words)
    return detector in ("exact_date", "exact_age", "case_number", "email", "url", "pin_code")


def _letter_split(draw: st.DrawFn, word: str) -> tuple[str, str]:
    sep = _pick(draw, _SPLIT_SEPARATORS)
    case = _pick(draw, ("keep", "keep", "lower", "upper"))
    if case == "lower":
        word = word.lower()
    elif case == "upper":
        word = word.upper()
    out = sep.join(word)
    if sep.strip() == "." and draw(_BOOL):
        out += "."
    return out, f"letters split: {sep!r}" + ("" if case == "keep" else f" {case}")


def _homoglyphs(draw: st.DrawFn, text: str, within: list[tuple[int, int]]) -> tuple[str, str]:
    positions = [i for a, b in within for i in range(a, b) if text[i] in _HOMOGLYPHS]
    if not positions:
        return text, ""
    chosen = {_pick(draw, positions) for _ in range(draw(_int(1, 3)))}
    chars = list(text)
    for i in sorted(chosen):
        chars[i] = _pick(draw, _HOMOGLYPHS[chars[i]])
    return "".join(chars), "look-alike letters: Cyrillic/Greek"


def _mutate_letters(draw: st.DrawFn, detector: str, ident: str) -> tuple[str, list[str]]:
    applied: list[str] = []
    for pattern, replacements in _ABBREVIATIONS:
        m = re.search(pattern, ident, flags=re.IGNORECASE)
        if m and draw(_BOOL):
            new = _pick(draw, replacements)
            ident = ident[: m.start()] + new + ident[m.end() :]
            applied.append(f"abbreviation: {new}")
    if _lowercase_keeps_meaning(detector, ident) and draw(_BOOL):
        if ident != ident.lower():
            ident = ident.lower()
            applied.append("lower case: whole identifier")
    if detector == "exact_date":
        month = re.search(
            r"(?i)\b(january|february|march|april|may|june|july|august|september|october|"
            r"november|december)\b",
            ident,
        )
        if month and draw(_BOOL):
            name = month.group()
            new = _pick(draw, (name.lower(), name[:3], name[:3].lower() + "."))
            ident = ident[: month.start()] + new + ident[month.end() :]
            applied.append(f"lower case: month {new}")
    keys = _key_words(detector, ident)
    if keys:
        split_one: bool = draw(_BOOL)
        if split_one:
            m = _pick(draw, keys)
            split, how = _letter_split(draw, m.group())
            ident = ident[: m.start()] + split + ident[m.end() :]
            applied.append(how)
    if draw(_BOOL):
        within = [(m.start(), m.end()) for m in _key_words(detector, ident)]
        if not within:
            within = [(m.start(), m.end()) for m in _WORD_RE.finditer(ident)]
        ident, how = _homoglyphs(draw, ident, within)
        if how:
            applied.append(how)
    return ident, applied


# ---------------------------------------------------------------------------------------
# Emails and web addresses written out


_AT_WORDS = (" at ", "(at)", "[at]", " @ ", " [at] ", "{at}")


def _mutate_address(draw: st.DrawFn, detector: str, ident: str) -> tuple[str, list[str]]:
    applied = []
    if any(0xFF01 <= ord(ch) <= 0xFF5E for ch in ident) and draw(_BOOL):
        # Full-width text: some characters back to ASCII, the rest left wide.
        ident = "".join(
            chr(ord(ch) - 0xFEE0) if 0xFF01 <= ord(ch) <= 0xFF5E and draw(_BOOL) else ch
            for ch in ident
        )
        applied.append("full-width: partly back to ASCII")
    if detector == "email" and "@" in ident and draw(_BOOL):
        # A bare " at " only where a dotted domain follows: "pay priya at okaxis" reads as
        # English, "priya at gmail.com" does not.
        dotted = "." in ident.rsplit("@", 1)[-1]
        at = _pick(draw, _AT_WORDS if dotted else _AT_WORDS[1:])
        ident = ident.replace("@", at, 1)
        applied.append(f"written out: @ as {at.strip()}")
    if detector in ("email", "url") and draw(_BOOL):
        host = ident.rsplit("@", 1)[-1] if "@" in ident else ident
        if "." in host:
            dot = _pick(draw, (" dot ", "(dot)", "[dot]", " . ", " DOT "))
            head = ident[: len(ident) - len(host)]
            ident = head + host.replace(".", dot)
            applied.append(f"written out: . as {dot.strip()}")
    if detector in ("email", "url", "social_handle", "id_number") and draw(_int(0, 3)) == 0:
        ident = "".join(
            chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" and draw(_BOOL) else ch for ch in ident
        )
        applied.append("full-width: some characters")
    return ident, applied


# ---------------------------------------------------------------------------------------
# Names in Hinglish and Marathi

# {n} is the name; sentences a partner's caseworker or a child might write.
_NAME_FRAMES = (
    "mera naam {n} hai.",
    "Mera naam {n} hai aur mujhe padhna accha lagta hai.",
    "meri beti {n} ab school jaati hai.",
    "Meri behen {n} bahut acchi hai.",
    "uska naam {n} hai.",
    "Iska naam {n} hai, woh roz khelti hai.",
    "Hamari {n} ne aaj gaana gaaya.",
    "meri saheli {n} kal aayi thi.",
    "Uski dost {n} uske saath padhti hai.",
    "majha naav {n} aahe.",
    "Maza naav {n} aahe ani mala chitra kadhayla aavadta.",
    "majhi mulgi {n} shalet jaate.",
    "Tichi bahin {n} roj yete.",
    "tiche naav {n} aahe.",
    "Amchi {n} khup hushar aahe.",
    "My naam is {n}.",
    "Meri beti {n} loves dancing.",
)
_LOWER_NAME_FRAMES = frozenset(
    i for i, f in enumerate(_NAME_FRAMES) if not re.search(r"(?i)^(hamari|amchi) ", f)
)


def _bare_name(ident: str) -> str | None:
    words = ident.split()
    kept = [w for w in words if w.lower().strip(".,'\"") not in _NAME_CONTEXT | _GENERIC]
    if not kept:
        return None
    return " ".join(kept).strip(".,\"'")


# ---------------------------------------------------------------------------------------
# Variants


def _mutate_identifier(draw: st.DrawFn, detector: str, ident: str) -> tuple[str, list[str]]:
    applied: list[str] = []
    ident, done = _mutate_address(draw, detector, ident)
    applied += done
    ident, done = _mutate_digits(draw, detector, ident)
    applied += done
    ident, done = _mutate_letters(draw, detector, ident)
    applied += done
    return ident, applied


@st.composite
def variants(draw: st.DrawFn, row: Row) -> Variant:
    """One rewriting of every identifier in `row`'s sentence."""
    parts = list(row.parts)
    applied: list[str] = []
    if row.detector == "person_name" and len(row.identifiers) == 1 and draw(_int(0, 3)) == 0:
        name = _bare_name(row.identifiers[0])
        if name:
            index = draw(_int(0, len(_NAME_FRAMES) - 1))
            frame = _NAME_FRAMES[index]
            if index in _LOWER_NAME_FRAMES and draw(_BOOL):
                name = name.lower()
            before, after = frame.split("{n}")
            parts = [before, name, after]
            applied.append(f"phrasing: {frame}")
    text, spans = "", []
    for i, part in enumerate(parts):
        if i % 2:
            new, done = _mutate_identifier(draw, row.detector, part)
            applied += done
            spans.append((len(text), len(text) + len(new)))
            text += new
        else:
            text += part
    return Variant(row.index, row.detector, text, tuple(spans), tuple(applied))


def _draw_row(row: Row, per_row: int) -> list[Variant]:
    drawn: dict[tuple[str, tuple[tuple[int, int], ...]], Variant] = {}
    original = "".join(row.parts)

    @seed(SEED + row.index)
    @settings(
        max_examples=per_row,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(variants(row))
    def keep(variant: Variant) -> None:
        key = (variant.text, variant.spans)
        # A draw can leave the text as it was ("mixed" scripts that picked no digit).
        if variant.text != original and key not in drawn:
            drawn[key] = variant

    keep()
    return list(drawn.values())


def generate_variants(
    rows: list[Row] | None = None, per_row: int = EXAMPLES_PER_ROW
) -> list[Variant]:
    """The mutation corpus: up to `per_row` distinct variants of every row, in row order,
    the same on every run (see the module docstring). Takes a while (hypothesis'
    engine costs a few milliseconds an example): the test reads the drawn list from
    MUTATIONS_FILE instead."""
    rows = load_rows() if rows is None else rows
    return [variant for row in rows for variant in _draw_row(row, per_row)]


def fingerprint(corpus: list[Variant]) -> str:
    digest = hashlib.sha256()
    for variant in corpus:
        digest.update(f"{variant.row}\t{variant.marked()}\n".encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# The drawn list, kept in a file


def _source_digest() -> str:
    """What the drawn list depends on: the positive corpus, the seed, the row count and
    the hypothesis version (its generator may change between releases)."""
    digest = hashlib.sha256((CORPUS / "pii_positive.tsv").read_bytes())
    digest.update(f"{SEED} {EXAMPLES_PER_ROW} {hypothesis.__version__}".encode())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def _escape(text: str) -> str:
    return "".join(
        f"\\u{ord(ch):04x}"
        if ch == "\\" or (unicodedata.category(ch) in ("Cc", "Cf", "Zs") and ch != " ")
        else ch
        for ch in text
    )


def write_corpus(corpus: list[Variant], path: Path = MUTATIONS_FILE) -> None:
    lines = [
        "# The mutation corpus, drawn by tests/guard/mutations.py; do not edit by hand.",
        "# Regenerate after changing pii_positive.tsv or mutations.py:",
        "#     python -m tests.guard.mutations",
        f"# source: {_source_digest()}",
        f"# fingerprint: {fingerprint(corpus)}",
        "# row<TAB>detector<TAB>text with [[identifiers]]<TAB>mutations applied",
    ]
    for v in corpus:
        lines.append(f"{v.row}\t{v.detector}\t{_escape(v.marked())}\t{'; '.join(v.mutations)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class StoredCorpus:
    source: str  # _source_digest() when it was drawn
    fingerprint: str
    variants: list[Variant]

    @property
    def current(self) -> bool:
        return self.source == _source_digest()


def read_corpus(path: Path = MUTATIONS_FILE) -> StoredCorpus:
    header: dict[str, str] = {}
    corpus = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ") and ": " in line:
            key, value = line[2:].split(": ", 1)
            header[key] = value
            continue
        if not line or line.startswith("#"):
            continue
        row, detector, marked, mutations = line.split("\t")
        marked = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), marked)
        text, spans, cursor = "", [], 0
        for m in _MARK_RE.finditer(marked):
            text += marked[cursor : m.start()]
            spans.append((len(text), len(text) + len(m.group(1))))
            text += m.group(1)
            cursor = m.end()
        text += marked[cursor:]
        corpus.append(Variant(int(row), detector, text, tuple(spans), tuple(mutations.split("; "))))
    return StoredCorpus(header.get("source", ""), header.get("fingerprint", ""), corpus)


if __name__ == "__main__":
    drawn = generate_variants()
    write_corpus(drawn)
    print(f"{len(drawn)} variants written to {MUTATIONS_FILE} (fingerprint {fingerprint(drawn)})")
