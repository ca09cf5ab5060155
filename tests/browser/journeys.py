"""Shared pieces of the donor and fundraiser journeys (which run on the `giving_server`
fixture, tests/browser/conftest.py): waiting for the simulator's webhooks to land, reading
the database and the simulator's subscriptions, delivering mail over real SMTP, signing in
through the browser, and the check that no page or mail shows a card number."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import stripe

from donorhub.extensions import db
from donorhub.mail.sender import send_due_mail
from tests.helpers import current_totp

__all__ = [
    "wait_for",
    "settle_webhooks",
    "deliver_mail",
    "in_app",
    "subscription",
    "sign_in",
    "assert_no_card_number",
    "AuditedPages",
]

# The simulator's checkout pays with Visa 4242 4242 4242 4242 (its portal offers 4444 and
# 0341 too): neither the whole number nor its last four digits may reach our pages or mail.
SIMULATOR_CARD_DIGITS = ("4242", "4444", "0341")
# A run of 13 to 19 digits (spaces or hyphens allowed between them) standing on its own, as
# a card number is written; our hexadecimal ids and receipt numbers are not such runs.
CARD_NUMBER = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")


def wait_for(predicate, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def settle_webhooks(sim, timeout: float = 30) -> list[dict]:
    """Wait until the simulator has delivered every event it created, and fail if one was
    refused: the webhook is the source of truth, so a step is done only when it has landed;
    then until the event worker has applied every stored event that is due (the app is the
    one giving_server put beside the simulator)."""

    def deliveries():
        url = sim.base_url + "/_sim/deliveries"
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback only
            rows = json.load(answer)["deliveries"]
        failed = [row for row in rows if row["delivery"] == "failed"]
        assert not failed, f"webhooks refused by the app: {failed}"
        return rows if all(row["delivery"] == "delivered" for row in rows) else None

    delivered = wait_for(deliveries, timeout)
    app = getattr(sim, "donorhub_app", None)
    if app is not None:
        from sqlalchemy import func, select

        from donorhub.database import utcnow
        from donorhub.payments.models import PENDING_STATES, StripeEvent

        def applied():
            due = in_app(
                app,
                lambda: db.session.scalar(
                    select(func.count())
                    .select_from(StripeEvent)
                    .where(
                        StripeEvent.state.in_(PENDING_STATES),
                        StripeEvent.next_attempt_at <= utcnow(),
                    )
                ),
            )
            return due == 0

        wait_for(applied, timeout)
    return delivered


def in_app(app, read):
    """Run `read()` inside the app (a fresh session each time, so it sees other threads'
    commits) and return what it returns."""
    with app.app_context():
        try:
            return read()
        finally:
            db.session.remove()


def deliver_mail(app) -> None:
    """Send what the outbox holds, through the real SMTP server (the jobs process's work)."""
    in_app(app, send_due_mail)


def subscription(sim, subscription_id: str) -> dict:
    """The subscription as the simulator (our Stripe) holds it, read with the stripe library."""
    client = stripe.StripeClient("sk_test_journeys", base_addresses={"api": sim.base_url})
    return client.v1.subscriptions.retrieve(subscription_id).to_dict()


def sign_in(
    page,
    base_url: str,
    pages: AuditedPages,
    email: str,
    password: str,
    totp_secret: str | None = None,
) -> None:
    """Sign in as a person does: the form, and for staff the code from their authenticator
    app. Every page shown is audited."""
    page.goto(base_url + "/account/sign-in")  # the header's "Sign in" link, on every page
    pages.check(page)
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    if totp_secret is not None:
        page.wait_for_url("**/account/two-factor")
        pages.check(page)
        page.get_by_label("6-digit code").fill(current_totp(totp_secret))
        page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Sign out").wait_for()
    pages.check(page)


def assert_no_card_number(text: str, where: str) -> None:
    """`text` is what a person reads: a page's visible text, or a mail without its links
    (whose random tokens could hold any four digits)."""
    text = re.sub(r"https?://\S+", "", text)
    found = CARD_NUMBER.findall(text) + [
        digits for digits in SIMULATOR_CARD_DIGITS if re.search(rf"(?<!\d){digits}(?!\d)", text)
    ]
    assert not found, f"{where} shows card digits: {found}"


class AuditedPages:
    """axe-core on every page shown (the `axe` fixture), keeping what each page said so the
    journey can check them all at the end."""

    def __init__(self, axe) -> None:
        self.axe = axe
        self.texts: list[tuple[str, str]] = []
        self.seconds = 0.0  # spent in axe-core: most of a journey on a busy machine

    def check(self, page) -> None:
        started = time.monotonic()
        self.axe.check(page)
        self.seconds += time.monotonic() - started
        self.texts.append((page.url, page.inner_text("body")))

    def summary(self, started: float) -> str:
        """The journey's wall time, and how much of it axe-core took."""
        return (
            f"{time.monotonic() - started:.1f} (axe-core {self.seconds:.1f} over "
            f"{len(self.texts)} pages)"
        )

    def assert_no_card_number(self) -> None:
        assert self.texts, "no page was audited"
        for url, text in self.texts:
            assert_no_card_number(text, url)
