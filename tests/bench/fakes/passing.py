"""A stand-in benchmark for tests/bench/test_run.py: two ratios that meet their goals, one
of each kind of bound. Says which mode it was called in."""

from bench.ratios import Ratio


def measure(quick: bool) -> list[Ratio]:
    mode = "quick" if quick else "full"
    return [
        Ratio("fake page, big / small", 0.91, 0.8, detail=f"91 req/s vs 100 req/s ({mode})"),
        Ratio("fake import / insert", 1.2, 2.0, at_least=False, detail="12 s vs 10 s"),
    ]
