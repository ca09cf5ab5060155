"""A stand-in benchmark for tests/bench/test_run.py that prints, and whose subprocess
prints, as benchmarks do while they work: none of it may land in the table on stdout."""

import subprocess
import sys

from bench.ratios import Ratio


def measure(quick: bool) -> list[Ratio]:
    print("seeding 1,000,000 gifts...")
    subprocess.run([sys.executable, "-c", "print('gunicorn is up')"], check=True)
    return [Ratio("fake noisy / quiet", 1.0, 0.8, detail="100 vs 100")]
