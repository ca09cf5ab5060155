"""Identifiers written another way: separators, other scripts, words, split letters, look-alikes.

Each text marks the identifying span with [[...]]. The guard must report it under the named
detector, and the findings of that detector must cover the whole marked span in the ORIGINAL
text, because the officer sees the text masked by the finding spans.
"""

from __future__ import annotations

import re

import pytest

from donorhub.guard import scan_text

_MARK_RE = re.compile(r"\[\[(.+?)\]\]")


def _unmark(marked: str) -> tuple[str, list[tuple[int, int]]]:
    text, spans, cursor = "", [], 0
    for m in _MARK_RE.finditer(marked):
        text += marked[cursor : m.start()]
        spans.append((len(text), len(text) + len(m.group(1))))
        text += m.group(1)
        cursor = m.end()
    return text + marked[cursor:], spans


def _assert_covered(detector: str, marked: str) -> None:
    text, spans = _unmark(marked)
    findings = scan_text(text)
    covered = set()
    for f in findings:
        if f.detector == detector:
            covered.update(range(f.start, f.end))
    for start, end in spans:
        missing = [i for i in range(start, end) if i not in covered]
        assert not missing, (
            f"{detector} does not cover {text[start:end]!r} in {text!r}; got "
            + "; ".join(f"{f.detector} {text[f.start : f.end]!r}" for f in findings)
        )


# Spellings the guard used to let through.
NEWLY_CAUGHT = [
    # digits with any separator between them
    ("phone", "Call her mother on [[98200/12345]]."),
    ("phone", "Her number is [[98200_12345]]."),
    ("phone", "Number: [[98200|12345]] (mother)."),
    ("phone", "Number: [[98200,12345]] (mother)."),
    ("phone", "Ring [[98 200 / 123 45]] after six."),
    ("phone", "Ring [[98_200.12-3|45]] after six."),
    ("phone", "Ring [[\uff19\uff18\uff12\uff10\uff10\uff0f\uff11\uff12\uff13\uff14\uff15]] today."),
    ("aadhaar", "Her Aadhaar is [[2345/6789/0124]]."),
    ("aadhaar", "Her Aadhaar is [[2345_6789_0124]]."),
    ("aadhaar", "Card [[2345|6789|0124]] was found."),
    ("pin_code", "The room is at [[\u096a\u0966\u0966/\u0966\u0966\u096e]] near the mill."),
    # any run of five or more digits is flagged
    ("phone", "Her locker code is [[48213]]."),
    ("phone", "She remembered [[4 8 2 1 3]] from home."),
    # digit words: English, Hindi in Latin and in Devanagari script
    ("phone", "Her number ends in [[four eight two one three]]."),
    ("phone", "The code was [[double five triple three]]."),
    ("phone", "Call [[nine eight two nought nought 12345]] please."),
    (
        "phone",
        "Phone [[\u0928\u094c \u0906\u0920 \u0926\u094b \u0936\u0942\u0928\u094d\u092f "
        "\u0936\u0942\u0928\u094d\u092f \u090f\u0915 \u0926\u094b \u0924\u0940\u0928 "
        "\u091a\u093e\u0930 \u092a\u093e\u0901\u091a]] hai.",
    ),
    ("aadhaar", "Card [[two three four five six seven eight nine zero one two four]]."),
    ("pin_code", "PIN [[four zero zero zero zero eight]]."),
    ("pin_code", "PIN [[char shunya shunya shunya shunya aath]]."),
    # look-alike characters inside digit runs
    ("phone", "Call [[98200 l2345]] after six."),
    ("phone", "Call [[982OO12345]] after six."),
    ("phone", "Call [[98200 I2345]] after six."),
    # number/year references
    ("case_number", "Her matter is listed as [[145 of 2024]] at the court."),
    ("case_number", "It was registered as [[No. 88 of 2023]]."),
    # dates and birth rules, with the month in lower case
    ("exact_date", "She was born [[3 may 2012]]."),
    ("exact_age", "She was [[born]] 3 may 2012."),
    ("exact_date", "Her birthdate is [[3 may 2012]]."),
    ("exact_age", "Her [[birthdate]] is 3 may 2012."),
    ("exact_age", "[[birth date]]: 3 may 2012"),
    ("exact_date", "She joined on [[3 march 2024]]."),
    ("exact_date", "She came in [[march 2024]]."),
    # letters split by separators
    ("person_name", "Her sister [[M-e-e-n-a]] sings."),
    ("person_name", "[[m.e.e.n.a]] likes maths."),
    ("person_name", "Her friend is [[M e e n a]] from the village."),
    ("person_name", "[[S_u_n_i_t_a]] came too."),
    ("person_name", "Her friend [[Z-o-y-a]] came too."),
    # look-alike letters
    ("person_name", "She misses [[rek\u04bba]] a lot."),
    ("person_name", "She misses [[sun\u0131ta]] a lot."),
    # abbreviations
    ("place", "She lived off [[lamington rd]] for years."),
    ("place", "She sold flowers near [[grant rd]] stn."),
    ("place", "Her mother worked at [[crawford mkt]] for years."),
    ("place", "She lived [[nr bhatpada]] with her aunt."),
    ("place", "They stayed in [[bhendi gali]] for a month."),
    ("place", "She sold tea at [[hanuman chowk]] every morning."),
    ("place", "She was taken to [[Colaba stn]] first."),
    # Hinglish and Marathi phrasing of names
    ("person_name", "meri beti [[chinu]] school jaati hai."),
    ("person_name", "maza nav [[chinu]] aahe."),
    ("person_name", "mi [[chinu]] ahe."),
    ("person_name", "main [[chinu]] hoon."),
    ("person_name", "majhi mulgi [[chinu]] shikte."),
    ("person_name", "tila [[chinu]] mhantat."),
]

# Spellings the guard already caught; they must stay caught.
STILL_CAUGHT = [
    ("phone", "Call [[98200-12345]] after six."),
    ("phone", "Call [[98200.12345]] after six."),
    ("phone", "Call [[\u096f\u096e\u0968\u0966\u0966\u0967\u0968\u0969\u096a\u096b]]."),
    ("phone", "Call [[\u09ef\u09ee\u09e8\u09e6\u09e6 \u09e7\u09e8\u09e9\u09ea\u09eb]]."),
    ("aadhaar", "Her Aadhaar is [[2345 6789 0124]]."),
    ("person_name", "majha naav [[Meena]] ahe."),
    ("person_name", "mera naam [[Sunita]] hai."),
    ("person_name", "She misses [[\u0405un\u0456t\u0430]] a lot."),
    ("place", "She lived near [[Lamington Road]]."),
    ("phone", "Call [[nine eight two oh oh one two three four five]] please."),
    ("phone", "Mobile [[nau aath 200 ek do teen char paanch]] hai."),
    ("person_name", "uska naam [[chinu]] tha."),
]


@pytest.mark.parametrize(("detector", "marked"), NEWLY_CAUGHT, ids=lambda v: str(v)[:48])
def test_identifier_written_another_way_is_flagged(detector, marked):
    _assert_covered(detector, marked)


@pytest.mark.parametrize(("detector", "marked"), STILL_CAUGHT, ids=lambda v: str(v)[:48])
def test_usual_spelling_is_still_flagged(detector, marked):
    _assert_covered(detector, marked)


@pytest.mark.parametrize(
    "text",
    [
        "She may join the choir next term.",
        "The girls march in the parade every year.",
        "In 2024, 150 girls joined the programme.",
        "They raised \u20b91,20,000 for the new library.",
        "She walked 10,000 steps on the sports day.",
        "One or two girls stayed back; three or four went home.",
        "She scored 9/10 in maths and 8/10 in science.",
        "The class ran from 9.30-11.30 every day in 2023-24.",
        "Do one thing at a time, she says.",
        "She sat with the other girls and read.",
        "Oh, she loves the main road and the busy market.",
        # "I" after a number is the pronoun, not a look-alike 1 closing the number.
        "In 2024 I learned to swim.",
    ],
    ids=lambda v: v[:40],
)
def test_ordinary_sentences_stay_clean(text):
    assert scan_text(text) == []


def test_normalised_text_maps_back_to_the_original():
    from donorhub.guard.normalise import normalise

    text = "Call nine eight two one three, M-e-e-n-a, lamington rd \uff19\uff18"
    norm = normalise(text)
    assert "9 8 2 1 3" in norm.text
    assert "MEENA" in norm.text
    assert "lamington road" in norm.text
    start = norm.text.index("MEENA")
    assert norm.to_original(start, start + 5) == (text.index("M-e"), text.index(", lam"))
    start = norm.text.index("road")
    assert text[slice(*norm.to_original(start, start + 4))] == "rd"
    start = norm.text.index("98")
    assert text[slice(*norm.to_original(start, start + 2))] == "\uff19\uff18"
