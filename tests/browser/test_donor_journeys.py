"""Donors in a real browser, through the simulator's checkout page, the real webhook and the
real SMTP server:

- a guest gives once with Gift Aid: the gift is paid exactly once (even when every webhook
  arrives twice), one receipt with the right amount, and no card digits anywhere;
- a registered donor gives monthly, then from their account changes the amount, pauses,
  resumes and cancels: after each step the database, Stripe (the simulator) and the mail
  agree with what the page said.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from donorhub.donations.models import (
    Donation,
    DonationKind,
    DonationStatus,
    GiftAidDeclaration,
    PlanStatus,
    Receipt,
    RecurringPlan,
)
from donorhub.extensions import db
from tests.browser.journeys import (
    AuditedPages,
    assert_no_card_number,
    deliver_mail,
    in_app,
    settle_webhooks,
    sign_in,
    subscription,
)
from tests.metrics import METRICS

pytestmark = pytest.mark.browser

# The app over real HTTP with a simulator that delivers webhooks (the giving journey's).


def resend_every_event(sim) -> int:
    """Stripe may deliver any event more than once: have the simulator send them all again."""
    events = settle_webhooks(sim)
    for event in events:
        request = urllib.request.Request(  # noqa: S310 - the loopback simulator
            f"{sim.base_url}/_sim/events/{event['id']}/resend", method="POST", data=b""
        )
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            json.load(answer)
    return len(events)


def gift_facts(app) -> dict:
    def read():
        gifts = db.session.scalars(select(Donation)).all()
        return {
            "gifts": [
                (
                    g.kind,
                    g.status,
                    g.amount_minor,
                    g.currency,
                    g.gift_aid_declaration_id is not None,
                )
                for g in gifts
            ],
            "receipts": db.session.scalar(select(func.count()).select_from(Receipt)),
            "declarations": db.session.scalars(select(GiftAidDeclaration.postcode)).all(),
        }

    return in_app(app, read)


def test_guest_gives_once_with_gift_aid_paid_once_receipted_once(
    giving_server, page, mailbox, axe, backend
):
    base_url, app, sim = giving_server
    pages = AuditedPages(axe)
    started = time.monotonic()

    page.goto(base_url + "/")
    pages.check(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Give").click()
    pages.check(page)
    page.get_by_label("Once", exact=True).check()
    page.get_by_label("Another amount").check()
    page.get_by_label("Your amount").fill("40.00")
    page.get_by_label("Your name").fill("Gita Guest")
    page.get_by_label("Your e-mail address").fill("gita.guest@example.org")
    page.get_by_label("Yes, I want to Gift Aid my donations").check()
    page.get_by_label("First name").fill("Gita")
    page.get_by_label("Last name").fill("Guest")
    page.get_by_label("House name or number").fill("12")
    page.get_by_label("Postcode").fill("SW1A 1AA")
    page.get_by_label("I am a UK taxpayer and I have read the declaration above").check()
    page.get_by_role("button", name="Continue to payment").click()

    # Stripe's page (the simulator's): not ours to audit, but it must ask for what we asked.
    page.wait_for_url(sim.base_url + "/checkout/*")
    expect(page.get_by_text("£40.00").first).to_be_visible()
    page.get_by_role("button", name="Succeed").click()
    page.wait_for_url(base_url + "/donate/thank-you*")
    settle_webhooks(sim)
    page.reload()
    expect(page.get_by_role("status")).to_contain_text("Your gift of £40.00 is confirmed")
    pages.check(page)

    one_paid_gift = {
        "gifts": [(DonationKind.ONCE, DonationStatus.PAID, 4000, "gbp", True)],
        "receipts": 1,
        "declarations": ["SW1A 1AA"],
    }
    assert gift_facts(app) == one_paid_gift
    # Every webhook delivered a second time changes nothing: one gift, paid, one receipt.
    assert resend_every_event(sim) >= 2
    settle_webhooks(sim)
    assert gift_facts(app) == one_paid_gift

    deliver_mail(app)
    mails = mailbox.to("gita.guest@example.org")
    assert [m.subject for m in mails if "receipt" in m.subject.lower()] == [mails[0].subject]
    receipt = mails[0]
    assert "Amount: £40.00" in receipt.text
    assert "Receipt number:" in receipt.text
    assert "Gift Aid: yes" in receipt.text
    for mail in mails:
        assert_no_card_number(mail.text, f"mail {mail.subject!r}")
        html = mail.message.get_body(preferencelist=("html",))
        if html is not None:
            assert_no_card_number(html.get_content(), f"mail {mail.subject!r} (HTML)")
    pages.assert_no_card_number()
    METRICS.report(
        f"browser: guest one-off gift with Gift Aid → paid once → receipt (s) [{backend}]",
        pages.summary(started),
    )


# A registered donor's monthly gift: change, pause, resume, cancel ----------------------------


def plan_facts(app) -> dict:
    def read():
        plan = db.session.scalars(select(RecurringPlan)).one()
        return {
            "status": plan.status,
            "amount_minor": plan.amount_minor,
            "pending_amount_minor": plan.pending_amount_minor,
            "paused": plan.paused,
            "subscription": plan.stripe_subscription_id,
        }

    return in_app(app, read)


def new_mail(app, mailbox, address: str, seen: int) -> list:
    """Mail that reached the SMTP server for `address` since `seen` messages."""
    deliver_mail(app)
    return mailbox.to(address)[seen:]


def test_signed_in_donor_changes_pauses_resumes_and_cancels_a_monthly_gift(
    giving_server, page, mailbox, axe, make_user, backend
):
    base_url, app, sim = giving_server
    donor = make_user("meera.monthly@example.org", name="Meera Monthly")
    pages = AuditedPages(axe)
    started = time.monotonic()

    sign_in(page, base_url, pages, donor.email, donor.password)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Give").click()
    pages.check(page)
    expect(page.get_by_label("Your name")).to_have_value("Meera Monthly")
    expect(
        page.get_by_text("We will send your receipt to meera.monthly@example.org")
    ).to_be_visible()
    page.get_by_label("Every month").check()
    page.get_by_label("£10.00", exact=True).check()
    page.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url(sim.base_url + "/checkout/*")
    page.get_by_role("button", name="Succeed").click()
    page.wait_for_url(base_url + "/donate/thank-you*")
    settle_webhooks(sim)
    page.reload()
    expect(page.get_by_role("status")).to_contain_text(
        "Your regular gift of £10.00 every month is confirmed"
    )
    pages.check(page)

    facts = plan_facts(app)
    assert facts["status"] is PlanStatus.ACTIVE and facts["amount_minor"] == 1000
    sub_id = facts["subscription"]
    assert subscription(sim, sub_id)["status"] == "active"
    [receipt] = new_mail(app, mailbox, donor.email, 0)
    assert "receipt" in receipt.subject.lower() and "Amount: £10.00" in receipt.text
    seen = 1

    # To the plan by the links a person follows (the thank-you page links "your gifts").
    page.get_by_role("link", name="your gifts").click()
    expect(page.get_by_role("heading", name="Your gifts")).to_be_visible()
    pages.check(page)
    page.get_by_role("link", name="Change, pause or stop the monthly gift of £10.00").click()
    expect(page.get_by_role("heading", name="Your regular gift")).to_be_visible()
    pages.check(page)

    # 1. A new amount: the page, our record, Stripe's subscription and the mail all say £15.
    page.get_by_label("Amount (GBP)").fill("15.00")
    page.get_by_role("button", name="Save the change").click()
    expect(page.get_by_role("status")).to_have_text("Your regular gift is changed.")
    expect(page.get_by_text("£15.00 every month")).to_be_visible()
    pages.check(page)
    settle_webhooks(sim)
    facts = plan_facts(app)
    assert (facts["status"], facts["amount_minor"], facts["pending_amount_minor"]) == (
        PlanStatus.ACTIVE,
        1500,
        None,
    )
    item = subscription(sim, sub_id)["items"]["data"][0]
    assert (item["price"]["unit_amount"], item["price"]["recurring"]["interval"]) == (1500, "month")
    [changed] = new_mail(app, mailbox, donor.email, seen)
    seen += 1
    assert changed.subject == "Your regular gift is changed"
    assert "now £15.00 every month" in changed.text

    # 2. Pause: Stripe stops collecting (invoices voided), the mail says so.
    page.get_by_role("button", name="Pause my gift").click()
    expect(page.get_by_role("status")).to_have_text(
        "Your regular gift is paused. Nothing more will be taken until you resume."
    )
    expect(page.get_by_text("Paused: nothing is being taken")).to_be_visible()
    pages.check(page)
    settle_webhooks(sim)
    facts = plan_facts(app)
    assert (facts["status"], facts["paused"]) == (PlanStatus.PAUSED, True)
    assert subscription(sim, sub_id)["pause_collection"]["behavior"] == "void"
    [paused] = new_mail(app, mailbox, donor.email, seen)
    seen += 1
    assert paused.subject == "Your regular gift is paused"
    assert "monthly gift of £15.00 is paused" in paused.text

    # 3. Resume (the page offers it while paused): Stripe collects again.
    page.get_by_role("button", name="Resume my gift").click()
    expect(page.get_by_role("status")).to_have_text("Your regular gift is running again.")
    expect(page.get_by_role("button", name="Pause my gift")).to_be_visible()
    pages.check(page)
    settle_webhooks(sim)
    facts = plan_facts(app)
    assert (facts["status"], facts["paused"]) == (PlanStatus.ACTIVE, False)
    assert subscription(sim, sub_id)["pause_collection"] is None
    seen += len(new_mail(app, mailbox, donor.email, seen))

    # 4. Cancel: Stripe's subscription ends now; one mail, not a second "ended" one.
    page.get_by_role("button", name="Cancel my gift").click()
    expect(page.get_by_role("status")).to_have_text(
        "Your regular gift is cancelled. Nothing more will be taken."
    )
    expect(page.get_by_text("This regular gift has stopped.")).to_be_visible()
    expect(page.get_by_role("button", name="Pause my gift")).to_have_count(0)
    pages.check(page)
    settle_webhooks(sim)
    assert plan_facts(app)["status"] is PlanStatus.CANCELLED
    assert subscription(sim, sub_id)["status"] == "canceled"
    cancelled = new_mail(app, mailbox, donor.email, seen)
    assert [m.subject for m in cancelled] == ["Your regular gift is cancelled"]
    assert "monthly gift of £15.00 is cancelled" in cancelled[0].text

    # The history (reached from the account page) shows it stopped, with no link to change it.
    page.get_by_role("link", name="Your account").click()
    pages.check(page)
    page.get_by_role("link", name="Your gifts and receipts").click()
    expect(page.get_by_role("cell", name="Cancelled")).to_be_visible()
    expect(page.get_by_role("link", name="Change, pause or stop")).to_have_count(0)
    pages.check(page)

    for mail in mailbox.to(donor.email):
        assert_no_card_number(mail.text, f"mail {mail.subject!r}")
    pages.assert_no_card_number()
    METRICS.report(
        f"browser: signed-in monthly gift → change → pause → resume → cancel (s) [{backend}]",
        pages.summary(started),
    )
