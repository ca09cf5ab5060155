"""Coverage-guided fuzzing of the PII guard (scan_text and the normalising it does first)
with atheris (libFuzzer).

    python tests/fuzz/fuzz_guard_scan.py tests/fuzz/scan_corpus -max_total_time=60

As for the parser (fuzz_feed_parser.py), put a scratch directory first so that the inputs
libFuzzer finds do not land in the small seed corpus:

    mkdir -p /tmp/scan-corpus
    python tests/fuzz/fuzz_guard_scan.py /tmp/scan-corpus tests/fuzz/scan_corpus \\
        -max_total_time=60 -artifact_prefix=/tmp/scan-crash-

Every input is read as UTF-8 with undecodable bytes kept as lone surrogates (partner text
can carry those: JSON's "\\ud800" decodes to one). scan_text must then never raise, never
fail closed with its internal-error finding, report only non-empty spans inside the text,
and flag every run of five or more ASCII digits. Copy a crashing input into
tests/fuzz/scan_regressions/; tests/guard/test_scan_fuzz_corpus.py replays that directory
and the seed corpus in `make test`.
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

# Run as a script, so the repository root (for `config`, imported by the app package) is not on
# the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import donorhub  # noqa: E402, F401  (the app package: imported uninstrumented, not under test)

try:
    import atheris
except ImportError:  # the test suite replays the corpora without atheris
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["donorhub.guard"]):
        from donorhub.guard.scan import GUARD_ERROR_RULE, scan_text
else:
    from donorhub.guard.scan import GUARD_ERROR_RULE, scan_text

_ASCII_DIGIT_RUN_RE = re.compile(r"[0-9]{5,}")


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def check_text(text: str) -> None:
    findings = scan_text(text)
    for finding in findings:
        assert finding.rule != GUARD_ERROR_RULE, "a detector raised (scan_text failed closed)"
        assert 0 <= finding.start < finding.end <= len(text), finding
    for run in _ASCII_DIGIT_RUN_RE.finditer(text):
        assert any(f.start < run.end() and f.end > run.start() for f in findings), (
            f"digit run {run.group()!r} at {run.start()} not flagged"
        )


def check(data: bytes) -> None:
    check_text(decode(data))


# Pieces the structure-aware mutator plants: what the normaliser rewrites (separators between
# digits, digits of other scripts, digit words, split letters, look-alikes, abbreviations,
# Hinglish name phrases) and characters that change length when folded.
_PLANTED = [
    "98200", "12345", "/", "_", "|", " - ", ".", "\u00a0", "\u200b", "\u00ad", "\ufb01",
    "\u00bd", "\u0301", "\u2013", "\u0966", "\u096f", "\u09e8", "\u0ae9", "\uff19", "\u0660",
    "nine", "double", "triple", "oh", "zero", "ek", "do", "teen", "shunya", "\u0928\u094c",
    "\u0936\u0942\u0928\u094d\u092f", "M-e-e-n-a", "m.e.e.n.a", "K a m", "\u0430", "\u03bf",
    "\u041e", "O", "l", "I", "rd", "stn", "nr", "PS", "P.S.", "gali", "chowk",
    "mera naam ", "majha naav ", "meri beti ", " hai", "@", " at ", " dot ", "Rs ", "\u20b9",
    "2026-Q3", "in 2025", "born ", " may ", "FIR No. ", " of 2024", "\U0001f600", "\ud800",
]  # fmt: skip


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if rng.random() < 0.5:
        text = decode(data)
        at = rng.randrange(len(text) + 1)
        text = text[:at] + rng.choice(_PLANTED) + text[at:]
        mutated = text.encode("utf-8", errors="surrogatepass")
        if len(mutated) <= max_size:
            return mutated
    return atheris.Mutate(data, max_size)


def main() -> None:
    atheris.Setup(sys.argv, check, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
