"""`make bench` (bench/run.py) prints one table of every benchmark's ratios with pass or
fail, writes reports/bench.json, and exits non-zero when a goal is missed, a run found wrong
figures, a benchmark broke, or (in a full run) a benchmark is not there to prove its goal.
The benchmarks here are stand-ins (tests/bench/fakes/): what is tested is the table."""

from __future__ import annotations

import json
import subprocess

from tests.system.stack import PYTHON, ROOT

FAKES = "tests.bench.fakes"


def run_bench(tmp_path, *names: str, quick: bool = True) -> tuple[int, str, dict]:
    report = tmp_path / "bench.json"
    command = [PYTHON, "bench/run.py", "--json", str(report), "--only", *names]
    if quick:
        command.append("--quick")
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    return result.returncode, result.stdout, data


def row_line(stdout: str, name: str) -> str:
    found = [line for line in stdout.splitlines() if line.startswith(name)]
    assert len(found) == 1, f"{name!r} is not one row of the table:\n{stdout}"
    return found[0]


def test_passing_benchmark_prints_its_rows_and_writes_the_report(tmp_path):
    code, stdout, data = run_bench(tmp_path, f"{FAKES}.passing")

    assert code == 0, stdout
    header = stdout.splitlines()[0].split()
    assert header == ["name", "ratio", "goal", "detail", "result"]
    first = row_line(stdout, "fake page, big / small")
    assert "0.91" in first and "≥ 0.8" in first and "91 req/s vs 100 req/s (quick)" in first
    assert first.rstrip().endswith("pass")
    second = row_line(stdout, "fake import / insert")
    assert "≤ 2" in second and second.rstrip().endswith("pass")

    assert data["mode"] == "quick" and data["passed"] is True
    assert [(r["name"], r["passed"]) for r in data["rows"]] == [
        ("fake page, big / small", True),
        ("fake import / insert", True),
    ]
    machine = data["machine"]
    assert machine["cores"] >= 1 and machine["python"] and machine["date"]
    assert len(machine["load_average_before"]) == 3 and len(machine["load_average_after"]) == 3
    assert machine["git_commit"] and "postgresql" in machine


def test_a_full_run_passes_the_mode_on(tmp_path):
    code, stdout, data = run_bench(tmp_path, f"{FAKES}.passing", quick=False)

    assert code == 0, stdout
    assert "(full)" in row_line(stdout, "fake page, big / small")
    assert data["mode"] == "full"


def test_missed_goal_wrong_figures_and_errors_fail_the_table(tmp_path):
    code, stdout, data = run_bench(
        tmp_path,
        f"{FAKES}.passing",
        f"{FAKES}.failing",
        f"{FAKES}.raising",
        f"{FAKES}.broken_import",
    )

    assert code == 1, stdout
    results = {r["name"]: r["result"] for r in data["rows"]}
    assert results == {
        "fake page, big / small": "pass",
        "fake import / insert": "pass",
        "fake report / SQL": "FAIL",
        "fake webhook applied / healthz": "FAIL",
        "fake on the goal": "pass",
        "raising": "ERROR",
        "broken_import": "ERROR",
    }
    assert data["passed"] is False
    assert "WRONG FIGURES" in row_line(stdout, "fake webhook applied / healthz")
    assert "3 events applied twice" in row_line(stdout, "raising")
    assert "donorhub_bench_no_such_dependency" in row_line(stdout, "broken_import")
    # Every row of every benchmark is in the one table, in order.
    names = [r["name"] for r in data["rows"]]
    assert [
        line.split("  ")[0].strip() for line in stdout.splitlines()[2 : 2 + len(names)]
    ] == names


def test_benchmark_not_written_yet_fails_a_full_run_only(tmp_path):
    missing = [f"{FAKES}.no_measure", f"{FAKES}.not_there"]

    quick_code, stdout, data = run_bench(tmp_path, f"{FAKES}.passing", *missing)
    assert quick_code == 0, stdout
    assert [r["result"] for r in data["rows"][2:]] == ["not available"] * 2
    assert "not available" in row_line(stdout, "no_measure")
    assert "not available" in row_line(stdout, "not_there")

    full_code, stdout, data = run_bench(tmp_path, f"{FAKES}.passing", *missing, quick=False)
    assert full_code == 1, stdout
    assert data["passed"] is False


def test_an_unknown_short_name_is_refused(tmp_path):
    code, _, data = run_bench(tmp_path, "no_such_benchmark")

    assert code == 2 and data == {}


def test_a_benchmarks_own_output_stays_out_of_the_table(tmp_path):
    code, stdout, data = run_bench(tmp_path, f"{FAKES}.noisy")

    assert code == 0, stdout
    assert "seeding" not in stdout and "gunicorn is up" not in stdout
    lines = stdout.splitlines()
    assert lines[0].split() == ["name", "ratio", "goal", "detail", "result"]
    assert lines[2].startswith("fake noisy / quiet") and lines[3].startswith("1 of 1 rows pass")
