"""Benchmark: the PII guard's scan_text over the positive and negative corpora.

    .venv/bin/python bench/guard_scan.py [--repeat 5]

Prints the number of texts and characters, the best of `--repeat` passes in milliseconds,
and the mean time per text. The guard runs on every imported text, so this is the figure to
compare before and after a change to donorhub/guard/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from donorhub.guard import scan_text  # noqa: E402

CORPUS = ROOT / "tests" / "guard" / "corpus"


def corpus_texts() -> list[str]:
    texts = []
    for line in (CORPUS / "pii_positive.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            texts.append(line.split("\t", 1)[1].replace("[[", "").replace("]]", ""))
    for line in (CORPUS / "pii_negative.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            texts.append(line)
    return texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    texts = corpus_texts()
    scan_text("warm the word lists")
    best = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        for text in texts:
            scan_text(text)
        best = min(best, time.perf_counter() - started)
    chars = sum(len(t) for t in texts)
    print(
        f"{len(texts)} texts, {chars} characters: best pass {best * 1000:.1f} ms, "
        f"{best / len(texts) * 1e6:.0f} us per text"
    )


if __name__ == "__main__":
    main()
