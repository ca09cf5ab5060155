"""The PII guard: finds what could identify a child in a piece of free text.

Both the feed importer (every `about` and update text as it arrives) and the safeguarding
officer's review (text an officer edited) scan with it. It imports only the standard library
and its own word lists (`data/*.txt`), so neither of them depends on the other through it.
See docs/pii-guard.md.
"""

from donorhub.guard.scan import DETECTORS, GUARD_ERROR_RULE, Finding, scan_text
from donorhub.guard.vocabulary import UnknownWord, unknown_word_groups, unknown_words

__all__ = [
    "DETECTORS",
    "GUARD_ERROR_RULE",
    "Finding",
    "UnknownWord",
    "scan_text",
    "unknown_word_groups",
    "unknown_words",
]
