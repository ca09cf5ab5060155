"""Page weight: the pages a new supporter lands on stay light and never call another origin.

With the demo data (`flask demo seed`: campaigns with gifts, about 60 released children),
each page is loaded cold (a fresh browser context, so nothing is cached) and every request
is added up: request and response headers and bodies as Chromium counted them. Each page
must stay under 100 KB in all and make no request outside the site's own origin (no
third-party scripts, fonts, pixels or analytics: DESIGN.md section 3).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from donorhub.campaigns.models import Campaign, CampaignStatus
from donorhub.extensions import db
from tests.browser.audits import AxeAudit, weigh_page
from tests.browser.test_axe_every_page import seed_demo
from tests.metrics import METRICS

pytestmark = pytest.mark.browser

LIMIT_KB = 100


def live_campaign_slug(app) -> str:
    with app.app_context():
        slug = db.session.scalar(
            select(Campaign.slug)
            .where(Campaign.status == CampaignStatus.LIVE)
            .order_by(Campaign.id)
        )
        db.session.remove()
    assert slug, "the demo data has a live campaign"
    return slug


@pytest.fixture
def landing_pages(live_server, browser) -> dict[str, str]:
    """The demo data, and the paths of the pages a new supporter lands on."""
    seed_demo(live_server.app)
    pages = {
        "donate": "/donate",
        "campaign": f"/campaigns/{live_campaign_slug(live_server.app)}",
        "sponsor list": "/sponsor",
    }
    context = browser.new_context()
    listing = context.new_page()
    listing.goto(live_server + "/sponsor")
    cards = listing.locator(".profile-card a[href^='/sponsor/']")
    assert cards.count() >= 20, "the demo data lists the released children"
    pages["child profile"] = cards.first.get_attribute("href")
    context.close()
    return pages


def test_public_pages_are_light_and_stay_on_our_origin(live_server, browser, landing_pages):
    pages = landing_pages
    weights = {}
    for name, path in pages.items():
        context = browser.new_context()  # a cold cache for each page
        weights[name] = weigh_page(context, live_server + path)
        context.close()
    for name, weight in weights.items():
        METRICS.report(
            f"8.3 page weight: {name} (KB / requests / off-origin)",
            f"{weight.kilobytes:.1f} / {len(weight.requests)} / {len(weight.off_origin)}",
        )
    for name, weight in weights.items():
        assert weight.off_origin == [], f"{name} called another origin: {weight.off_origin}"
        assert weight.failed == [], f"{name}: requests failed: {weight.failed}"
        assert len(weight.requests) >= 2, f"{name}: the page and its stylesheet at least"
        assert weight.kilobytes < LIMIT_KB, (
            f"{name} weighs {weight.kilobytes:.1f} KB: "
            + ", ".join(
                f"{url} {size} B" for url, size in sorted(weight.requests, key=lambda r: -r[1])
            )
        )


def test_public_pages_fit_a_phone_without_sideways_scrolling(live_server, browser, landing_pages):
    """At 375 CSS pixels wide (a small phone) nothing overflows sideways, and axe-core finds
    nothing serious in that layout either."""
    context = browser.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    audit = AxeAudit()
    audit.watch(page)
    overflowing = {}
    for name, path in landing_pages.items():
        page.goto(live_server + path)
        audit.check(page, f"375 px {name}")
        width = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        wide = page.evaluate("""() => [...document.querySelectorAll("main *")]
            .filter(el => el.getBoundingClientRect().right > innerWidth + 1)
            .map(el => el.tagName.toLowerCase() + (el.className ? "." + el.className : ""))
            .slice(0, 5)""")
        if width[0] > width[1] or wide:
            overflowing[name] = (width, wide)
    context.close()
    assert overflowing == {}, f"wider than the screen: {overflowing}"
    audit.verdict()
