"""A guest gives £25 a month in a real browser through the simulator's checkout page, reads
the receipt from the real SMTP server and cancels with the link in it, without signing in."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from donorhub.donations.models import PlanStatus, RecurringPlan
from donorhub.extensions import db
from donorhub.mail.sender import send_due_mail
from tests.browser.journeys import wait_for
from tests.metrics import METRICS

pytestmark = pytest.mark.browser


def plan_status(app):
    with app.app_context():
        status = db.session.scalar(select(RecurringPlan.status))
        db.session.remove()
        return status


def test_guest_gives_monthly_reads_receipt_and_cancels_from_it(giving_server, page, mailbox, axe):
    base_url, app, sim = giving_server
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    started = time.monotonic()
    page.goto(base_url + "/donate")
    axe.check(page)
    page.get_by_label("Every month").check()
    page.get_by_label("£25.00").check()
    page.get_by_label("Your name").fill("Bina Browser")
    page.get_by_label("Your e-mail address").fill("bina@example.org")
    page.get_by_role("button", name="Continue to payment").click()
    assert page.url.startswith(sim.base_url + "/checkout/")
    assert "£25.00" in page.content()
    page.get_by_role("button", name="Succeed").click()
    page.wait_for_url(base_url + "/donate/thank-you*")
    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    wait_for(lambda: plan_status(app) is PlanStatus.ACTIVE)
    page.reload()
    assert "is confirmed" in page.content()
    axe.check(page)

    def receipts():
        with app.app_context():  # the receipt comes with invoice.paid, maybe a moment later
            send_due_mail()
            db.session.remove()
        return [m for m in mailbox.to("bina@example.org") if "receipt" in m.subject]

    receipt = wait_for(receipts)[0]
    assert "£25.00" in receipt.text and "Receipt number:" in receipt.text
    link = next(link for link in receipt.links() if "/donate/manage/" in link)
    assert link.startswith(base_url)
    page.goto(link)
    axe.check(page)
    page.get_by_role("button", name="Cancel my gift").click()
    expect(page.get_by_role("heading", name="Your regular gift is cancelled")).to_be_visible()
    axe.check(page)
    wait_for(lambda: plan_status(app) is PlanStatus.CANCELLED)
    page.goto(link)
    assert "This link no longer works" in page.content()
    axe.check(page)
    assert violations == []
    METRICS.report(
        "browser: guest monthly gift → receipt → cancel from link (s)",
        f"{time.monotonic() - started:.1f}",
    )
