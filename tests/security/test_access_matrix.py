"""Every route × every role against the written access matrix (tests/authz_matrix.yaml).

GET routes are walked over HTTP: a denial is a redirect to sign-in (or to the two-factor
step), a 403, or a 404 that the route gives only to that role. Other methods are sent with
a valid CSRF token: a denial is the same redirect or 403, anything else (a 400 for a missing
field, a 404 for an unknown id, a redirect back) means the guard let the caller through.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.helpers import CSRF_PATTERN, sign_in
from tests.metrics import METRICS
from tests.security.routes import all_routes

MATRIX = Path(__file__).resolve().parent.parent / "authz_matrix.yaml"
ROLES = ("anonymous", "donor", "fundraiser", "safeguarding_officer", "admin")


def load_matrix() -> dict[str, set[str]]:
    data = yaml.safe_load(MATRIX.read_text())
    for endpoint, roles in data.items():
        assert set(roles) <= set(ROLES), f"{endpoint}: unknown role in {roles}"
    return {endpoint: set(roles) for endpoint, roles in data.items()}


#: Public steps of signing in, which send a caller without a pending sign-in back to it by
#: design: for them only a 403 is a denial.
SIGN_IN_FLOW = {"accounts.two_factor", "accounts.two_factor_setup"}


def denied(response, endpoint: str = "") -> bool:
    if response.status_code == 403:
        return True
    if endpoint in SIGN_IN_FLOW:
        return False
    if response.status_code in (301, 302, 303):
        location = response.headers.get("Location", "")
        return "/account/sign-in" in location or "/account/two-factor" in location
    return False


def url_of(route) -> str:
    """routes.Route.url(), but an `any(a, b)` converter gets its first choice, not a 404."""
    rule = re.sub(r"<any\(([a-z_-]+)[^>]*>", r"\1", route.rule)
    return type(route)(route.endpoint, rule, route.methods).url()


def test_every_route_is_in_the_matrix(app):
    matrix = load_matrix()
    missing = sorted({r.endpoint for r in all_routes(app)} - set(matrix))
    assert missing == [], f"add these endpoints to tests/authz_matrix.yaml: {missing}"
    stale = sorted(set(matrix) - {r.endpoint for r in all_routes(app)})
    assert stale == [], f"endpoints in the matrix that no longer exist: {stale}"


def test_every_route_as_every_role_matches_the_matrix(app, make_user):
    matrix = load_matrix()
    clients = {"anonymous": app.test_client()}
    for role in ROLES[1:]:
        roles = () if role == "donor" else (role,)
        user = make_user(roles=roles)
        client = app.test_client()
        sign_in(client, user.email, totp_secret=user.totp_secret)
        clients[role] = client
    tokens = {}
    for role, client in clients.items():
        page = client.get("/account/sign-in" if role == "anonymous" else "/account/settings")
        match = CSRF_PATTERN.search(page.get_data(as_text=True))
        assert match, role
        tokens[role] = match.group(1)
    mismatches, checks = [], 0
    for route in all_routes(app):
        if route.endpoint == "static" or route.endpoint not in matrix:
            continue
        if route.endpoint == "accounts.sign_out":
            continue  # signing out would end the walk for that role
        for role, client in clients.items():
            expected = role in matrix[route.endpoint]
            for method in sorted(route.methods):
                if method == "GET":
                    response = client.get(url_of(route))
                else:
                    response = client.open(
                        url_of(route), method=method, data={"csrf_token": tokens[role]}
                    )
                was_denied = denied(response, route.endpoint)
                response.close()
                checks += 1
                if was_denied == expected:
                    mismatches.append((route.endpoint, method, role, response.status_code))
    assert mismatches == [], sorted({(m[0], m[2]) for m in mismatches})
    METRICS.report(
        "3.1 access matrix: endpoints × roles × methods checked / mismatches",
        f"{len(matrix)} × {len(ROLES)} → {checks} / 0",
    )
