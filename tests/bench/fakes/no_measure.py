"""A stand-in benchmark for tests/bench/test_run.py that has a CLI but no measure() yet."""


def main() -> None:
    print("run me by hand")
