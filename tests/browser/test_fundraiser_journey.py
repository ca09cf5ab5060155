"""A fundraiser signs in with password and authenticator code, creates and publishes a
campaign, and watches its server-drawn thermometer move when a guest gives to it in another
window through the simulator's checkout and the real webhook."""

from __future__ import annotations

import time
from datetime import date

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from donorhub.campaigns.models import Campaign
from donorhub.donations.models import Donation, DonationStatus
from donorhub.extensions import db
from tests.browser.journeys import AuditedPages, in_app, settle_webhooks, sign_in
from tests.metrics import METRICS

pytestmark = pytest.mark.browser

# The app over real HTTP with a simulator that delivers webhooks (the giving journey's).

CAMPAIGN = "Safe Homes Winter Appeal"
PAGE_TEXT = """## Why now

Every **£25** keeps a girl in school for a month.

- beds in a safe home
- counselling
"""


def thermometer_reading(page) -> dict:
    """What the campaign's progress shows: the figures as text, the <progress> value, and
    the SVG thermometer's fill (its second rect: the first is the tube)."""
    progress = page.locator(".campaign-progress")
    svg = progress.get_by_role("img", name="Progress towards the goal")
    fill = svg.locator("rect").nth(1)
    return {
        "figures": progress.locator(".campaign-progress__figures").inner_text(),
        "progress": page.get_by_role("progressbar").get_attribute("value"),
        "fill_height": int(fill.get_attribute("height")),
        "fill_y": int(fill.get_attribute("y")),
        "description": svg.locator("desc").text_content(),
    }


def test_fundraiser_creates_a_campaign_and_sees_its_thermometer_move(
    giving_server, page, mailbox, axe, make_user, backend
):
    base_url, app, sim = giving_server
    fundraiser = make_user(
        "farah.fundraiser@example.org", name="Farah Fundraiser", roles=("fundraiser",)
    )
    assert fundraiser.totp_secret  # enrolled already: the sign-in asks for a code
    pages = AuditedPages(axe)
    started = time.monotonic()

    sign_in(
        page,
        base_url,
        pages,
        fundraiser.email,
        fundraiser.password,
        totp_secret=fundraiser.totp_secret,
    )
    expect(page.get_by_role("heading", name="Staff dashboard")).to_be_visible()
    page.get_by_role("navigation", name="Staff area").get_by_role("link", name="Campaigns").click()
    pages.check(page)
    page.get_by_role("link", name="New campaign").click()
    pages.check(page)
    page.get_by_label("Name").fill(CAMPAIGN)
    page.get_by_label("Address (after /campaigns/)").fill("winter-appeal")
    page.get_by_label("Summary").fill("Beds, school and counselling through the winter.")
    page.get_by_label("Page text").fill(PAGE_TEXT)
    page.get_by_label("Goal", exact=True).fill("500")
    page.get_by_label("Goal currency").select_option(label="Pounds (£)")
    page.get_by_label("Start date").fill(date.today().isoformat())
    page.get_by_label("Appeal code").fill("WINTER26")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Campaign created as a draft.")
    pages.check(page)
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status")).to_have_text("Campaign published.")
    pages.check(page)

    page.get_by_role("link", name="public page").click()
    expect(page.get_by_role("heading", name=CAMPAIGN, level=1)).to_be_visible()
    # The Markdown is rendered, not shown raw.
    expect(page.get_by_role("heading", name="Why now", level=2)).to_be_visible()
    expect(page.locator(".campaign__body strong")).to_have_text("£25")
    expect(page.get_by_role("listitem").filter(has_text="counselling")).to_be_visible()
    pages.check(page)
    before = thermometer_reading(page)
    # The tube is 150 px tall from y=10; an empty fill is the 6 px stub that meets the bulb.
    assert before == {
        "figures": "£0.00 raised of £500.00 · 0% · 0 donors",
        "progress": "0",
        "fill_height": 6,
        "fill_y": 160,
        "description": "£0.00 raised of a £500.00 goal: 0 percent.",
    }
    campaign_url = page.url

    # A guest (another window of the same browser, with no one signed in) gives £125.
    guest_context = page.context.browser.new_context()
    try:
        guest = guest_context.new_page()
        axe.watch(guest)
        guest.goto(campaign_url)
        pages.check(guest)
        guest.get_by_role("link", name=f"Give to {CAMPAIGN}").click()
        expect(guest.get_by_text(f"Your gift goes to {CAMPAIGN}.")).to_be_visible()
        expect(guest.get_by_text("Your gift goes to our general fund")).to_have_count(0)
        pages.check(guest)
        guest.get_by_label("Once", exact=True).check()
        guest.get_by_label("Another amount").check()
        guest.get_by_label("Your amount").fill("125")
        guest.get_by_label("Your name").fill("Gopal Guest")
        guest.get_by_label("Your e-mail address").fill("gopal.guest@example.org")
        guest.get_by_role("button", name="Continue to payment").click()
        guest.wait_for_url(sim.base_url + "/checkout/*")
        guest.get_by_role("button", name="Succeed").click()
        guest.wait_for_url(base_url + "/donate/thank-you*")
        settle_webhooks(sim)
        guest.reload()
        expect(guest.get_by_role("status")).to_contain_text("Your gift of £125.00 is confirmed")
        pages.check(guest)
    finally:
        guest_context.close()

    def campaign_gifts():
        campaign_id = db.session.scalar(select(Campaign.id).where(Campaign.slug == "winter-appeal"))
        return [
            (g.status, g.amount_minor)
            for g in db.session.scalars(select(Donation).where(Donation.campaign_id == campaign_id))
        ]

    assert in_app(app, campaign_gifts) == [(DonationStatus.PAID, 12500)]

    # The fundraiser reloads the public page: a quarter of the goal, a quarter of the tube.
    page.reload()
    pages.check(page)
    after = thermometer_reading(page)
    assert after == {
        "figures": "£125.00 raised of £500.00 · 25% · 1 donor",
        "progress": "25",
        "fill_height": 6 + 37,
        "fill_y": 160 - 37,
        "description": "£125.00 raised of a £500.00 goal: 25 percent.",
    }
    # The fill rose by raised/goal of the tube, to the whole pixel (150 × 125/500 = 37.5).
    rise = after["fill_height"] - before["fill_height"]
    assert rise == before["fill_y"] - after["fill_y"]
    assert abs(rise - 150 * 125 / 500) < 1

    # And the staff page of the campaign shows the same move, with the gift per currency.
    page.go_back()
    page.reload()
    expect(page.get_by_role("heading", name=CAMPAIGN, level=1)).to_be_visible()
    pages.check(page)
    assert thermometer_reading(page) == after
    expect(page.get_by_role("row", name="GBP £125.00")).to_be_visible()

    pages.assert_no_card_number()
    METRICS.report(
        f"browser: fundraiser creates and publishes a campaign → guest gives → "
        f"thermometer moves (s) [{backend}]",
        pages.summary(started),
    )
