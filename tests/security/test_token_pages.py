"""Pages whose address holds a secret are never cached and never send their address on; the
reference a visitor sees on an error page is always ours."""

from __future__ import annotations

import json
import re

from tests.helpers import sign_in
from tests.metrics import METRICS

#: Variable names that say "this part of the address is a secret" (whole words of the name).
TOKEN_LIKE = re.compile(
    r"(?:^|_)(?:token|key|code|secret|signature|session_id|nonce|ref|"
    r"public_id)(?:$|_)"
)
SAMPLE = {"IntegerConverter": "1", "PathConverter": "css/site.css"}


def token_routes(app) -> list:
    return sorted(
        (
            rule
            for rule in app.url_map.iter_rules()
            if any(TOKEN_LIKE.search(name) for name in rule.arguments)
        ),
        key=lambda rule: rule.rule,
    )


def build(rule) -> str:
    values = {
        name: SAMPLE.get(
            type(rule._converters[name]).__name__, "sample-Token-value-0123456789abcdef"
        )
        for name in rule.arguments
    }
    return rule.build(values, append_unknown=False)[1]


def problems_of(response) -> list[str]:
    found = []
    if "no-store" not in response.headers.get("Cache-Control", ""):
        found.append("no-store")
    if response.headers.get("Referrer-Policy") != "no-referrer":
        found.append("no-referrer")
    return found


def test_every_page_with_a_secret_in_its_address_is_not_stored_and_sends_no_referrer(
    app, make_user
):
    routes = token_routes(app)
    endpoints = {rule.endpoint for rule in routes}
    # The pages that once went without, and the account pages that always had both.
    assert {
        "donations.manage",
        "donations.manage_action",
        "donations.confirm_gift_aid",
        "updates.unsubscribe_page",
        "updates.unsubscribe",
        "accounts.reset_password",
        "accounts.verify_email",
        "accounts.accept_invitation",
        "accounts.confirm_email_change",
    } <= endpoints
    donor = make_user()
    clients = {"anonymous": app.test_client(), "signed in": app.test_client()}
    sign_in(clients["signed in"], donor.email, donor.password)
    checked, problems = 0, []
    for who, client in clients.items():
        for rule in routes:
            url = build(rule)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                response = client.open(url, method=method)
                checked += 1
                problems += [
                    (who, method, rule.rule, response.status_code, p) for p in problems_of(response)
                ]
        # A secret in the query string: Checkout's return address carries the session id.
        for url in (
            "/donate/thank-you?session_id=cs_test_secret0123456789",
            "/donate/cancelled?ref=sample-public-id-0123456789",
        ):
            response = client.get(url)
            checked += 1
            problems += [(who, "GET", url, response.status_code, p) for p in problems_of(response)]
    assert problems == []
    # Pages without a secret keep the ordinary policy.
    assert (
        app.test_client().get("/").headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    )
    METRICS.report(
        "14.1 token pages checked (routes, responses) / missing no-store or no-referrer",
        f"{len(routes)}, {checked} / 0",
    )


def test_the_reference_on_an_error_page_is_ours_never_the_visitors(app, client, log_guard):
    spoofed = "SUPPORT-TICKET-0001-spoofed"
    response = client.get("/_testing/boom", headers={"X-Request-ID": spoofed})
    page = response.get_data(as_text=True)
    ours = response.headers["X-Request-ID"]
    assert response.status_code == 500
    assert ours != spoofed and spoofed not in page and ours in page
    missing = client.get(
        "/no/such/page", headers={"X-Request-ID": spoofed, "Accept": "application/json"}
    )
    assert missing.get_json()["request_id"] == missing.headers["X-Request-ID"] != spoofed
    # The proxy's id is kept in the log, beside ours, so the two logs can be matched.
    records = [json.loads(r) for r in log_guard.records if "unhandled error" in r]
    assert records and records[-1]["request_id"] == ours
    assert records[-1]["upstream_request_id"] == spoofed
    # A hostile one is not even logged.
    hostile = 'x" \\n{"level": "INFO"}' + "y" * 80
    client.get("/_testing/boom", headers={"X-Request-ID": hostile})
    last = [json.loads(r) for r in log_guard.records if "unhandled error" in r][-1]
    assert last["request_id"] != records[-1]["request_id"]
    assert "upstream_request_id" not in last
