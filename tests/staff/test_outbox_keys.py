"""Staff never read a link that acts as a key in the production outbox: a donor's plan
management link, a Gift Aid confirmation, an unsubscribe link, a reset or sign-in link."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import jinja2
from sqlalchemy import select

from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.mail.services import queue_mail
from donorhub.urls import external_url
from tests.helpers import PASSWORD, current_totp
from tests.metrics import METRICS
from tests.security.test_routes_and_headers import ProductionLikeConfig

EMAILS = Path(__file__).resolve().parents[2] / "templates" / "emails"
BASE = "https://localhost"
#: The link each template variable carries in real mail: the key-like ones and plain ones.
KEY_LINKS = {
    "manage_url": ("donations.manage", "token"),
    "gift_aid_confirm_url": ("donations.confirm_gift_aid", "token"),
    "unsubscribe_url": ("updates.unsubscribe_page", "token"),
    "reset_url": ("accounts.reset_password", "token"),
    "verify_url": ("accounts.verify_email", "token"),
    "invitation_url": ("accounts.accept_invitation", "token"),
    "confirm_url": ("accounts.confirm_email_change", "token"),
    "portal_url": ("sponsorship.portal_sponsorship", "token"),
}
PLAIN_LINKS = {
    "donate_url": "donations.donate",
    "history_url": "donations.history",
    "sign_in_url": "accounts.sign_in",
    "preferences_url": "accounts.settings",
}


class Blank(jinja2.ChainableUndefined):
    """A variable the test does not supply: empty, whatever is done with it."""

    def __call__(self, *args, **kwargs):
        return self


def templates() -> list[str]:
    return sorted(
        str(path.relative_to(EMAILS).with_suffix(""))
        for path in EMAILS.glob("*/*.txt")
        if not path.name.startswith("_")
    )


def staff_client(app, user):
    client = app.test_client()
    page = client.get(f"{BASE}/account/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))[1]
    client.post(
        f"{BASE}/account/sign-in",
        headers={"Referer": BASE + "/"},
        data={"csrf_token": token, "email": user.email, "password": PASSWORD},
    )
    page = client.get(f"{BASE}/account/two-factor")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))[1]
    client.post(
        f"{BASE}/account/two-factor",
        headers={"Referer": BASE + "/"},
        data={"csrf_token": token, "code": current_totp(user.totp_secret)},
    )
    return client


def test_no_key_from_any_mail_appears_on_the_production_outbox_pages(app_factory, make_user):
    app = app_factory(
        ProductionLikeConfig,
        SECRET_KEY="x" * 40,
        TESTING=True,
        RATELIMIT_STORAGE_URI="memory://",
        MAIL_DELIVERY="smtp",
        PUBLIC_BASE_URL="https://give.example.org",
    )
    admin = make_user(roles=("admin",))
    keys: list[str] = []
    names = templates()
    with app.app_context(), app.test_request_context("/"):
        # Every template, with every link it may carry; variables a template needs but this
        # test does not know render as empty.
        app.jinja_env.undefined = Blank
        for name in names:
            context = {}
            for variable, (endpoint, argument) in KEY_LINKS.items():
                key = secrets.token_urlsafe(24)
                keys.append(key)
                context[variable] = external_url(endpoint, **{argument: key})
            for variable, endpoint in PLAIN_LINKS.items():
                context[variable] = external_url(endpoint)
            unsubscribe = secrets.token_urlsafe(24)
            keys.append(unsubscribe)
            queue_mail(
                "donor@example.org",
                name,
                subject=f"About {name}",
                headers={
                    "List-Unsubscribe": "<"
                    + external_url("updates.unsubscribe", token=unsubscribe)
                    + ">"
                },
                **context,
            )
        # A message stored unmarked (before the marking existed) with a key in its text.
        older = secrets.token_urlsafe(24)
        keys.append(older)
        db.session.add(
            OutboxMessage(
                recipient="donor@example.org",
                subject="Thank you",
                template="donations/receipt",
                text_body="Manage your gift: " + external_url("donations.manage", token=older),
                headers={},
                is_sensitive=False,
                message_id="<older@example.org>",
            )
        )
        db.session.commit()
        stored = db.session.scalars(select(OutboxMessage)).all()
        carrying = [
            m
            for m in stored
            if any(k in (m.text_body or "") + (m.html_body or "") + str(m.headers) for k in keys)
        ]
        marked = {m.template for m in stored if m.is_sensitive}
        ids = [m.id for m in stored]
        db.session.remove()
    app.jinja_env.undefined = jinja2.Undefined
    # Receipts and every other mail with a key are marked sensitive when queued.
    assert {"donations/receipt", "updates/new_update", "accounts/reset"} <= marked
    assert len(carrying) >= len(names)
    client = staff_client(app, admin)
    pages = [f"{BASE}/staff/outbox"] + [f"{BASE}/staff/outbox/{i}" for i in ids]
    seen = []
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        seen += [(url, key) for key in keys if key in page]
    assert seen == []
    older_page = client.get(f"{BASE}/staff/outbox/{ids[-1]}").get_data(as_text=True)
    assert "/donate/manage/[hidden]" in older_page  # readable, with the key hidden
    METRICS.report(
        "14.2 outbox: mail templates rendered with keys / keys shown to staff (production)",
        f"{len(names)} / 0",
    )
