"""A stand-in benchmark for tests/bench/test_run.py that imports something missing: a
broken benchmark, which must fail the table, not pass for one not written yet."""

import donorhub_bench_no_such_dependency  # noqa: F401


def measure(quick: bool) -> list:
    return []
