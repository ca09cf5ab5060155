"""Coverage-guided fuzzing of the partner feed parser with atheris (libFuzzer).

    python tests/fuzz/fuzz_feed_parser.py tests/fuzz/corpus -max_total_time=60

libFuzzer adds the inputs it finds to the FIRST corpus directory given. To keep the seed corpus
small, put a scratch directory first:

    mkdir -p /tmp/feed-corpus
    python tests/fuzz/fuzz_feed_parser.py /tmp/feed-corpus tests/fuzz/corpus \\
        -max_total_time=60 -artifact_prefix=/tmp/feed-crash-

The parser may return a ParsedFeed or raise FeedError; anything else (any other exception,
or a result that breaks the invariants below) is a crash. Copy a crashing input into
tests/fuzz/regressions/ (tests/feed/test_parse.py replays that directory) and fix the parser.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import date
from pathlib import Path

import atheris

# Run as a script, so the repository root (for `config`, imported by the app package) is not on
# the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import donorhub  # noqa: E402, F401  (the app package: imported uninstrumented, not under test)

with atheris.instrument_imports(include=["donorhub.feed", "marshmallow"]):
    from donorhub.feed.parse import FeedError, FeedSettings, parse_feed

SETTINGS = FeedSettings(
    partner="mumbai-safe-homes",
    homes=frozenset({"MH-01", "MH-02", "WB-01", "DL-01"}),
    today=date(2026, 10, 2),
    max_bytes=1024 * 1024,
)


def check(data: bytes) -> None:
    try:
        parsed = parse_feed(data, SETTINGS)
    except FeedError as error:
        # The message must be buildable and must say which rule was broken.
        assert error.rule and str(error)
        return
    records = [*parsed.children, *parsed.updates, *parsed.home_stats, *parsed.exits]
    accepted = {record.line for record in records}
    rejected = set(parsed.rejected_lines)
    # Every line after the header is either a record or rejected, never both, never lost.
    assert len(records) == len(accepted)
    assert not accepted & rejected
    assert len(accepted) + len(rejected) == parsed.header.records == parsed.line_count - 1
    for error in parsed.rejected:
        assert 2 <= error.line <= parsed.line_count and error.rule


# Values the structure-aware mutator plants: edges of every rule, wrong JSON types, and the
# characters the free-text rule refuses.
_PLANTED_VALUES: list[object] = [
    None, True, False, 0, -1, 1, 37, 2024, 1990, 1989, 100_000, 100_001, 2**31, 10**30, 1.5,
    "", " ", "x", "1", "2026-Q3", "2026-Q4", "2027-Q1", "1989-Q4", "2026-Q0", "2026-Q3\n",
    "MH-02", "mh-02", "XX-99", "c-7f3a9e21b6", "c-1", "u-1", "Maharashtra", "Orissa", "18+",
    "girl", "education", "guardian_and_child", "drawing", "passed_term_exams", "header", "exit",
    [], ["drawing"], ["drawing", "drawing"], ["chess", "yoga", "dance", "music", "poetry", "art"],
    [None], [["drawing"]], {}, {"profile": True}, "a" * 281, "b" * 601, "\u202e", "\x00",
    "\ud800", "\n", "\u200d", "<b>x</b>", "\u2028",
]  # fmt: skip
_PLANTED_KEYS = [
    "type", "ref", "home", "age_band", "gender", "region", "stage", "joined_year", "interests",
    "consent", "about", "id", "child", "period", "category", "milestones", "text", "records",
    "feed_version", "partner", "batch", "generated", "children_in_care", "in_school",
    "in_vocational_training", "reintegrated", "new_arrivals", "profile", "updates", "basis",
    "expires", "name", "reason", "Priya S", "",
]  # fmt: skip


def _mutate_structure(data: bytes, rng: random.Random) -> bytes | None:
    """Change one value or key of one JSON line, then maybe fix the header's count, so that
    mutated feeds get past the structural checks and exercise the record rules."""
    lines = data.split(b"\n")
    index = rng.randrange(len(lines))
    try:
        line = json.loads(lines[index])
    except (ValueError, RecursionError):
        return None
    if not isinstance(line, dict):
        return None
    target = line
    if isinstance(line.get("consent"), dict) and rng.random() < 0.3:
        target = line["consent"]
    operation = rng.randrange(4)
    if operation == 0 and target:
        target[rng.choice(list(target))] = rng.choice(_PLANTED_VALUES)
        lines[index] = json.dumps(line).encode()
    elif operation == 1 and target:
        del target[rng.choice(list(target))]
        lines[index] = json.dumps(line).encode()
    elif operation == 2:
        target[rng.choice(_PLANTED_KEYS)] = rng.choice(_PLANTED_VALUES)
        lines[index] = json.dumps(line).encode()
    elif rng.random() < 0.5:  # repeat a line elsewhere (duplicates)
        lines.insert(rng.randrange(len(lines) + 1), lines[index])
    elif len(lines) > 1:  # or drop one (truncation in the middle)
        del lines[index]
    if rng.random() < 0.7:
        try:
            head = json.loads(lines[0])
            if isinstance(head, dict):
                head["records"] = len([chunk for chunk in lines[1:] if chunk.strip()])
                lines[0] = json.dumps(head).encode()
        except (ValueError, RecursionError):
            pass
    return b"\n".join(lines)


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if data and rng.random() < 0.5:
        try:
            mutated = _mutate_structure(data, rng)
        except Exception:  # a slip of the mutator must not pass for a crash of the parser
            mutated = None
        if mutated is not None and len(mutated) <= max_size:
            return mutated
    return atheris.Mutate(data, max_size)


def main() -> None:
    atheris.Setup(sys.argv, check, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
