"""A stand-in benchmark for tests/bench/test_run.py whose run finds a wrong figure."""

from bench.ratios import Ratio


def measure(quick: bool) -> list[Ratio]:
    raise RuntimeError("3 events applied twice")
