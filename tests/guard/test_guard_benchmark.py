"""bench/guard_scan.py compares the guard with the guard as it was before the spelling work,
taken from git. These check that it really loads that old guard (not the current one under
another name), leaves nothing behind, and says so when the commit is missing. No timing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import guard_scan
from donorhub.guard import scan_text

ROOT = Path(__file__).resolve().parents[2]


def _has_commit(commit: str) -> bool:
    found = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    return found.returncode == 0


@pytest.mark.skipif(
    not _has_commit(guard_scan.BEFORE_COMMIT), reason="no git history (shallow clone)"
)
def test_the_guard_before_the_spelling_work_is_loaded_from_git_and_removed_after():
    split_name = "M-e-e-n-a loves drawing."  # letters split by separators: caught only now
    with guard_scan.guard_before() as (before, why_not):
        assert before is not None, why_not
        assert before is not scan_text
        assert before.__module__.startswith(guard_scan.BEFORE_PACKAGE)
        assert before("Call 98200 12345 today.")  # the old guard works
        assert not before(split_name)  # and is the old one
        assert scan_text(split_name)
        loaded = [name for name in sys.modules if name.startswith(guard_scan.BEFORE_PACKAGE)]
        assert loaded
    assert not [name for name in sys.modules if name.startswith(guard_scan.BEFORE_PACKAGE)]


def test_a_missing_commit_is_reported_not_compared():
    with guard_scan.guard_before("0" * 40) as (before, why_not):
        assert before is None
        assert "not in this clone" in why_not or "git is unavailable" in why_not


def test_the_benchmark_texts_include_the_corpora_and_feed_texts():
    sets = guard_scan.text_sets(quick=True)
    assert len(sets["corpora"]) > 800
    assert len(sets["feed texts"]) == 200
    assert any(scan_text(text) for text in sets["feed texts"])  # a few leak, as in a feed
