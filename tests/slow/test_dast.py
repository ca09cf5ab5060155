"""DAST: wapiti3 attacks the running system (slow tier, `make test-slow`).

gunicorn (2 workers) serves DonorHub on a scratch PostgreSQL database with the demo data, and
wapiti crawls and attacks it four times: as an anonymous visitor, with a donor's session
cookie, with a sponsor's (the sponsorship portal and a child's T2 profile) and with an
admin's (password + TOTP). Modules: xss, sql, exec, file,
crlf, redirect, csrf, http_headers, cookieflags; each scan is bounded in time. A high or
medium finding (wapiti's "vulnerabilities" and "anomalies", e.g. a 500 under attack) fails,
unless tests/slow/dast_allowlist.yaml triages it with a reason. Findings are reported by
category and level (METRICS). Only 127.0.0.1 is ever a target.

wapiti3 pins dependencies that conflict with semgrep's, so it lives in .venv-dast
(`make tools`).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.metrics import METRICS
from tests.system.stack import (
    ROOT,
    drop_database,
    fresh_database,
    migrate,
    run_flask,
    start_gunicorn,
)

WAPITI = ROOT / ".venv-dast" / "bin" / "wapiti"
ALLOWLIST = Path(__file__).with_name("dast_allowlist.yaml")
MODULES = "xss,sql,exec,file,crlf,redirect,csrf,http_headers,cookieflags"
DEMO_PASSWORD = "demo-password-for-local-use"  # noqa: S105 - published demo password
DONOR = "donor@demo.donorhub.invalid"
SPONSOR = "sponsor@demo.donorhub.invalid"
ADMIN = "admin@demo.donorhub.invalid"
COOKIE = "donorhub_session"  # DevelopmentConfig.SESSION_COOKIE_NAME
#: wapiti's levels (wapitiCore.definitions): 4 critical, 3 high, 2 medium, 1 low, 0 info.
LEVELS = {4: "critical", 3: "high", 2: "medium", 1: "low", 0: "info"}
FAILING_LEVEL = 2
#: Bounds per scan: crawl + attacks stop by themselves (wapiti's own limits), and the
#: subprocess timeout is the backstop.
MAX_SCAN_SECONDS = 420
MAX_ATTACK_SECONDS = 40
#: Pages whose use would end the session under test (or lock its owner out), so the
#: authenticated scans keep their session to the end.
KEEP_SESSION_ALIVE = [
    "/account/sign-out",
    "/account/delete",
    "/account/password",
    "/account/email",
    "/staff/accounts/*/disable",
    "/staff/accounts/*/roles",
]


def postgres_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not WAPITI.exists(),
        reason="!!! .venv-dast/bin/wapiti is missing (make tools): the DAST scan did NOT run !!!",
    ),
    pytest.mark.skipif(
        not postgres_answers(),
        reason="!!! no PostgreSQL on 127.0.0.1:5432: the DAST scan did NOT run !!!",
    ),
]


@pytest.fixture(autouse=True)
def _slow_tier_only(request):
    """`make test` runs plain `pytest`: this scan (about 15 minutes) waits for `-m slow`."""
    if "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("slow tier: run by `make test-slow`")


# Signing in over HTTP, as a browser does -------------------------------------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """urllib with a cookie jar: GET pages, POST forms with their CSRF token."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), urllib.request.ProxyHandler({})
        )

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(self.base_url + path, timeout=30) as response:
            return response.geturl(), response.read().decode()

    def submit(self, path: str, fields: dict[str, str]) -> tuple[str, str]:
        """GET the form at `path`, POST it back with its token; returns (final URL, page)."""
        _url, page = self.get(path)
        match = CSRF.search(page)
        assert match, f"no CSRF token on {path}"
        data = urllib.parse.urlencode({**fields, "csrf_token": match.group(1)}).encode()
        with self.opener.open(self.base_url + path, data=data, timeout=30) as response:
            return response.geturl(), response.read().decode()

    def cookie(self) -> str:
        values = [c.value for c in self.jar if c.name == COOKIE]
        assert values, f"no {COOKIE} cookie was set"
        return values[-1]


def sign_in(base_url: str, email: str, database_url: str, *, staff: bool) -> Browser:
    browser = Browser(base_url)
    url, _page = browser.submit("/account/sign-in", {"email": email, "password": DEMO_PASSWORD})
    if staff:
        assert "/account/two-factor" in url, f"staff sign-in did not ask for a code: {url}"
        path = urllib.parse.urlsplit(url).path + "?" + urllib.parse.urlsplit(url).query
        for _attempt in range(3):  # a code is good for its 30-second step only, and once
            code = run_flask(database_url, "demo", "totp", email, quiet=True).stdout.strip()
            url, _page = browser.submit(path, {"code": code})
            if "/account/two-factor" not in url:
                break
            time.sleep(31 - time.time() % 30)
    assert "/account/sign-in" not in url and "/account/two-factor" not in url, url
    return browser


def still_signed_in(base_url: str, cookie: str, page: str) -> bool:
    """The cookie still opens a signed-in page (not a redirect to sign-in)."""
    request = urllib.request.Request(base_url + page, headers={"Cookie": f"{COOKIE}={cookie}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return "/account/sign-in" not in response.geturl() and response.status == 200


# wapiti --------------------------------------------------------------------------------


def run_wapiti(base_url: str, role: str, work: Path, cookie: str | None) -> dict:
    report = work / f"wapiti-{role}.json"
    command = [
        "timeout",
        str(MAX_SCAN_SECONDS + 180),
        str(WAPITI),
        "-u",
        base_url + "/",
        "--scope",
        "folder",
        "-m",
        MODULES,
        "--flush-session",
        "--store-session",
        str(work / f"session-{role}"),
        "--store-config",
        str(work / f"config-{role}"),
        "--max-scan-time",
        str(MAX_SCAN_SECONDS),
        "--max-attack-time",
        str(MAX_ATTACK_SECONDS),
        "-d",
        "4",
        "--max-links-per-page",
        "40",
        "--max-files-per-dir",
        "40",
        "--tasks",
        "4",
        "-t",
        "15",
        "-f",
        "json",
        "-o",
        str(report),
        "--no-bugreport",
        "-v",
        "1",
        "--log",
        str(work / f"wapiti-{role}.log"),
    ]
    for path in KEEP_SESSION_ALIVE:
        command += ["-x", base_url + path]
    if cookie is not None:
        command += ["-C", f"{COOKIE}={cookie}"]
    result = subprocess.run(
        command,
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        timeout=MAX_SCAN_SECONDS + 240,
        env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"},
    )
    assert result.returncode == 0 and report.exists(), (
        f"wapiti ({role}) exited {result.returncode}:\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-3000:]}"
    )
    return json.loads(report.read_text())


def findings(report: dict, role: str) -> list[dict]:
    rows = []
    for section in ("vulnerabilities", "anomalies"):
        for category, items in report.get(section, {}).items():
            for item in items:
                rows.append(
                    {
                        "role": role,
                        "section": section,
                        "category": category,
                        "level": int(item.get("level", 0)),
                        "method": item.get("method"),
                        "path": item.get("path"),
                        "parameter": item.get("parameter") or "",
                        "info": (item.get("info") or "")[:200],
                        "request": (item.get("curl_command") or "")[:300],
                    }
                )
    return rows


def allowlisted(finding: dict, entries: list[dict]) -> bool:
    for entry in entries:
        if (
            entry["category"] == finding["category"]
            and entry["path"] == finding["path"]
            and entry.get("parameter", finding["parameter"]) == finding["parameter"]
            and finding["role"] in entry.get("roles", [finding["role"]])
        ):
            return True
    return False


def test_wapiti_finds_no_high_or_medium_issue(tmp_path):
    entries = (yaml.safe_load(ALLOWLIST.read_text()) or {}).get("entries") or []
    for entry in entries:
        assert str(entry.get("reason", "")).strip(), f"allowlist entry without a reason: {entry}"
        assert entry.get("category") and entry.get("path"), f"incomplete entry: {entry}"

    name = f"donorhub_dast_{os.getpid()}"
    database_url = fresh_database(name)
    web = None
    try:
        migrate(database_url)
        run_flask(database_url, "demo", "seed", quiet=True)
        web = start_gunicorn(database_url, tmp_path / "logs", workers=2)
        base = web.base_url
        # Sign in before any scan: the scans' attacks on the sign-in form use up its
        # per-address rate limit.
        cookies = {
            "anonymous": None,
            "donor": sign_in(base, DONOR, database_url, staff=False).cookie(),
            "sponsor": sign_in(base, SPONSOR, database_url, staff=False).cookie(),
            "admin": sign_in(base, ADMIN, database_url, staff=True).cookie(),
        }
        signed_in_page = {"donor": "/account", "sponsor": "/my/sponsorships", "admin": "/staff"}
        for role, page in signed_in_page.items():
            assert still_signed_in(base, cookies[role], page), role

        reports, rows = {}, []
        # Donor and sponsor before admin: an admin's attacks may erase demo donors.
        for role, cookie in cookies.items():
            reports[role] = run_wapiti(base, role, tmp_path, cookie)
            rows += findings(reports[role], role)
        # The authenticated scans were authenticated to the end.
        for role, page in signed_in_page.items():
            assert still_signed_in(base, cookies[role], page), f"the {role}'s session ended"
        assert web.alive(), web.output()[-3000:]
    finally:
        if web is not None:
            web.stop()
        drop_database(name)

    crawled = {
        role: report["infos"].get("crawled_pages_nbr", 0) for role, report in reports.items()
    }
    by_category = Counter((r["category"], LEVELS.get(r["level"], str(r["level"]))) for r in rows)
    failing = [r for r in rows if r["level"] >= FAILING_LEVEL and not allowlisted(r, entries)]
    allowed = [r for r in rows if r["level"] >= FAILING_LEVEL and allowlisted(r, entries)]
    METRICS.report(
        "12.4 DAST wapiti3 pages crawled (anonymous / donor / sponsor / admin)",
        " / ".join(str(crawled[role]) for role in reports),
    )
    METRICS.report(
        "12.4 DAST wapiti3 findings: high+medium / allowlisted / low / info",
        f"{len(failing)} / {len(allowed)} / "
        f"{sum(r['level'] == 1 for r in rows)} / {sum(r['level'] == 0 for r in rows)}",
    )
    METRICS.report(
        "12.4 DAST wapiti3 findings by category and level",
        ", ".join(
            f"{category} ({level}): {count}"
            for (category, level), count in sorted(by_category.items())
        )
        or "none",
    )
    # Signed-in crawls must reach further than the anonymous one, or they were not signed in.
    assert min(crawled.values()) > 0 and crawled["admin"] > crawled["anonymous"], crawled
    assert not failing, "wapiti found:\n" + "\n".join(
        f"[{r['role']}] {LEVELS.get(r['level'])} {r['category']}: {r['method']} {r['path']} "
        f"{r['parameter']} — {r['info']}\n    {r['request']}"
        for r in failing
    )
