"""Every page that can show anything about a child, the portal and the staff area are kept out
of every cache and every search engine; robots.txt tells crawlers the same paths."""

from __future__ import annotations

from urllib.robotparser import RobotFileParser

from donorhub.security import is_kept_private
from tests.helpers import csrf_token, sign_in
from tests.metrics import METRICS
from tests.security.routes import all_routes
from tests.sponsorship.helpers import load_children

#: Blueprints whose every route, now and later, may show a child or belongs to the portal
#: or the staff area: the listing and its filters, profiles, match-me, holds, the portal,
#: update links and preferences, and every staff page.
PRIVATE_BLUEPRINTS = {
    "sponsorship",
    "sponsorship_staff",
    "updates",
    "staff",
    "campaigns_staff",
    "donations_staff",
}
#: Paths that are private whichever blueprint serves them (a new blueprint under them
#: cannot be forgotten either).
PRIVATE_PREFIXES = ("/sponsor", "/my/", "/updates/", "/staff", "/impact")
#: Single views of mixed blueprints: the impact page (counts per safe home).
PRIVATE_ENDPOINTS = {"main.impact"}
#: Pages that say nothing about any child and that the charity wants found.
INDEXABLE = ("/", "/donate", "/campaigns/sample-campaign")


def private_routes(app):
    return [
        route
        for route in all_routes(app)
        if route.endpoint.rpartition(".")[0] in PRIVATE_BLUEPRINTS
        or route.rule.startswith(PRIVATE_PREFIXES)
        or route.endpoint in PRIVATE_ENDPOINTS
    ]


def header_problems(response) -> list[str]:
    problems = []
    cache = {part.strip() for part in response.headers.get("Cache-Control", "").split(",")}
    if not {"no-store", "private"} <= cache:
        problems.append(f"Cache-Control: {response.headers.get('Cache-Control')}")
    if "noindex" not in response.headers.get("X-Robots-Tag", ""):
        problems.append("X-Robots-Tag")
    return problems


def test_every_route_that_can_show_a_child_is_marked_private(app):
    routes = private_routes(app)
    endpoints = {route.endpoint for route in routes}
    assert {
        "sponsorship.waiting_children",
        "sponsorship.profile",
        "sponsorship.match_me",
        "sponsorship.choose",
        "sponsorship.portal",
        "sponsorship.portal_sponsorship",
        "updates.unsubscribe_page",
        "updates.preferences",
        "staff.safeguarding",
        "staff.review_item",
        "sponsorship_staff.overview",
        "main.impact",
    } <= endpoints
    assert [r.endpoint for r in routes if not is_kept_private(app, r.endpoint)] == []


def test_pages_about_children_are_never_stored_or_indexed_whoever_asks(
    app, import_feed, make_user, sponsor
):
    kids = load_children(app, import_feed, 5, updates=False)
    token = kids.tokens[0]
    routes = private_routes(app)
    staff = make_user(roles=("admin", "fundraiser", "safeguarding_officer"))
    clients = {"anonymous": app.test_client(), "sponsor": app.test_client()}
    sign_in(clients["sponsor"], sponsor().email)
    clients["staff"] = app.test_client()
    sign_in(clients["staff"], staff.email, totp_secret=staff.totp_secret)
    checked, problems = 0, []
    for who, client in clients.items():
        requests = [
            (method, route.url().replace("sample-token-value-123", token))
            for route in routes
            for method in sorted(route.methods)
        ]
        # The listing's filters and match-me's answers, with real released values.
        requests += [
            ("GET", "/sponsor?interest=drawing&age=9-11"),
            ("GET", "/sponsor/match?interest=drawing"),
            ("GET", f"/sponsor/{token}"),
            ("GET", "/sponsor/no-such-child-token-0123456789abcdef0123"),
        ]
        for method, url in requests:
            response = client.open(url, method=method)
            response.close()
            checked += 1
            problems += [
                (who, method, url, response.status_code, p) for p in header_problems(response)
            ]
        # A hold: the place is taken, then the page that sends the sponsor on (or refuses).
        form = {"csrf_token": csrf_token(client, "/account/sign-in"), "currency": "gbp"}
        response = client.post(f"/sponsor/{token}/choose", data=form)
        checked += 1
        problems += [
            (who, "POST", "choose", response.status_code, p) for p in header_problems(response)
        ]
    assert problems == []
    METRICS.report(
        "routes that can show a child (routes, responses) / missing no-store or noindex",
        f"{len(routes)}, {checked} / 0",
    )


def test_pages_about_nobody_stay_open_to_search_engines(client):
    for url in INDEXABLE:
        response = client.get(url)
        assert "X-Robots-Tag" not in response.headers, url
        assert "private" not in response.headers.get("Cache-Control", ""), url


def test_robots_txt_disallows_every_private_page_and_nothing_public(app, client):
    response = client.get("/robots.txt")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    robots = RobotFileParser()
    robots.parse(response.get_data(as_text=True).splitlines())
    crawlable = [
        route.url()
        for route in private_routes(app)
        if "GET" in route.methods and robots.can_fetch("*", route.url())
    ]
    assert crawlable == []
    for url in ("/sponsor", "/sponsor?age=9-11", "/sponsor/match?interest=drawing"):
        assert not robots.can_fetch("*", url), url
    for url in INDEXABLE:
        assert robots.can_fetch("*", url), url
