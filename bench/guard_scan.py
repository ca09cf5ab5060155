"""Benchmark: the PII guard's throughput, now and as it was before the spelling work.

    .venv/bin/python bench/guard_scan.py [--repeat 7] [--before e05ebe2]

One run scans the same texts with two guards, in the same process, alternating pass by pass:

* the current guard (`donorhub.guard.scan_text`);
* the guard as it was at commit `e05ebe2` (`--before`), the last commit before the
  normaliser (look-alike digits, digit words, letters split by separators, rewrites) and the
  extra rules that catch every spelling. Its `donorhub/guard/` is taken from git with
  `git archive` into a temporary directory and imported under another name; nothing of it is
  committed as code. Without that commit in the repository (a shallow clone, no git) the
  benchmark says so and measures the current guard alone.

The texts: the positive and negative corpora of tests/guard/corpus, and realistic feed texts
(children's `about` and update texts, one to three sentences, built from the demo feed's
sentences). It prints texts per second for each guard and each set (best of `--repeat`
passes, in the process's CPU time), and the ratio current / before, whose goal is at least
1.0: the guard must not be slower than before the spelling work (issue goal 6, reported
beside bench/feed_import.py).
"""

from __future__ import annotations

import argparse
import importlib
import io
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ratios import Ratio  # noqa: E402
from donorhub.demo import make_feed  # noqa: E402
from donorhub.guard import GUARD_ERROR_RULE, scan_text  # noqa: E402

CORPUS = ROOT / "tests" / "guard" / "corpus"
#: The last commit before the guard learned every spelling (donorhub/guard/normalise.py).
BEFORE_COMMIT = "e05ebe2"
BEFORE_PACKAGE = "_guard_before_spelling_work"
GOAL = 1.0

Scan = Callable[[str], list]


def corpus_texts() -> list[str]:
    """Every text of the positive corpus (markers removed) and of the negative corpus."""
    texts = []
    for line in (CORPUS / "pii_positive.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            texts.append(line.split("\t", 1)[1].replace("[[", "").replace("]]", ""))
    for line in (CORPUS / "pii_negative.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            texts.append(line)
    return texts


def feed_texts(count: int = 400) -> list[str]:
    """What a partner's feed carries: `about` texts and quarterly updates of one to three
    sentences, mostly plain, a few with something the guard must quarantine (the demo feed's
    own sentences). Deterministic."""
    plain = make_feed.ABOUT + make_feed.UPDATE_TEXT + make_feed.HOME_NEWS
    leaky = make_feed.QUARANTINE_ABOUT + make_feed.QUARANTINE_UPDATE
    rng = random.Random(20261120)  # a fixed sample
    texts = []
    for _ in range(count):
        sentences = rng.sample(plain, rng.randint(1, 3))
        if rng.random() < 0.1:
            sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(leaky))
        texts.append(" ".join(sentences))
    return texts


def text_sets(quick: bool = False) -> dict[str, list[str]]:
    return {"corpora": corpus_texts(), "feed texts": feed_texts(200 if quick else 400)}


@contextmanager
def guard_before(
    commit: str = BEFORE_COMMIT, package: str = BEFORE_PACKAGE
) -> Iterator[tuple[Scan | None, str]]:
    """`(scan_text, "")` of the guard at `commit`, or `(None, why)` when git cannot give it.

    The package is extracted with `git archive` into a temporary directory, its absolute
    imports (`donorhub.guard.…`) renamed to the temporary package, and imported from there;
    the directory is removed on exit (the word lists are read while warming up, inside)."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "donorhub/guard"],
            capture_output=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        yield None, f"git is unavailable ({exc})"
        return
    if archive.returncode != 0:
        reason = archive.stderr.decode(errors="replace").strip().splitlines()
        yield None, f"commit {commit} is not in this clone ({reason[-1] if reason else 'git'})"
        return
    with tempfile.TemporaryDirectory(prefix="guard-before-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
                tar.extractall(tmp, filter="data")
            else:  # our own repository's archive of one folder
                tar.extractall(tmp)
        folder = Path(tmp) / package
        shutil.move(str(Path(tmp) / "donorhub" / "guard"), folder)
        for source in folder.glob("*.py"):
            code = source.read_text(encoding="utf-8")
            source.write_text(code.replace("donorhub.guard", package), encoding="utf-8")
        sys.path.insert(0, tmp)
        try:
            module = importlib.import_module(package)
            module.scan_text("Warm the word lists of Meena in Kamathipura on 9820012345.")
            yield module.scan_text, ""
        finally:
            sys.path.remove(tmp)
            for name in [n for n in sys.modules if n.split(".")[0] == package]:
                del sys.modules[name]


@dataclass(frozen=True)
class Throughput:
    texts: int
    seconds: float  # best pass

    @property
    def per_second(self) -> float:
        return self.texts / self.seconds


def _one_pass(scan: Scan, texts: list[str]) -> float:
    """CPU seconds of this process for one pass: the guard is single-threaded pure Python,
    so on a quiet machine this is the wall-clock time, and on a busy one (2 cores shared)
    other processes' work is not counted against either guard."""
    started = time.process_time()
    for text in texts:
        scan(text)
    return time.process_time() - started


def measure_guards(
    guards: dict[str, Scan], sets: dict[str, list[str]], repeat: int
) -> dict[str, dict[str, Throughput]]:
    """Best of `repeat` passes for every guard over every set; the guards take turns within
    each pass (the order flips each time) so that a busy moment costs them both."""
    best = {g: dict.fromkeys(sets, float("inf")) for g in guards}
    order = list(guards)
    for _ in range(repeat):
        for name, texts in sets.items():
            for guard in order:
                best[guard][name] = min(best[guard][name], _one_pass(guards[guard], texts))
        order.reverse()
    return {g: {name: Throughput(len(sets[name]), best[g][name]) for name in sets} for g in guards}


def _total(results: dict[str, Throughput]) -> Throughput:
    return Throughput(
        sum(r.texts for r in results.values()), sum(r.seconds for r in results.values())
    )


def guard_errors(scan: Scan, texts: list[str]) -> int:
    """Texts on which the guard failed closed (an internal error): the run is then wrong."""
    return sum(any(f.rule == GUARD_ERROR_RULE for f in scan(text)) for text in texts)


def run(quick: bool, repeat: int, commit: str = BEFORE_COMMIT) -> tuple[list[Ratio], list[str]]:
    """The ratios and the lines to print."""
    sets = text_sets(quick)
    everything = [t for texts in sets.values() for t in texts]
    lines = [
        f"{name}: {len(texts)} texts, {sum(map(len, texts))} characters"
        for name, texts in sets.items()
    ]
    errors = guard_errors(scan_text, everything)
    with guard_before(commit) as (before, why_not):
        guards: dict[str, Scan] = {"current": scan_text}
        if before is not None:
            guards[f"before ({commit})"] = before
        results = measure_guards(guards, sets, repeat)
    for guard, by_set in results.items():
        for name, result in {**by_set, "all": _total(by_set)}.items():
            lines.append(
                f"{guard:>18} {name:>10}: {result.per_second:8.0f} texts/s "
                f"({result.seconds * 1000:.1f} ms best of {repeat})"
            )
    now = results["current"]
    if before is None:
        lines.append(f"not compared with the guard before the spelling work: {why_not}")
        ratio = Ratio(
            name="PII guard texts/s, current / before the spelling work",
            value=0.0,
            goal=GOAL,
            detail=f"not compared: {why_not}; current {_total(now).per_second:.0f} texts/s",
            correct=errors == 0,
        )
        return [ratio], lines
    then = results[f"before ({commit})"]
    ratios = []
    for name in [*sets, "all"]:
        a = _total(now) if name == "all" else now[name]
        b = _total(then) if name == "all" else then[name]
        ratios.append(
            Ratio(
                name=f"PII guard texts/s, current / before the spelling work ({name})",
                value=a.per_second / b.per_second,
                goal=GOAL,
                detail=f"{a.per_second:.0f} texts/s vs {b.per_second:.0f} texts/s",
                correct=errors == 0,
            )
        )
        lines.append(f"ratio current / before ({name}): {ratios[-1].value:.2f} (goal >= {GOAL})")
    if errors:
        lines.append(f"WRONG: the current guard failed closed on {errors} texts")
    return ratios, lines


def measure(quick: bool) -> list[Ratio]:
    ratios, _ = run(quick, repeat=3 if quick else 7)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--before", default=BEFORE_COMMIT, help="commit of the 'before' guard")
    parser.add_argument("--quick", action="store_true", help="fewer feed texts")
    args = parser.parse_args()
    ratios, lines = run(args.quick, args.repeat, args.before)
    print("\n".join(lines))
    if not all(r.correct for r in ratios):
        sys.exit(1)


if __name__ == "__main__":
    main()
