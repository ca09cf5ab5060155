"""The import contracts of donorhub/: the architecture of docs/architecture.md, checked.

An `ast` walk over donorhub/**/*.py builds the graph of imports between our own modules
(module-level and function-level imports alike; a function-level import is still a
dependency, it only hides a cycle from Python). Imports under `if TYPE_CHECKING:` are left
out: they never run, so they cannot form an import cycle or couple behaviour, and mypy checks
them. `importlib.import_module("donorhub....")` with a literal name counts as an import.

ARCHITECTURE below is the architecture as data; each test_* function checks one contract
and names every offending import (file:line) in its assertion message. The last tests plant
back-arrows in a throwaway tree and prove that the checker reports them.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The architecture. Module names are dotted, relative to the repository root.
ARCHITECTURE = {
    "package": "donorhub",
    # The edge receives the outside world (a request, a webhook, a scheduler tick, a command
    # line, demo seeding) and may import anything below it. A module is at the edge when its
    # name, or the name of a package it sits in, is one of these, or ends in "_views".
    "edge_names": {"views", "webhooks", "cli", "jobs", "demo"},
    "edge_suffix": "_views",
    "edge_modules": {
        "donorhub": "create_app: wires extensions, blueprints, CLI and error handlers",
        "donorhub.testing_routes": "a blueprint registered only under TESTING",
    },
    # Infrastructure: the plumbing every layer uses; it knows no feature.
    "infrastructure": {
        "donorhub.database",
        "donorhub.extensions",
        "donorhub.errors",
        "donorhub.enums",
        "donorhub.security",
        "donorhub.logs",
        "donorhub.park_for_kill",
        "donorhub.commit_point",
    },
    # The registry of every model, for metadata and migrations; wiring like create_app.
    "model_registry": "donorhub.models",
    # The kernel: shared pieces any feature may import; they import no feature.
    "kernel": {
        "donorhub.audit",
        "donorhub.money",
        "donorhub.forms",
        "donorhub.csv",
        "donorhub.urls",
        "donorhub.qr",
    },
    # A models module imports only infrastructure, the kernel (which imports no feature)
    # and other models.
    "models_may_import": {
        "donorhub.database",
        "donorhub.extensions",
        "donorhub.errors",
        "donorhub.enums",
        "donorhub.audit",
        "donorhub.money",
        "donorhub.forms",
        "donorhub.csv",
        "donorhub.urls",
    },
    # Raw partner records: only feed/ may import these modules.
    "raw_feed_modules": {
        "donorhub.feed.parse",
        "donorhub.feed.schemas",
        "donorhub.feed.pseudonyms",
    },
    "raw_feed_owner": "donorhub.feed",
    # The PII guard imports only the standard library and itself.
    "standalone": {"donorhub.guard"},
    # staff/ holds pages only: views (any edge module) and their input schemas.
    "views_only": {"donorhub.staff": {"schemas"}},
    # Packages that sit below the features they serve; their imports of a feature package
    # are allowed only as the named inversions.
    "below_features": {
        "donorhub.payments": {
            "donorhub.accounts",
            "donorhub.campaigns",
            "donorhub.children",
            "donorhub.donations",
            "donorhub.feed",
            "donorhub.sponsorship",
            "donorhub.staff",
            "donorhub.updates",
        }
    },
    # The one deliberate inversion: the webhook dispatch table. Stripe's events are about
    # gifts, plans, refunds and sponsorships, so the table that maps an event type to its
    # handler must name handlers in donations and sponsorship, while those packages use
    # payments' gateway. Keeping the table in payments keeps "which events do we act on" in
    # one place (docs/architecture.md "The one deliberate inversion"). Reconciliation stores
    # missed events for the worker, which applies them through the same table.
    "inversions": {
        ("donorhub.payments.webhooks", "donorhub.donations"): "the webhook dispatch table",
        ("donorhub.payments.webhooks", "donorhub.sponsorship"): "the webhook dispatch table",
        (
            "donorhub.payments.reconcile",
            "donorhub.donations",
        ): "reconciliation settles staff refunds whose Stripe answer was lost",
    },
}


# -- The graph -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (the longest of our module names it resolves to)
    path: Path
    line: int
    function_level: bool

    def __str__(self) -> str:
        where = " (in a function)" if self.function_level else ""
        return f"{self.source} -> {self.target}  [{self.path}:{self.line}{where}]"


@dataclass
class Graph:
    root: Path
    modules: dict[str, Path]  # dotted name -> file
    imports: list[Import]  # imports of our own modules
    external: list[Import]  # imports of anything else (target = top-level name)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every import node (and importlib.import_module call), with whether it sits in a
    function; skips `if TYPE_CHECKING:` bodies."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.AST, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    yield from walk(other, in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            elif (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute | ast.Name)
                and getattr(child.func, "attr", getattr(child.func, "id", None)) == "import_module"
                and child.args
                and isinstance(child.args[0], ast.Constant)
                and isinstance(child.args[0].value, str)
            ):
                yield child, in_function
            yield from walk(
                child,
                in_function
                or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda),
            )

    yield from walk(tree, False)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest of our module names that `name` is or lies in."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def build_graph(root: Path, package: str = "donorhub") -> Graph:
    files = sorted((root / package).rglob("*.py"))
    modules = {module_name(root, path): path for path in files}
    imports: list[Import] = []
    external: list[Import] = []
    for source, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, in_function in _import_nodes(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = source.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                # `from a import b` imports the module a.b when there is one, else names of a.
                names = [
                    f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem
                    for alias in node.names
                ]
            else:  # importlib.import_module("...")
                names = [node.args[0].value]  # type: ignore[attr-defined]
            for name in dict.fromkeys(names):
                target = _resolve(name, modules) if name.split(".")[0] == package else None
                record = Import(
                    source,
                    target or name.split(".")[0],
                    path.relative_to(root),
                    node.lineno,
                    in_function,
                )
                if target is None:
                    external.append(record)
                elif target != source:
                    imports.append(record)
    return Graph(root, modules, imports, external)


# -- Classifying modules ---------------------------------------------------------------------


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def is_edge(module: str, arch: dict) -> bool:
    if module in arch["edge_modules"]:
        return True
    return any(
        part in arch["edge_names"] or part.endswith(arch["edge_suffix"])
        for part in module.split(".")[1:]
    )


def is_models(module: str, arch: dict) -> bool:
    """A feature's models module (not the registry that imports them all)."""
    return module.split(".")[-1] == "models" and module != arch["model_registry"]


def is_wiring(module: str, graph: Graph, arch: dict) -> bool:
    """A package's __init__ (blueprints, init_app) or the registry of every model."""
    return (graph.modules[module].name == "__init__.py" and module != arch["package"]) or (
        module == arch["model_registry"]
    )


def is_domain(module: str, graph: Graph, arch: dict) -> bool:
    return not is_edge(module, arch) and not is_wiring(module, graph, arch)


def unit(module: str, arch: dict) -> str:
    """The node of the package-level graph: a sub-package, a kernel module, or 'core' for the
    infrastructure modules together (database and extensions need each other)."""
    parts = module.split(".")
    if module in arch["infrastructure"]:
        return "core"
    return ".".join(parts[:2]) if len(parts) > 1 else module


def feature_package(module: str, arch: dict) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or module in arch["infrastructure"] or module in arch["kernel"]:
        return None
    return ".".join(parts[:2])


def allowed_inversion(imp: Import, arch: dict) -> bool:
    return any(
        within(imp.source, source) and within(imp.target, target)
        for source, target in arch["inversions"]
    )


# -- The contracts ---------------------------------------------------------------------------


def layer_violations(graph: Graph, arch: dict = ARCHITECTURE) -> list[str]:
    """views|webhooks|cli|jobs|demo -> services -> models: nothing below the edge imports the
    edge, and models import only infrastructure and other models."""
    found = []
    for imp in graph.imports:
        if allowed_inversion(imp, arch):
            continue
        if is_domain(imp.source, graph, arch) and is_edge(imp.target, arch):
            found.append(f"domain module imports the edge: {imp}")
        if is_models(imp.source, arch) and not (
            is_models(imp.target, arch) or imp.target in arch["models_may_import"]
        ):
            found.append(f"models import beyond infrastructure and models: {imp}")
    return found


def strongly_connected(nodes: Iterable[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative); only those of 2 or more nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def domain_cycles(graph: Graph, arch: dict = ARCHITECTURE) -> list[str]:
    """The domain layer (everything but the edge and the wiring) is acyclic at package level."""
    edges: dict[str, set[str]] = defaultdict(set)
    causes: dict[tuple[str, str], list[Import]] = defaultdict(list)
    nodes = set()
    for module in graph.modules:
        if is_domain(module, graph, arch):
            nodes.add(unit(module, arch))
    for imp in graph.imports:
        if not (is_domain(imp.source, graph, arch) and is_domain(imp.target, graph, arch)):
            continue
        if allowed_inversion(imp, arch):
            continue
        source, target = unit(imp.source, arch), unit(imp.target, arch)
        if source != target:
            edges[source].add(target)
            causes[(source, target)].append(imp)
    found = []
    for component in strongly_connected(nodes, edges):
        members = set(component)
        lines = [f"packages in a cycle: {', '.join(component)}; the imports that make it:"]
        for (source, target), imps in sorted(causes.items()):
            if source in members and target in members:
                lines += [f"    {imp}" for imp in imps]
        found.append("\n".join(lines))
    return found


def raw_feed_violations(graph: Graph, arch: dict = ARCHITECTURE) -> list[str]:
    """Nothing outside feed/ imports feed's parser, schemas or pseudonyms."""
    return [
        f"raw partner records read outside feed/: {imp}"
        for imp in graph.imports
        if imp.target in arch["raw_feed_modules"] and not within(imp.source, arch["raw_feed_owner"])
    ]


def kernel_violations(graph: Graph, arch: dict = ARCHITECTURE) -> list[str]:
    """Kernel modules import no feature package (only infrastructure and the kernel)."""
    return [
        f"kernel imports a feature: {imp}"
        for imp in graph.imports
        if imp.source in arch["kernel"] and feature_package(imp.target, arch) is not None
    ]


def standalone_violations(graph: Graph, arch: dict = ARCHITECTURE) -> list[str]:
    """guard/ imports only the standard library and itself."""
    found = []
    for package in arch["standalone"]:
        if package not in graph.modules:
            found.append(f"{package} does not exist (the PII guard's package)")
        for imp in graph.imports + graph.external:
            if not within(imp.source, package) or within(imp.target, package):
                continue
            if imp in graph.external and imp.target in sys.stdlib_module_names:
                continue
            if imp.target == "__future__":
                continue
            found.append(f"{package} imports beyond the standard library: {imp}")
    return found


def _defines_a_model(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = ast.unparse(base)
                if name in ("db.Model", "Base", "Model") or name.endswith(".Model"):
                    lines.append(node.lineno)
    return lines


def views_only_violations(graph: Graph, arch: dict = ARCHITECTURE) -> list[str]:
    """staff/ defines no models and no services: only views (the edge) and schemas."""
    found = []
    for package, allowed in arch["views_only"].items():
        for module, path in graph.modules.items():
            if not within(module, package) or module == package:
                continue
            relative = path.relative_to(graph.root)
            for line in _defines_a_model(path):
                found.append(f"{package} defines a model: {relative}:{line}")
            if not is_edge(module, arch) and module.split(".")[-1] not in allowed:
                found.append(
                    f"{package} holds a module that is neither views nor "
                    f"{'/'.join(sorted(allowed))}: {relative}"
                )
    return found


def below_features_violations(graph: Graph, arch: dict = ARCHITECTURE) -> list[str]:
    """payments/ sits below the features: it imports none, except the named inversion."""
    return [
        f"imports a feature it sits below: {imp}"
        for imp in graph.imports
        for package, features in arch["below_features"].items()
        if within(imp.source, package)
        and not allowed_inversion(imp, arch)
        and not is_edge(imp.source, arch)
        and any(within(imp.target, feature) for feature in features)
    ]


CONTRACTS = {
    "layers": layer_violations,
    "domain layer acyclic": domain_cycles,
    "raw feed only in feed": raw_feed_violations,
    "kernel imports no feature": kernel_violations,
    "guard is standalone": standalone_violations,
    "staff is views only": views_only_violations,
    "payments below the features": below_features_violations,
}


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph(ROOT)


@pytest.mark.parametrize("contract", CONTRACTS)
def test_contract(graph, contract):
    violations = CONTRACTS[contract](graph)
    assert not violations, f"{contract}: {len(violations)} violation(s)\n" + "\n".join(violations)


def test_the_graph_sees_the_whole_package(graph):
    assert len(graph.modules) > 80
    # Function-level imports are in the graph: create_app imports every blueprint in one.
    assert any(imp.function_level for imp in graph.imports)


def test_every_named_inversion_is_still_an_import(graph):
    """An allowance that no longer matches any import is stale: delete it."""
    stale = [
        pair
        for pair in ARCHITECTURE["inversions"]
        if not any(
            within(imp.source, pair[0]) and within(imp.target, pair[1]) for imp in graph.imports
        )
    ]
    assert not stale, f"inversions allowed but no longer made: {stale}"


# -- The checker catches what it should --------------------------------------------------------


def plant(root: Path, files: dict[str, str]) -> Graph:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return build_graph(root)


CLEAN_TREE = {
    "donorhub/__init__.py": "def create_app():\n    from donorhub.shop import views\n",
    "donorhub/database.py": "",
    "donorhub/extensions.py": "from donorhub.database import Base\n",
    "donorhub/audit.py": "from donorhub.extensions import db\n",
    "donorhub/guard/__init__.py": "import re\nfrom donorhub.guard import words\n",
    "donorhub/guard/words.py": "from collections import Counter\n",
    "donorhub/feed/__init__.py": "",
    "donorhub/feed/parse.py": "import json\n",
    "donorhub/feed/importer.py": "from donorhub.feed import parse\nfrom donorhub import guard\n",
    "donorhub/staff/__init__.py": "",
    "donorhub/staff/schemas.py": "",
    "donorhub/staff/views/__init__.py": "",
    "donorhub/staff/views/donors.py": "from donorhub.shop import services\n",
    "donorhub/shop/__init__.py": "",
    "donorhub/shop/models.py": "from donorhub.extensions import db\n",
    "donorhub/shop/services.py": "from .models import Order\nfrom donorhub.audit import record\n",
    "donorhub/shop/views.py": "from donorhub.shop import services\n",
    "donorhub/payments/__init__.py": "",
    "donorhub/payments/gateway.py": "",
    "donorhub/payments/webhooks.py": "from donorhub.donations import services\n",
    "donorhub/donations/__init__.py": "",
    "donorhub/donations/services.py": "from donorhub.payments import gateway\n",
}


def test_the_checker_passes_a_clean_tree(tmp_path):
    graph = plant(tmp_path, CLEAN_TREE)
    assert {name: check(graph) for name, check in CONTRACTS.items()} == {
        name: [] for name in CONTRACTS
    }


def test_the_checker_reports_a_planted_back_arrow(tmp_path):
    graph = plant(
        tmp_path,
        CLEAN_TREE
        | {
            # models -> views, hidden in a function, and views reached by a relative import.
            "donorhub/shop/models.py": "def total():\n    from donorhub.shop.views import page\n",
            "donorhub/shop/services.py": "from . import views\n",
        },
    )
    found = layer_violations(graph)
    assert any(
        "domain module imports the edge: donorhub.shop.models -> donorhub.shop.views" in line
        and "(in a function)" in line
        for line in found
    ), found
    assert any(
        "models import beyond infrastructure and models: donorhub.shop.models" in line
        for line in found
    ), found
    assert any("donorhub.shop.services -> donorhub.shop.views" in line for line in found), found


def test_the_checker_reports_a_two_package_cycle_with_its_edges(tmp_path):
    graph = plant(
        tmp_path,
        CLEAN_TREE
        | {
            "donorhub/billing/__init__.py": "",
            "donorhub/billing/services.py": "from donorhub.shop.services import place\n",
            "donorhub/shop/services.py": (
                "def place():\n    from donorhub.billing import services\n"
            ),
        },
    )
    [cycle] = domain_cycles(graph)
    assert "packages in a cycle: donorhub.billing, donorhub.shop" in cycle
    assert "donorhub.billing.services -> donorhub.shop.services" in cycle
    assert "donorhub.shop.services -> donorhub.billing.services" in cycle
    assert "(in a function)" in cycle


def test_the_checker_reports_the_other_contracts(tmp_path):
    graph = plant(
        tmp_path,
        CLEAN_TREE
        | {
            "donorhub/shop/services.py": "from donorhub.feed.parse import parse_feed\n",
            "donorhub/audit.py": (
                "import importlib\nimportlib.import_module('donorhub.shop.models')\n"
            ),
            "donorhub/guard/words.py": "import yaml\nfrom donorhub.audit import record\n",
            "donorhub/staff/donors.py": "from donorhub.extensions import db\n\n\n"
            "class Note(db.Model):\n    pass\n",
            "donorhub/payments/gateway.py": "from donorhub.donations.models import Donation\n",
            "donorhub/donations/models.py": "",
        },
    )
    assert [line.split(":")[0] for line in raw_feed_violations(graph)] == [
        "raw partner records read outside feed/"
    ]
    assert "donorhub.audit -> donorhub.shop.models" in "".join(kernel_violations(graph))
    standalone = "\n".join(standalone_violations(graph))
    assert "donorhub.guard.words -> yaml" in standalone
    assert "donorhub.guard.words -> donorhub.audit" in standalone
    staff = "\n".join(views_only_violations(graph))
    assert "defines a model: donorhub/staff/donors.py:4" in staff
    assert "neither views nor schemas: donorhub/staff/donors.py" in staff
    below = "\n".join(below_features_violations(graph))
    assert "donorhub.payments.gateway -> donorhub.donations.models" in below
    # The dispatch table's inversion stays allowed.
    assert "webhooks" not in below


def test_type_checking_imports_are_not_dependencies(tmp_path):
    graph = plant(
        tmp_path,
        CLEAN_TREE
        | {
            "donorhub/audit.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
            "    from donorhub.shop.models import User\n",
        },
    )
    assert kernel_violations(graph) == []
