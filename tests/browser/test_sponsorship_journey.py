"""A sponsor's journey in a real browser: browse the waiting children, "Match me", accept the
code of conduct, pay on the simulator's checkout page (webhooks delivered by the simulator),
and see the child's profile and updates in the portal."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from donorhub.extensions import db
from donorhub.sponsorship.models import Sponsorship, SponsorshipStatus
from tests.browser.journeys import wait_for
from tests.helpers import PASSWORD
from tests.metrics import METRICS
from tests.sponsorship.helpers import load_children

pytestmark = pytest.mark.browser


def sponsorship_status(app):
    with app.app_context():
        status = db.session.scalar(select(Sponsorship.status))
        db.session.remove()
        return status


def test_browse_match_accept_pay_and_read_the_portal(
    giving_server, page, make_user, import_feed, axe
):
    base_url, app, sim = giving_server
    kids = load_children(app, import_feed, 5)
    user = make_user("sita@example.org")
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    started = time.monotonic()
    page.goto(base_url + "/account/sign-in")
    axe.check(page)
    page.get_by_label("E-mail address").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    axe.check(page)
    page.goto(base_url + "/sponsor")
    assert page.locator(".profile-card").count() == 5
    axe.check(page)
    page.get_by_role("button", name="Match me").click()
    # One of the children who fit, at random within the longest-waiting band.
    longest_waiting = page.locator("h1").inner_text().strip()
    assert longest_waiting in kids.aliases
    assert "have waited longest for a sponsor" in page.content()
    axe.check(page)
    page.get_by_role("button", name=f"Sponsor {longest_waiting}").click()
    # First time: the code of conduct, then back to the profile.
    expect(page.get_by_role("heading", name="Our code of conduct for sponsors")).to_be_visible()
    axe.check(page)
    page.get_by_label("I have read the code of conduct and I will keep to it").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Accept and continue").click()
    expect(page.get_by_role("button", name=f"Sponsor {longest_waiting}")).to_be_visible()
    axe.check(page)
    page.get_by_role("button", name=f"Sponsor {longest_waiting}").click()
    assert page.url.startswith(sim.base_url + "/checkout/")
    assert "£25.00" in page.content() and "Monthly sponsorship" in page.content()
    assert longest_waiting not in page.content()
    page.get_by_role("button", name="Succeed").click()
    page.wait_for_url(base_url + "/my/sponsorships*")
    wait_for(lambda: sponsorship_status(app) is SponsorshipStatus.ACTIVE)
    page.reload()
    axe.check(page)
    page.get_by_role("link", name=longest_waiting, exact=True).click()
    expect(page.get_by_role("heading", name=f"My sponsorship of {longest_waiting}")).to_be_visible()
    axe.check(page)
    content = page.content()
    assert f"{longest_waiting} passed the term exams." in content
    assert "She read a whole book to her class." in content
    assert "Active: £25.00 a month." in content
    assert kids.tokens[kids.aliases.index(longest_waiting)] not in content
    assert violations == []
    METRICS.report(
        "browser: browse → match me → code of conduct → pay → portal (s)",
        f"{time.monotonic() - started:.1f}",
    )
