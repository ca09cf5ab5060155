"""A newcomer's first visit in a real browser: register, confirm by e-mail, sign in and out."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from donorhub.mail.sender import send_due_mail
from tests.helpers import PASSWORD
from tests.metrics import METRICS

pytestmark = pytest.mark.browser


def deliver_mail(app):
    with app.app_context():
        return send_due_mail()


def test_register_verify_sign_in_sign_out(live_server, page, mailbox, axe):
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )

    page.goto(live_server + "/")
    axe.check(page)
    with page.expect_navigation():
        page.get_by_role("link", name="Create an account").first.click()
    axe.check(page)
    page.get_by_label("Your name").fill("Priti Browser")
    page.get_by_label("E-mail address").fill("browser.journey@example.org")
    page.get_by_label("Choose a password").fill(PASSWORD)
    page.get_by_label("Type the password again").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    axe.check(page)

    assert deliver_mail(live_server.app).sent == 1
    [mail] = mailbox.to("browser.journey@example.org")
    link = next(link for link in mail.links() if "/account/verify/" in link)
    assert link.startswith(live_server)
    page.goto(link)
    expect(page.get_by_text("your e-mail address is confirmed")).to_be_visible()
    axe.check(page)

    page.get_by_label("E-mail address").fill("browser.journey@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    axe.check(page)
    page.get_by_role("link", name="Your account").click()
    expect(page.get_by_role("heading", name="Your account", exact=True)).to_be_visible()
    axe.check(page)
    assert "not confirmed yet" not in page.content()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    axe.check(page)
    page.goto(live_server + "/account")
    assert urlparse(page.url).path == "/account/sign-in"
    axe.check(page)

    origin = urlparse(live_server).netloc
    off_origin = [
        url for url in requests if urlparse(url).netloc != origin and not url.startswith("data:")
    ]
    assert off_origin == []
    assert violations == []
    METRICS.report(
        "6.4 journey requests / off-origin / CSP violations on real pages",
        f"{len(requests)} / 0 / 0",
    )


def test_csp_stops_a_script_that_escaping_missed(live_server, page):
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    payload = (
        "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
    )
    page.goto(live_server + "/_testing/reflect?payload=" + payload.replace("#", "%23"))
    page.wait_for_timeout(200)
    assert page.title() == "reflect"
    assert len(violations) >= 1
    METRICS.report(
        "6.2 injected scripts executed / CSP violations logged", f"0 / {len(violations)}"
    )


def test_keyboard_reaches_the_sign_in_form_in_order(live_server, page, axe):
    page.goto(live_server + "/account/sign-in")
    axe.check(page)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    focused = []
    for _ in range(12):
        page.keyboard.press("Tab")
        focused.append(
            page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()")
        )
    email_at, password_at = focused.index("email"), focused.index("password")
    remember_at = focused.index("remember")
    assert email_at < password_at < remember_at
    assert "Sign in" in focused[remember_at + 1 :], "the submit button follows the fields"
