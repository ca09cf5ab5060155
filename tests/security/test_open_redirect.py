"""Every redirect to a target taken from the request stays on this site, whatever the target.

Each payload of a corpus of known open-redirect tricks is sent to every place that redirects
to a user-supplied target: the donor sign-in, the staff sign-in (password, then the second
factor, or the authenticator enrolment) and the sponsor's code of conduct. The answer's
Location is resolved the way a browser does (WHATWG: tab, CR and LF dropped, a backslash read
as a slash) and must stay on the site's origin.
"""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import pyotp
import time_machine

from donorhub.security import is_safe_next
from tests.helpers import PASSWORD, csrf_token, post_form
from tests.metrics import METRICS

ORIGIN = "https://donorhub.test"
EVIL = "evil.example"

CORPUS = [
    # plain off-site targets and schemes
    f"https://{EVIL}/",
    f"http://{EVIL}/",
    f"HTTPS://{EVIL}",
    f"http:/{EVIL}",
    f"http:{EVIL}",
    f"https:{EVIL}",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<b>x</b>",
    "vbscript:x",
    f"ftp://{EVIL}/",
    # scheme-relative, and the many ways to spell it
    f"//{EVIL}",
    f"///{EVIL}",
    f"////{EVIL}",
    f"/\\{EVIL}",
    f"\\\\{EVIL}",
    f"\\/{EVIL}",
    f"/\\/{EVIL}",
    f"\\{EVIL}",
    f"/.//{EVIL}/../..//{EVIL}",
    # whitespace and control characters, which browsers and Werkzeug drop
    f"/\t/{EVIL}",
    f"/\t\t/{EVIL}",
    f"/\t\\{EVIL}",
    f"\t//{EVIL}",
    f"/\n/{EVIL}",
    f"/\r/{EVIL}",
    f"/\r\n/{EVIL}",
    f" //{EVIL}",
    f"/ /{EVIL}",
    f"/\x0b/{EVIL}",
    f"/\x0c/{EVIL}",
    f"/\x1f/{EVIL}",
    f"/\x7f/{EVIL}",
    # unicode whitespace and look-alikes
    f"/\u3000/{EVIL}",
    f"/\u00a0/{EVIL}",
    f"/\u2028/{EVIL}",
    f"/\u200b/{EVIL}",
    f"/\ufeff/{EVIL}",
    f"/\uff0f{EVIL}",
    f"/\u2215{EVIL}",
    # percent-encoded forms (decoded once by the query string, and once more by us)
    f"/%09/{EVIL}",
    f"/%0a/{EVIL}",
    f"/%0d/{EVIL}",
    f"/%5C{EVIL}",
    f"/%2F{EVIL}",
    f"/%2f%2f{EVIL}",
    f"%2F%2F{EVIL}",
    f"/%E3%80%80/{EVIL}",
    f"https%3A%2F%2F{EVIL}",
    f"/%252F%252F{EVIL}",
    # credentials and ports that make a host
    f"//user@{EVIL}",
    f"//{EVIL}:443",
    f"https://donorhub.test@{EVIL}/",
]


def browser_resolves(location: str, base: str) -> str:
    """The absolute URL a browser goes to for this Location header (WHATWG URL parsing)."""
    cleaned = re.sub(r"[\t\n\r]", "", location).strip("".join(map(chr, range(33))))
    cleaned = cleaned.replace("\\", "/")
    return urljoin(base, cleaned)


def stays_on_site(response, base: str) -> bool:
    if response.status_code not in (301, 302, 303, 307, 308):
        return True  # no redirect at all (an error page) keeps the visitor here
    target = urlsplit(browser_resolves(response.headers.get("Location", ""), base))
    return (target.scheme, target.netloc) == urlsplit(ORIGIN)[:2]


def test_the_checker_refuses_every_payload_and_keeps_real_paths():
    accepted = [p for p in CORPUS if is_safe_next(p)]
    assert accepted == []
    for path in (
        "/account",
        "/staff",
        "/staff/donors?page=2",
        "/sponsor/abc-DEF_1",
        "/donate/history?q=a%20b",
    ):
        assert is_safe_next(path), path


def test_no_redirect_leaves_the_site_whatever_next_says(app_factory, make_user):
    app = app_factory(RATELIMIT_ENABLED=False)
    donor = make_user()
    staff = make_user(roles=("fundraiser",))
    newcomers = [make_user(roles=("admin",), totp=False) for _ in range(2)]
    sponsor = make_user()
    base = f"{ORIGIN}/account/sign-in"
    off_site: dict[str, list[str]] = {}
    endpoints = 0

    def check(endpoint: str, payload: str, response) -> None:
        if not stays_on_site(response, base):
            off_site.setdefault(endpoint, []).append(repr(payload))

    # 1. donor sign-in: ?next= on the form's URL
    endpoints += 1
    for payload in CORPUS:
        client = app.test_client()
        response = post_form(
            client,
            f"/account/sign-in?next={quote(payload, safe='')}",
            {"email": donor.email, "password": PASSWORD},
        )
        assert response.status_code == 302
        check("donor sign-in", payload, response)

    # 2. staff sign-in: next is kept through the password step and used after the code
    endpoints += 1
    totp = pyotp.TOTP(staff.totp_secret)
    with time_machine.travel(datetime(2026, 12, 4, 9, 0, 1, tzinfo=UTC), tick=False) as clock:
        for payload in CORPUS:
            clock.shift(30)  # a fresh code for every sign-in (each code works once)
            client = app.test_client()
            response = post_form(
                client,
                f"/account/sign-in?next={quote(payload, safe='')}",
                {"email": staff.email, "password": PASSWORD},
            )
            assert response.headers["Location"] == "/account/two-factor"
            token = csrf_token(client, "/account/two-factor")
            response = client.post(
                "/account/two-factor", data={"csrf_token": token, "code": totp.now()}
            )
            assert response.status_code == 302
            check("staff two-factor", payload, response)

    # 3. first staff sign-in: the target survives the authenticator enrolment too
    endpoints += 1
    for index, payload in enumerate(CORPUS):
        newcomer = newcomers[index % 2]
        client = app.test_client()
        response = post_form(
            client,
            f"/account/sign-in?next={quote(payload, safe='')}",
            {"email": newcomer.email, "password": PASSWORD},
        )
        assert response.headers["Location"] == "/account/two-factor/setup"
        page = client.get("/account/two-factor/setup").get_data(as_text=True)
        secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
        token = csrf_token(client, "/account/two-factor/setup")
        response = client.post(
            "/account/two-factor/setup", data={"csrf_token": token, "code": "000000"}
        )  # a wrong code: enrolment stays open
        response = client.post(
            "/account/two-factor/setup",
            data={"csrf_token": token, "code": pyotp.TOTP(secret).now()},
        )
        check("staff enrolment", payload, response)
        _forget_enrolment(app, newcomer.id)

    # 4. the sponsor's code of conduct: next is a hidden form field
    endpoints += 1
    client = app.test_client()
    post_form(client, "/account/sign-in", {"email": sponsor.email, "password": PASSWORD})
    from donorhub.sponsorship import conduct

    for payload in CORPUS:
        response = post_form(
            client,
            "/sponsor/code-of-conduct",
            {"version": conduct.CURRENT_VERSION, "accept": "on", "next": payload[:200]},
            token_page="/account",
        )
        check("code of conduct", payload, response)

    assert off_site == {}
    METRICS.report(
        "4.6 open-redirect payloads x endpoints / off-site redirects",
        f"{len(CORPUS)} x {endpoints} / 0",
    )


def _forget_enrolment(app, user_id: int) -> None:
    """Put the account back to "no authenticator yet", so the next payload enrols again."""
    from donorhub.accounts.models import User
    from donorhub.extensions import db

    with app.app_context():
        user = db.session.get(User, user_id)
        user.totp_secret = None
        user.totp_pending_secret = None
        user.totp_last_step = None
        codes = db.metadata.tables.get("recovery_codes")
        if codes is not None:
            db.session.execute(codes.delete().where(codes.c.user_id == user_id))
        db.session.commit()


REQUEST_SOURCES = re.compile(
    r"request\.(args|values|form|referrer|headers)|data\[\"next\"\]"
    r"|\.get\(\"next\"\)"
)


def test_every_redirect_to_a_request_value_goes_through_the_checker():
    """Walks the code: any redirect(...) whose argument reads the request (or a form's "next")
    must sit in a function that calls is_safe_next, or pass through one that does."""
    root = Path(__file__).resolve().parents[2] / "donorhub"
    checked_helpers = {"next_target", "_safe_next"}
    unsafe = []
    for path in root.rglob("*.py"):
        if "simulator" in path.parts:
            continue  # the Stripe simulator redirects to its own URLs
        text = path.read_text()
        if "redirect(" not in text:
            continue
        for func in ast.walk(ast.parse(text)):
            if not isinstance(func, ast.FunctionDef):
                continue
            source = ast.get_source_segment(text, func) or ""
            for node in ast.walk(func):
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "redirect":
                    argument = ast.get_source_segment(text, node.args[0]) if node.args else ""
                    reads_request = REQUEST_SOURCES.search(argument or "") or (
                        argument
                        and re.search(
                            rf"\b{re.escape(argument)}\s*=.*(?:{REQUEST_SOURCES.pattern})", source
                        )
                    )
                    guarded = "is_safe_next" in source or any(
                        h in (argument or "") for h in checked_helpers
                    )
                    if reads_request and not guarded:
                        unsafe.append(f"{path.name}:{node.lineno}")
    assert unsafe == []
