"""The test suite's root: every app test runs on SQLite and, when TEST_DATABASE_URL is set,
on PostgreSQL (tests/fixtures/database.py).

Fixtures shared across folders are plugins in tests/fixtures/, registered here once; tests ask
for them by name and never import them. Under pytest-xdist (`make test` runs `-n auto`) each
worker has its own databases, SMTP server and simulators; the figures the tests report
(tests/metrics.py) and the log guard's counts travel from the workers to the controller, which
prints and saves them once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.metrics import METRICS

# The plugins are imported by pytest (so that their asserts are rewritten), never here.

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.mail",
    "tests.fixtures.app",
    "tests.fixtures.log_guard",
    "tests.fixtures.users",
    "tests.fixtures.payments",
    "tests.fixtures.feed",
    "tests.fixtures.sponsorship",
    "tests.fixtures.queries",
]

#: Tests that cannot share the machine with each other, so xdist runs each group on one worker
#: (`--dist loadgroup`, set by `make test`): they start whole stacks of real processes (gunicorn,
#: the jobs process, nginx, private PostgreSQL clusters), and the system tests, the
#: production-environment test and the benchmark harness's test use the same Redis database
#: (14). Paths relative to tests/.
XDIST_GROUPS = {
    "system": (
        "system/",
        "security/test_production_environment.py",
        "bench/test_harness.py",
        "bench/test_profile.py",
    ),
}


def pytest_configure(config):
    from tests.helpers import in_ci

    if in_ci() and not os.environ.get("TEST_DATABASE_URL"):
        raise pytest.UsageError(
            "CI=true but TEST_DATABASE_URL is not set: the PostgreSQL "
            "half of every test would not run (.ci/run sets it)"
        )
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_WorkerFigures(), "donorhub-worker-figures")


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("xdist"):  # `-p no:xdist`: no such mark to give
        return
    tests = Path(__file__).resolve().parent
    for item in items:
        relative = (
            item.path.relative_to(tests).as_posix() if item.path.is_relative_to(tests) else ""
        )
        for group, prefixes in XDIST_GROUPS.items():
            if relative.startswith(prefixes):
                item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionfinish(session):
    """On an xdist worker: hand this worker's figures to the controller."""
    from tests.fixtures.log_guard import LOG_STATS

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["donorhub_metrics"] = METRICS.export()
        workeroutput["donorhub_log_stats"] = json.dumps(LOG_STATS)


class _WorkerFigures:
    """On the xdist controller: add up what each worker handed over when it ends."""

    @pytest.hookimpl
    def pytest_testnodedown(self, node, error):
        from tests.fixtures.log_guard import LOG_STATS

        output = getattr(node, "workeroutput", {})
        if "donorhub_metrics" in output:
            METRICS.merge(output["donorhub_metrics"])
        for name, count in json.loads(output.get("donorhub_log_stats", "{}")).items():
            LOG_STATS[name] += count


def pytest_terminal_summary(terminalreporter, config):
    from tests.fixtures.log_guard import LOG_STATS

    if hasattr(config, "workerinput"):  # a worker: the controller prints the whole run
        return
    terminalreporter.write_line(
        f"log guard: {LOG_STATS['records']} log records from {LOG_STATS['tests']} tests "
        "scanned for passwords, tokens, e-mails and secrets"
    )
    if METRICS:
        terminalreporter.section("security and reliability figures")
        for name, value in sorted(METRICS.items()):
            terminalreporter.write_line(f"{name}: {value}")
        METRICS.dump()
