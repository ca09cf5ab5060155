"""Replays the guard fuzzer's seed corpus and the crashes it found
(tests/fuzz/fuzz_guard_scan.py) with the fuzzer's own invariants, without atheris."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.fuzz_guard_scan import check

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
INPUTS = sorted(
    path
    for folder in ("scan_corpus", "scan_regressions")
    for path in (FUZZ / folder).iterdir()
    if not path.name.startswith(".")
)


def test_seed_corpus_is_present():
    assert len([p for p in INPUTS if p.parent.name == "scan_corpus"]) >= 5


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fuzz_input_keeps_the_scan_invariants(path: Path) -> None:
    check(path.read_bytes())
