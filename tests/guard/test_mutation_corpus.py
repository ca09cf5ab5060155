"""Recall of the PII guard on the mutation corpus (tests/guard/mutations.py): every identifier
of the positive corpus rewritten with other separators, scripts, number words, split
letters, look-alikes, abbreviations and Hinglish/Marathi phrasing. Every category must be
caught at 100%.

A variant is caught when, for every marked identifier, scan_text returns a finding of the
row's detector that overlaps it (as in test_scan.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from functools import cache

import pytest

from donorhub.guard.scan import DETECTORS, Finding, scan_text
from tests.guard.mutations import (
    MUTATIONS_FILE,
    StoredCorpus,
    Variant,
    fingerprint,
    generate_variants,
    load_rows,
    read_corpus,
)
from tests.metrics import METRICS

MINIMUM_VARIANTS = 10_000
MISSES_SHOWN_PER_CATEGORY = 12

ROWS = load_rows()


@cache
def stored() -> StoredCorpus:
    """Read once per process, when a test needs it (not at collection on every worker)."""
    return read_corpus()


def _caught(variant: Variant, findings: list[Finding]) -> bool:
    return all(
        any(f.detector == variant.detector and f.start < end and f.end > start for f in findings)
        for start, end in variant.spans
    )


def _describe(variant: Variant, findings: list[Finding]) -> str:
    found = ", ".join(f"{f.detector} {variant.text[f.start : f.end]!r}" for f in findings)
    return f"{variant.marked()!r}  [{'; '.join(variant.mutations)}]  found: {found or 'nothing'}"


def test_stored_corpus_matches_the_positive_corpus_and_the_generator():
    assert stored().current, (
        f"{MUTATIONS_FILE.name} was drawn from another pii_positive.tsv or mutations.py: "
        "regenerate it with `python -m tests.guard.mutations` and commit it"
    )
    assert stored().fingerprint == fingerprint(stored().variants)


@pytest.mark.parametrize("detector", ["phone", "person_name", "place", "exact_date"])
def test_stored_corpus_is_what_the_seeded_strategies_draw(detector):
    """Redraws the first row of a few categories: the file holds exactly what the seeded
    strategies produce, so every run checks the same variants."""
    row = next(row for row in ROWS if row.detector == detector)
    kept = [v for v in stored().variants if v.row == row.index]
    redrawn = generate_variants([row])
    assert [(v.text, v.spans, v.mutations) for v in redrawn] == [
        (v.text, v.spans, v.mutations) for v in kept
    ]


def test_every_identifier_is_mutated_and_the_corpus_is_large_enough():
    mutated_rows = {v.row for v in stored().variants}
    assert mutated_rows == {row.index for row in ROWS}
    assert {v.detector for v in stored().variants} == set(DETECTORS)
    assert len({(v.text, v.spans) for v in stored().variants}) >= MINIMUM_VARIANTS


def _mutation_kind(mutation: str) -> str:
    """ "regroup: '/'" -> "regroup", "digit script: bengali" -> "digit script"."""
    return mutation.split(":")[0]


def _sample(missed: list[tuple[Variant, str]]) -> list[str]:
    """Misses from as many different corpus rows as possible, first of each row first."""
    by_row: dict[int, list[str]] = defaultdict(list)
    for variant, line in missed:
        by_row[variant.row].append(line)
    sample: list[str] = []
    depth = 0
    while len(sample) < MISSES_SHOWN_PER_CATEGORY and any(len(v) > depth for v in by_row.values()):
        for lines in by_row.values():
            if len(lines) > depth and len(sample) < MISSES_SHOWN_PER_CATEGORY:
                sample.append(lines[depth])
        depth += 1
    return sample


def test_recall_is_complete_in_every_category(capsys):
    totals: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    flagged_elsewhere: Counter[str] = Counter()
    missed: dict[str, list[tuple[Variant, str]]] = defaultdict(list)
    for variant in stored().variants:
        findings = scan_text(variant.text)
        totals[variant.detector] += 1
        if _caught(variant, findings):
            caught[variant.detector] += 1
            continue
        if findings:
            flagged_elsewhere[variant.detector] += 1
        missed[variant.detector].append((variant, _describe(variant, findings)))

    METRICS.report("PII guard mutation corpus: variants", len(stored().variants))
    for detector in DETECTORS:
        share = caught[detector] / totals[detector]
        METRICS.report(
            f"PII guard mutation recall: {detector}",
            f"{caught[detector]}/{totals[detector]} ({share:.1%})",
        )
    failing = [d for d in DETECTORS if caught[d] < totals[d]]
    if failing:
        lines = [f"mutation recall below 100% in {len(failing)} categories:"]
        for detector in failing:
            kinds = Counter(
                _mutation_kind(m) for variant, _ in missed[detector] for m in variant.mutations
            )
            lines.append(
                f"== {detector}: {caught[detector]}/{totals[detector]} caught; "
                f"{len(missed[detector])} missed, {flagged_elsewhere[detector]} of them "
                "flagged only as another detector or elsewhere"
            )
            lines.append(
                "   misses by mutation: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common())
            )
            lines += [f"   {line}" for line in _sample(missed[detector])]
        with capsys.disabled():
            print("\n" + "\n".join(lines))
        pytest.fail(f"mutation recall below 100% in: {', '.join(failing)}")


@pytest.mark.slow
def test_redrawing_the_whole_corpus_gives_the_stored_list():
    assert fingerprint(generate_variants()) == stored().fingerprint
