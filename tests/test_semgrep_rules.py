"""Semgrep with DonorHub's own rules (.semgrep/donorhub.yml).

Three checks, each a real semgrep run (the pinned one in .venv-tools, `make tools`):
1. every rule's own test cases (tests/semgrep/<rule id>.py|.html, `# ruleid:` / `# ok:`)
   pass under `semgrep --test`;
2. the rules' path filters (what is allowlisted where) hold on a planted tree that puts
   regressions at the real paths: `semgrep --test` ignores `paths:`, so this proves them;
3. the app itself (donorhub/ stripe_simulator/ config.py wsgi.py templates/) has 0 findings
   and 0 scan errors.

Only local rule files: registry rules cannot be fetched here (`--config p/...` hangs).
`--experimental` runs semgrep's native engine, which answers in about a second instead of
pysemgrep's Python start-up (tens of seconds on a loaded 2-core machine); same rules, same
results.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.helpers import require
from tests.metrics import METRICS

ROOT = Path(__file__).resolve().parents[1]
SEMGREP = ROOT / ".venv-tools" / "bin" / "semgrep"
RULES = ROOT / ".semgrep" / "donorhub.yml"
CASES = ROOT / "tests" / "semgrep"
SCANNED = ["donorhub", "stripe_simulator", "config.py", "wsgi.py", "templates"]
COMMON = ["--metrics=off", "--disable-version-check", "--experimental"]
TIMEOUT_SECONDS = 300


@pytest.fixture(autouse=True)
def _semgrep_installed():
    require(
        SEMGREP.exists(),
        ".venv-tools/bin/semgrep (make tools, or make lint)",
        "checking the project's semgrep rules",
    )


def semgrep(*args: str, cwd: Path = ROOT) -> dict:
    """Run semgrep (under `timeout`, so a hang cannot stall the suite) and parse its JSON."""
    command = ["timeout", str(TIMEOUT_SECONDS), str(SEMGREP), *args, *COMMON, "--json"]
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False, timeout=TIMEOUT_SECONDS + 30
    )
    assert result.returncode != 124, f"semgrep timed out: {' '.join(args)}"
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"semgrep exited {result.returncode} without JSON:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        ) from None


def rules() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["rules"]


def rule_name(check_id: str) -> str:
    """semgrep prefixes ids with the config's folder (".semgrep.<id>"); ids have no dot."""
    return check_id.rsplit(".", 1)[-1]


def test_every_rule_has_test_cases_and_they_pass(tmp_path):
    all_rules = rules()
    ids = [rule["id"] for rule in all_rules]
    assert len(ids) == len(set(ids)), "rule ids must be unique"
    cases = {path.stem: path for path in CASES.iterdir() if path.is_file()}
    missing = sorted(set(ids) - set(cases))
    assert not missing, f"rules without test cases in tests/semgrep/: {missing}"
    stray = sorted(set(cases) - set(ids))
    assert not stray, f"test cases for rules that do not exist: {stray}"

    # One folder of <id>.yml + <id>.<ext> pairs: each case file is checked against its own
    # rule only, the layout `semgrep --test` understands.
    annotations = Counter()
    for rule in all_rules:
        (tmp_path / f"{rule['id']}.yml").write_text(
            yaml.safe_dump({"rules": [rule]}, sort_keys=False)
        )
        case = cases[rule["id"]]
        text = case.read_text()
        for kind in ("ruleid", "ok"):
            count = text.count(f"{kind}: {rule['id']}")
            assert count, f"{case.name} needs at least one `{kind}: {rule['id']}` case"
            annotations[kind] += count
        shutil.copy(case, tmp_path / case.name)

    report = semgrep("--test", str(tmp_path))
    checks = {
        check_id: check
        for config in report["results"].values()
        for check_id, check in config["checks"].items()
    }
    assert sorted(rule_name(c) for c in checks) == sorted(ids), "every rule must be tested"
    failures = {
        rule_name(check_id): check["matches"]
        for check_id, check in checks.items()
        if not check["passed"] or check.get("errors")
    }
    assert not failures, f"semgrep --test failures (expected vs reported lines): {failures}"
    assert not report.get("config_with_errors"), report.get("config_with_errors")
    METRICS.report(
        "9.6 semgrep project rules: rules / test cases (ruleid + ok) / failures",
        f"{len(ids)} / {annotations['ruleid']} + {annotations['ok']} / 0",
    )


#: Regressions planted at real paths, and the rules that must catch them (others must not).
PLANTED = {
    "donorhub/accounts/services.py": (
        "from flask import request\nfrom donorhub.extensions import db\n\n\n"
        "def change_email(user):\n    db.session.commit()\n    return request.args\n",
        ["services-never-read-request-state"] * 2 + ["services-never-commit"],
    ),
    "donorhub/accounts/views.py": (
        "import stripe\nfrom flask import request\n"
        "from donorhub.feed.parse import parse_feed\n\n\n"
        "@bp.get('/account/export')\ndef export():\n    print(request.args)\n"
        "    assert stripe and parse_feed\n    return ''\n",
        [
            "stripe-only-in-payments",
            "raw-feed-only-in-feed",
            "every-view-is-classified",
            "no-print-in-the-app",
            "no-assert-for-control-flow",
        ],
    ),
    "donorhub/accounts/jobs.py": (  # an edge: it commits, and may
        "from donorhub.extensions import db\n\n\ndef run():\n    db.session.commit()\n",
        [],
    ),
    "donorhub/payments/gateway.py": ("import stripe\n", []),
    "donorhub/feed/jobs.py": ("from donorhub.feed.parse import parse_feed\n", []),
    "donorhub/feed/importer.py": (
        "from donorhub import guard\nfrom donorhub.extensions import db\n\n\n"
        "def same(row, text):\n    db.session.commit()\n    return row.original == text\n",
        ["services-never-commit"],
    ),
    "donorhub/children/review.py": (
        "from donorhub import guard\n\n\ndef text(row):\n    return row.original_text\n",
        [],
    ),
    "donorhub/children/services.py": (
        "from donorhub import guard\n\n\ndef text(row):\n    row.original = None\n"
        "    return row.original_text\n",
        ["pii-guard-only-in-feed-and-review", "raw-child-text-only-in-feed-and-review"],
    ),
    "donorhub/qr.py": ("from markupsafe import Markup\n\nSVG = Markup('<svg/>')\n", []),
    "donorhub/staff/views/donors.py": (
        "from markupsafe import Markup\n\n\ndef note(text):\n    return Markup(text)\n",
        ["markup-only-allowlisted"],
    ),
    "donorhub/testing_routes.py": (
        "from flask import render_template_string\n\nPAGE = render_template_string('{{ x }}')\n",
        [],
    ),
    "donorhub/demo/seed.py": ("import random\n\nassert random.random() < 2\n", []),
    "donorhub/feed/pseudonyms.py": ("import random\n", ["secrets-not-random"]),
    "stripe_simulator/__main__.py": ("print('simulator on port 1')\n", []),
    "stripe_simulator/webhooks.py": ("import stripe\n\nprint(stripe)\n", ["no-print-in-the-app"]),
    "donorhub/updates/views.py": (
        "@bp.post('/u/<token>')\n@machine\n@csrf.exempt\ndef unsubscribe(token):\n    return ''\n",
        [],
    ),
    "donorhub/campaigns/views.py": (
        "@bp.post('/c')\n@public\n@csrf.exempt\ndef create():\n    return ''\n",
        ["csrf-exempt-only-known-views"],
    ),
    "templates/campaigns/page.html": (
        "<div>{{ body_html|safe }}</div>\n<p>{{ campaign.summary|safe }}</p>\n"
        "<p>{{ gift.amount_minor / 100 }}</p>\n",
        ["template-safe-only-allowlisted", "template-money-never-float"],
    ),
    "templates/donations/plan.html": (
        "<p>{{ plan.amount_minor / 100 }}</p>\n",
        ["template-money-never-float"],
    ),
    "templates/staff/donors/detail.html": (
        "<p>{{ refundable[g.id] / 100 }}</p>\n",
        ["template-money-never-float"],
    ),
    # Every module below the edge is a service for these rules, whatever its name ...
    "donorhub/donations/refunds.py": (
        "from flask_login import current_user\nfrom donorhub.extensions import db\n\n\n"
        "def refund(gift):\n    db.session.commit()\n    return current_user\n",
        ["services-never-read-request-state"] * 2 + ["services-never-commit"],
    ),
    "donorhub/audit.py": ("from flask import request\n", ["services-never-read-request-state"]),
    # ... but not the edge (where views-never-commit watches a view's commits), the wiring,
    # or database.py's unit of work.
    "donorhub/staff/views/outbox.py": (
        "from flask import request\nfrom donorhub.extensions import db\n\n\n"
        "def page():\n    db.session.commit()\n    return request.args\n",
        ["views-never-commit"],
    ),
    "donorhub/staff/views/reports.py": (
        "from flask import request\nfrom donorhub.commit_point import "
        "commit_before_calling_stripe\n\n\n"
        "def page():\n    commit_before_calling_stripe()\n    return request.args\n",
        [],
    ),
    "donorhub/jobs/registry.py": (
        "from donorhub.extensions import db\n\n\ndef run_job():\n    db.session.commit()\n",
        [],
    ),
    "donorhub/payments/webhooks.py": (
        "from flask import request\nfrom donorhub.extensions import db\n\n\n"
        "def receive():\n    db.session.commit()\n    return request.data\n",
        [],
    ),
    "donorhub/donations/__init__.py": ("from flask import request\n", []),
    "donorhub/forms.py": ("from flask import request\n", []),
    "donorhub/database.py": ("def unit_of_work():\n    yield\n    db.session.commit()\n", []),
}


def test_path_filters_hold_on_a_planted_tree(tmp_path):
    for relative, (source, _expected) in PLANTED.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    # semgrep anchors `paths:` patterns at the project root, which is the git work tree (as
    # in the real checkout); outside one it would anchor them at "/" and match nothing.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=60)
    report = semgrep(
        "scan",
        "--no-git-ignore",
        "--config",
        str(RULES),
        "donorhub",
        "stripe_simulator",
        "templates",
        cwd=tmp_path,
    )
    assert not report["errors"], report["errors"]
    found = Counter((r["path"], rule_name(r["check_id"])) for r in report["results"])
    expected = Counter(
        (path, rule) for path, (_source, rules_) in PLANTED.items() for rule in rules_
    )
    assert found == expected, (
        f"missed: {sorted((expected - found).elements())}; "
        f"unexpected: {sorted((found - expected).elements())}"
    )
    METRICS.report(
        "9.6 semgrep path filters: planted files / expected findings / mismatches",
        f"{len(PLANTED)} / {sum(expected.values())} / 0",
    )


def test_the_app_has_no_findings():
    report = semgrep("scan", "--no-git-ignore", "--config", str(RULES), *SCANNED)
    # A file semgrep could not parse is a file it did not check: that fails too.
    assert not report["errors"], report["errors"]
    scanned = report["paths"]["scanned"]
    python_files = [p for p in scanned if p.endswith(".py")]
    templates = [p for p in scanned if p.startswith("templates/")]
    assert len(python_files) > 100 and len(templates) > 50, "the scan missed the tree"
    findings = [
        f"{r['path']}:{r['start']['line']} {rule_name(r['check_id'])}: "
        f"{r['extra']['message'][:120]}"
        for r in report["results"]
    ]
    METRICS.report(
        "9.6 semgrep project rules on donorhub/ config.py wsgi.py templates/: "
        "rules / files / findings",
        f"{len(rules())} / {len(scanned)} / {len(findings)}",
    )
    assert not findings, "semgrep findings:\n" + "\n".join(findings)
