"""XSS payloads typed by staff into every free-text field render inert on every page that shows
them, staff and public, signed in or not.

Fields typed by staff: campaign name, summary, body (Markdown), slug and appeal code (refused by
their patterns), offline gift donor name, e-mail (refused) and reference, refund note, donor
note, exchange rate (refused). Each payload goes in through the real forms; then every page is
parsed: no script/iframe/object/embed element, no on* attribute, no javascript: URL may come
out of them, and "{{7*7}}" must come out literally where the field is shown.
"""

from __future__ import annotations

import re
import secrets
from html.parser import HTMLParser

from markupsafe import escape
from sqlalchemy import select

from donorhub.campaigns.models import Campaign
from donorhub.donations.models import Donation, Donor
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from tests.campaigns.test_campaigns import XSS, form_for, staff_client
from tests.helpers import csrf_token, sign_in
from tests.metrics import METRICS

PAYLOADS = [
    *XSS,
    "' onmouseover='alert(1)",
    '" autofocus onfocus="alert(1)',
    "<body onload=alert(1)>",
    "<a href=' javascript:alert(1)'>x</a>",
    "<math><a xlink:href=javascript:alert(1)>m</a></math>",
]


#: Attributes whose value a browser follows or loads as a URL (a form field's value is text).
URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "xlink:href",
    "data",
    "poster",
    "background",
    "srcdoc",
    "ping",
    "lowsrc",
    "dynsrc",
    "cite",
}

BAD_SCHEMES = ("javascript:", "vbscript:", "data:text/html")


class Inertness(HTMLParser):
    """Collects every executable construct of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "iframe", "object", "embed", "frame", "base"):
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"{tag} {name}=")
            cleaned = re.sub(r"[\x00-\x20]", "", value or "").lower()
            if name in URL_ATTRIBUTES and cleaned.startswith(BAD_SCHEMES):
                self.problems.append(f"{tag} {name}={value}")

    handle_startendtag = handle_starttag


def executable(body: str) -> list[str]:
    parser = Inertness()
    parser.feed(body)
    problems = parser.problems
    if "<script" in body.lower():
        problems.append("<script")
    return problems


def shown(payload: str) -> str:
    """How a plain-text field must appear: HTML-escaped, otherwise unchanged."""
    return str(escape(payload))


def test_xss_payloads_in_every_staff_field_render_inert_everywhere(app, make_user):
    admin, _ = staff_client(app, make_user, "admin")
    donor_user = make_user("x0@example.org", name="Donor Account")
    made = []  # (n, payload, campaign id, slug, donor id)
    refused = 0
    for n, payload in enumerate(PAYLOADS):
        slug = f"x-{n}"
        token = csrf_token(admin, "/staff/campaigns/new")
        response = admin.post(
            "/staff/campaigns/new",
            data={
                **form_for(slug=slug, appeal_code=f"X{n}"),
                "name": payload[:120],
                "summary": payload,
                "body_md": payload,
                "csrf_token": token,
            },
        )
        assert response.status_code == 302, payload
        cid = int(response.headers["Location"].rsplit("/", 1)[1])
        admin.post(
            f"/staff/campaigns/{cid}/publish",
            data={"csrf_token": csrf_token(admin, f"/staff/campaigns/{cid}")},
        )
        # fields whose patterns refuse the payload: the refusal page echoes it inertly
        for change in ({"appeal_code": payload}, {"slug": payload}):
            token = csrf_token(admin, "/staff/campaigns/new")
            response = admin.post(
                "/staff/campaigns/new",
                data={
                    **form_for(slug=f"y-{n}", appeal_code=f"Y{n}"),
                    **change,
                    "csrf_token": token,
                },
            )
            assert response.status_code == 422, change
            assert executable(response.get_data(as_text=True)) == [], change
            refused += 1
        response = admin.post(
            "/staff/rates",
            data={
                "currency": "inr",
                "rate": payload[:24],
                "csrf_token": csrf_token(admin, "/staff/rates"),
            },
        )
        assert response.status_code == 422 and executable(response.get_data(as_text=True)) == []
        refused += 1
        # an offline gift: the donor's name and the reference are typed by staff
        page = admin.get("/staff/gifts/offline").get_data(as_text=True)
        key = page.split('name="entry_key" value="')[1][:32]
        form = {
            "email": f"x{n}@example.org",
            "full_name": payload,
            "amount": "20.00",
            "currency": "gbp",
            "method": "cheque",
            "reference": payload[:64],
            "received_on": "2026-02-02",
            "campaign_id": str(cid),
            "send_receipt": "on",
            "entry_key": key,
            "csrf_token": csrf_token(admin, "/staff/gifts/offline"),
        }
        bad_email = admin.post("/staff/gifts/offline", data={**form, "email": payload})
        assert bad_email.status_code == 422
        assert executable(bad_email.get_data(as_text=True)) == []
        refused += 1
        assert admin.post("/staff/gifts/offline", data=form).status_code == 303, payload
        with app.app_context():
            gift = db.session.scalar(
                select(Donation).join(Donor).where(Donor.email == f"x{n}@example.org")
            )
            gid, did = gift.id, gift.donor_id
        token = csrf_token(admin, f"/staff/donors/{did}")
        admin.post(
            f"/staff/gifts/{gid}/refund",
            data={
                "amount": "1.00",
                "reason": "requested_by_customer",
                "note": payload[:500],
                "csrf_token": token,
                "request_token": secrets.token_hex(16),
            },
        )
        admin.post(f"/staff/donors/{did}/notes", data={"body": payload, "csrf_token": token})
        made.append((n, payload, cid, slug, did))

    with app.app_context():
        assert len(db.session.scalars(select(Campaign)).all()) == len(PAYLOADS)
        message_ids = db.session.scalars(select(OutboxMessage.id)).all()
    donor = app.test_client()
    sign_in(donor, donor_user.email)
    anonymous = app.test_client()

    year = "date_from=2026-01-01&date_to=2026-12-31"
    staff_pages = [
        "/staff",
        "/staff/campaigns",
        "/staff/donors",
        "/staff/gifts/offline",
        "/staff/audit",
        "/staff/rates",
        "/staff/exports",
        "/staff/outbox",
        "/staff/donations/gift-aid",
        "/staff/data-requests",
        "/staff/reports",
        *[
            f"/staff/reports/{k}?{year}"
            for k in ("totals", "campaigns", "funds", "gift_size", "donors", "dunning")
        ],
        *[f"/staff/outbox/{m}" for m in message_ids],
    ]
    public_pages = ["/", "/donate"]
    donor_pages = ["/donate/history", "/account/my-data.json"]
    # (client, url) -> the payloads that must be shown there, escaped and literal
    expected: dict[tuple[str, str], list[str]] = {}
    for n, payload, cid, slug, did in made:
        name = payload[:120]
        for url in ("/staff/campaigns", f"/staff/campaigns/{cid}", f"/staff/campaigns/{cid}/edit"):
            expected.setdefault(("staff", url), []).append(name)
        for url in ("/", f"/campaigns/{slug}"):
            expected.setdefault(("anonymous", url), []).extend([name, payload])
        expected.setdefault(("staff", f"/staff/campaigns/{cid}/edit"), []).append(payload)
        expected.setdefault(("staff", "/staff/donors"), []).append(payload)
        expected.setdefault(("staff", f"/staff/donors/{did}"), []).extend(
            [payload, payload[:64], payload[:500]]
        )
        for url in (
            f"/staff/donors/{did}/data-protection",
            f"/staff/gifts/offline?donor={did}",
            f"/staff/donors?q=x{n}%40example.org&campaign={cid}",
        ):
            expected.setdefault(("staff", url), [])
        for url in (f"/campaigns/{slug}", f"/donate?campaign={slug}", f"/api/v1/campaigns/{slug}"):
            expected.setdefault(("anonymous", url), [])
        expected.setdefault(("staff", f"/campaigns/{slug}"), [])
    for url in staff_pages:
        expected.setdefault(("staff", url), [])
    for url in public_pages:
        expected.setdefault(("anonymous", url), [])
        expected.setdefault(("donor", url), [])
    for url in donor_pages:
        expected.setdefault(("donor", url), [])

    clients = {"staff": admin, "anonymous": anonymous, "donor": donor}
    checked = shown_count = 0
    for (who, url), must_show in expected.items():
        response = clients[who].get(url)
        assert response.status_code == 200, (who, url, response.status_code)
        body = response.get_data(as_text=True)
        if response.mimetype == "application/json":
            # data, not a page: the raw text, never sniffed as HTML (embedders must use text)
            assert response.headers["X-Content-Type-Options"] == "nosniff", url
        else:
            assert executable(body) == [], (who, url, executable(body))
        for value in must_show:
            assert shown(value) in body, (who, url, value)
            shown_count += 1
        checked += 1
    literal = [u for (w, u), v in expected.items() if "{{7*7}}" in v]
    assert literal  # the template-injection payload was shown literally on these pages
    METRICS.report(
        "13.1 XSS: payloads × staff-typed fields, pages (staff, public, donor) "
        "checked / executable",
        f"{len(PAYLOADS)} × 9 fields ({refused} refusals echoed), {checked} pages, "
        f"{shown_count} displays verified / 0",
    )
