"""axe-core on every page of the app, as each kind of visitor sees it, with the demo data.

Anonymous visitors, a donor, a sponsor and each staff role sign in (staff with a real TOTP
code) and open every GET route their classification lets them reach. A route with
arguments is opened at a real URL found in a link on a page already shown to that visitor
(a campaign, a child's profile, a donor, a review item...), or, when no page links to one,
at the sample URL of tests/security/routes.py (which shows the "not found" or "this link no
longer works" page, itself a page people see). The `axe` fixture fails the test on any
serious or critical violation.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from donorhub.accounts.models import StaffRole, User
from donorhub.demo.cli import DEMO_PASSWORD, DEMO_STAFF
from donorhub.extensions import db
from donorhub.security import Access, view_access
from tests.helpers import current_totp
from tests.metrics import METRICS
from tests.security.routes import all_routes

pytestmark = pytest.mark.browser

#: Not pages: files, JSON and the liveness probe.
NOT_PAGES = {
    "static",
    "main.healthz",
    "accounts.my_data",
    "campaigns.campaign_api",
    "donations_staff.gift_aid_claim_file",
}
VISITORS = [
    ("anonymous", None),
    ("donor", "donor@demo.donorhub.invalid"),
    ("sponsor", "sponsor@demo.donorhub.invalid"),
    *[(role.value, email) for email, _name, role in DEMO_STAFF],
]


def seed_demo(app) -> dict[str, str]:
    """`flask demo seed` on the test's database; returns each staff e-mail's TOTP secret."""
    result = app.test_cli_runner().invoke(args=["demo", "seed"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        secrets = {
            u.email: u.totp_secret
            for u in db.session.scalars(select(User).where(User.totp_secret.is_not(None)))
        }
        db.session.remove()
    return secrets


def sign_in(page, axe, base_url: str, email: str, secret: str | None) -> None:
    page.goto(base_url + "/account/sign-in")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("load")
    if secret:
        axe.check(page)  # the two-factor page
        page.get_by_label("6-digit code").fill(current_totp(secret))
        page.get_by_role("button", name="Continue").click()
        page.wait_for_load_state("load")
    axe.check(page)
    assert page.get_by_role("button", name="Sign out").count() == 1, page.url


def reachable(app, endpoint: str, visitor: str) -> bool:
    access, roles = view_access(app, endpoint)
    if visitor == "anonymous":
        return access is Access.PUBLIC
    if access is Access.SIGNED_IN:
        return visitor in ("donor", "sponsor")  # staff see these too; audited once is enough
    if access is Access.STAFF:
        return visitor in roles
    return False


def harvest(page, base_url: str, adapter, found: dict[str, str]) -> None:
    """Remember the first same-origin link on the page to each endpoint."""
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    for url in (h.split("#", 1)[0] for h in hrefs if h.startswith(base_url + "/")):
        if "format=" in url:  # a download (CSV) of the page, not a page
            continue
        try:
            endpoint, _args = adapter.match(urlsplit(url).path, method="GET")
        except HTTPException:
            continue
        found.setdefault(endpoint, url)


@pytest.mark.slow  # about 90 s on an idle 2-core machine (60 pages, 6 visitors)
def test_every_page_for_every_visitor_has_no_serious_violation(live_server, page, axe):
    started = time.monotonic()
    app = live_server.app
    secrets = seed_demo(app)
    adapter = app.url_map.bind("127.0.0.1")
    routes = {
        r.endpoint: r for r in all_routes(app) if "GET" in r.methods and r.endpoint not in NOT_PAGES
    }
    real, sample, staff_done = set(), set(), set()
    for visitor, email in VISITORS:
        if email:
            sign_in(page, axe, live_server, email, secrets.get(email))
        # A staff page looks the same to each role that may open it: audit it once.
        todo = [e for e in routes if reachable(app, e, visitor) and e not in staff_done]
        if visitor in {role.value for role in StaffRole}:
            staff_done.update(todo)
        found: dict[str, str] = {}
        seen: set[str] = set()
        harvest(page, live_server, adapter, found)
        # Routes without arguments first, so their links supply the arguments of the rest.
        todo.sort(key=lambda e: "<" in routes[e].rule)
        for endpoint in todo:
            route = routes[endpoint]
            url = live_server + route.rule if "<" not in route.rule else found.get(endpoint)
            (real if url else sample).add(endpoint)
            url = url or live_server + route.url()
            if url in seen:
                continue
            seen.add(url)
            page.goto(url)
            axe.check(page, f"{visitor} {route.rule}")
            harvest(page, live_server, adapter, found)
        if email:
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_load_state("load")
            axe.check(page)
    moderate = sorted(
        {
            (v["id"], v["impact"], v["page"])
            for found in axe.audited.values()
            for v in found
            if v["impact"] not in ("serious", "critical")
        }
    )
    print("moderate/minor:", moderate, "only at sample URLs:", sorted(sample - real))
    METRICS.report(
        "8.2 axe every page: routes at real URLs / at sample URLs / pages / s",
        f"{len(real - sample)} / {len(sample - real)} / {len(axe.audited)} / "
        f"{time.monotonic() - started:.0f}",
    )
    assert len(real) >= 40, f"too few routes reached at real URLs: {sorted(real)}"


# Keyboard: the skip link, visible focus, and a gift made with the keyboard alone ------------

FOCUSED = """() => {
  const el = document.activeElement, style = getComputedStyle(el);
  return {id: el.id, tag: el.tagName.toLowerCase(), type: el.type || "",
          text: (el.textContent || "").trim(), checked: !!el.checked,
          outline: style.outlineStyle === "none" ? 0 : parseFloat(style.outlineWidth)};
}"""


def test_a_gift_can_be_made_with_the_keyboard_alone(giving_server, page, axe):
    base_url, _app, sim = giving_server
    page.goto(base_url + "/donate")
    axe.check(page)
    page.keyboard.press("Tab")
    skip = page.evaluate(FOCUSED)
    assert skip["text"] == "Skip to main content" and skip["outline"] >= 2, skip
    page.keyboard.press("Enter")
    assert page.evaluate(FOCUSED)["id"] == "main", "the skip link moves focus to the content"
    path, unseen_focus = [], []
    for _ in range(60):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        path.append(focused["id"] or focused["text"])
        if focused["outline"] < 2:
            unseen_focus.append(path[-1])
        if focused["id"] == "frequency-monthly":
            page.keyboard.press("ArrowUp")  # arrows move within a radio group
            assert page.evaluate(FOCUSED)["id"] == "frequency-once"
            assert page.get_by_label("Once").is_checked()
        elif (
            focused["id"].startswith("amount-")
            and not page.get_by_label("Another amount").is_checked()
        ):
            while page.evaluate(FOCUSED)["id"] != "amount-custom":
                page.keyboard.press("ArrowDown")
            assert page.get_by_label("Another amount").is_checked()
        elif focused["id"] == "custom_amount":
            page.keyboard.type("12.50")
        elif focused["id"] == "cover_fees":
            page.keyboard.press("Space")
            assert page.get_by_label(
                "Add a little to cover the card fees", exact=False
            ).is_checked()
        elif focused["id"] == "full_name":
            page.keyboard.type("Kavya Keyboard")
        elif focused["id"] == "email":
            page.keyboard.type("kavya@example.org")
        elif focused["text"] == "Continue to payment":
            assert unseen_focus == [], f"focus not visible on {unseen_focus}"
            with page.expect_navigation():
                page.keyboard.press("Enter")
            break
    else:
        raise AssertionError(f"Tab never reached the submit button: {path}")
    assert page.url.startswith(sim.base_url + "/checkout/"), page.url
    charged = re.findall(r"£(\d+\.\d\d)", page.inner_text("main"))
    assert charged and 12.50 < float(charged[0]) < 13.50, f"£12.50 plus the fees: {charged}"
    assert path.index("full_name") < path.index("email") < path.index("Continue to payment")


def test_form_errors_are_audited_and_each_one_leads_to_its_field(live_server, page, axe):
    """The error summary (templates/_macros/forms.html) names every problem, and each of its
    links takes the keyboard's focus to the field to mend."""
    page.goto(live_server + "/donate")
    axe.check(page)
    page.get_by_label("Your name").fill("Esha Errors")
    page.get_by_label("Your e-mail address").fill("esha@example.org")
    page.get_by_label("Yes, I want to Gift Aid my donations").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Continue to payment").click()
    summary = page.get_by_role("alert").filter(has_text="Please check the form")
    assert summary.count() == 1
    axe.check(page)
    targets = summary.locator("a").evaluate_all("links => links.map(a => a.hash.slice(1))")
    assert len(targets) >= 3, targets  # first name, last name, house, postcode, confirmation
    missing = page.evaluate("ids => ids.filter(id => !document.getElementById(id))", targets)
    assert missing == [], f"error links to no field: {missing}"
    summary.locator("a").first.focus()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == targets[0]
    field = page.locator(f"#{targets[0]}")
    assert field.get_attribute("aria-invalid") == "true"
    described = field.get_attribute("aria-describedby") or ""
    assert any(page.locator(f"#{ref}").inner_text().strip() for ref in described.split()), (
        "the field's error message is tied to it for screen readers"
    )
