"""The Stripe simulator (stripe_simulator/) imports nothing of DonorHub.

It stands in for Stripe in tests and `make run`, so it must not share code with the app it
checks: a helper borrowed from donorhub would let a bug on our side agree with itself.
Statically, every module's imports are read with `ast`; at run time, importing the whole
package in a fresh interpreter must not load any donorhub module.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "stripe_simulator"
FORBIDDEN = "donorhub"


def _is_forbidden(module: str) -> bool:
    return module == FORBIDDEN or module.startswith(FORBIDDEN + ".")


def _dynamic_import_target(node: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("...")`` or ``__import__("...")``."""
    func = node.func
    named = (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module"
    )
    if (
        named
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def donorhub_imports(package: Path) -> list[str]:
    """``path:line module`` for every import of donorhub in ``package``'s modules."""
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Call) and (target := _dynamic_import_target(node)):
                modules = [target]
            else:
                continue
            found += [
                f"{path.relative_to(package.parent)}:{node.lineno} {module}"
                for module in modules
                if _is_forbidden(module)
            ]
    return found


def test_the_simulator_has_modules_to_check():
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    assert {"__init__.py", "wsgi.py", "api.py", "engine/__init__.py"} <= modules


def test_no_simulator_module_imports_donorhub():
    assert donorhub_imports(PACKAGE) == []


def test_the_check_finds_a_planted_import(tmp_path):
    copy = tmp_path / "stripe_simulator"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    checkout = copy / "engine" / "checkout.py"
    checkout.write_text(
        checkout.read_text(encoding="utf-8")
        + "\nfrom donorhub.payments.gateway import get_gateway\n",
        encoding="utf-8",
    )
    (copy / "api.py").write_text(
        (copy / "api.py").read_text(encoding="utf-8") + "\nimport donorhub.money\n",
        encoding="utf-8",
    )
    (copy / "wsgi.py").write_text(
        (copy / "wsgi.py").read_text(encoding="utf-8")
        + "\nimport importlib\nimportlib.import_module('donorhub')\n",
        encoding="utf-8",
    )
    found = [entry.split(":")[0] + " " + entry.split(" ")[1] for entry in donorhub_imports(copy)]
    assert found == [
        "stripe_simulator/api.py donorhub.money",
        "stripe_simulator/engine/checkout.py donorhub.payments.gateway",
        "stripe_simulator/wsgi.py donorhub",
    ]


def test_importing_the_simulator_loads_no_donorhub_module():
    code = (
        "import sys, pkgutil, importlib, stripe_simulator\n"
        "for info in pkgutil.walk_packages(stripe_simulator.__path__, 'stripe_simulator.'):\n"
        "    if not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'donorhub'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip() == "[]"
