"""A stand-in benchmark for tests/bench/test_run.py: one ratio over its at-most goal, one
in bounds but with wrong figures (correct=False), one exactly on its goal (a pass)."""

from bench.ratios import Ratio


def measure(quick: bool) -> list[Ratio]:
    return [
        Ratio("fake report / SQL", 1.6, 1.5, at_least=False, detail="1.6 s vs 1.0 s"),
        Ratio("fake webhook applied / healthz", 0.7, 0.5, detail="70 vs 100", correct=False),
        Ratio("fake on the goal", 0.8, 0.8, detail="80 vs 100"),
    ]
