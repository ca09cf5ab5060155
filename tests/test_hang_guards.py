"""No test can hang the suite: every barrier, event, thread and process a test waits for is
waited for with a timeout (tests.helpers.HANG_GUARD_SECONDS, a hang guard only), so a thread
that failed before the barrier fails the test instead of stopping the run."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _unguarded() -> list[str]:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            keywords = {k.arg for k in node.keywords}
            where = f"{path.relative_to(TESTS.parent)}:{node.lineno}"
            if name == "Barrier" and "timeout" not in keywords:
                found.append(f"{where} Barrier without a timeout")
            elif (
                name in ("wait", "join")
                and isinstance(func, ast.Attribute)
                and not node.args
                and "timeout" not in keywords
            ):
                found.append(f"{where} .{name}() without a timeout")
    return found


def test_every_wait_in_the_tests_has_a_hang_guard():
    assert _unguarded() == []
