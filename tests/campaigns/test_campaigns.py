"""Campaigns: staff CRUD and moves, public page, SVG thermometer, JSON API with CORS, totals
right with refunds, disputes and several currencies, and sanitised Markdown."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from donorhub import money
from donorhub.campaigns import services
from donorhub.campaigns.models import Campaign, CampaignStatus
from donorhub.donations.models import Donation, DonationKind, Donor
from donorhub.extensions import db
from tests.helpers import csrf_token, sign_in
from tests.metrics import METRICS

XSS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "<svg onload=alert(1)>",
    "[x](javascript:alert(1))",
    "<a href='javascript:alert(1)'>x</a>",
    "{{7*7}}",
    "<iframe src=//evil>",
]


def staff_client(app, make_user, role="fundraiser"):
    user = make_user(roles=(role,))
    client = app.test_client()
    sign_in(client, user.email, totp_secret=user.totp_secret)
    return client, user


def gift(
    donor,
    campaign,
    amount,
    currency="gbp",
    *,
    status="paid",
    refunded=0,
    fee=0,
    dispute=None,
    when=None,
):
    d = Donation(
        donor=donor,
        kind=DonationKind.ONCE,
        amount_minor=amount,
        fee_cover_minor=fee,
        currency=currency,
        designation="campaign",
        campaign_id=campaign.id if campaign else None,
        paid_at=when or datetime(2026, 3, 1, tzinfo=UTC),
        amount_refunded_minor=refunded,
        dispute_status=dispute,
    )
    d.status = status
    db.session.add(d)
    return d


def form_for(slug="winter-appeal", **over):
    data = {
        "name": "Winter appeal",
        "slug": slug,
        "summary": "Warm beds for the homes",
        "body_md": "## Why\n\nBeds and **blankets**.",
        "goal": "5000",
        "goal_currency": "gbp",
        "starts_on": (date.today() - timedelta(days=1)).isoformat(),
        "ends_on": (date.today() + timedelta(days=30)).isoformat(),
        "appeal_code": "WIN26",
    }
    data.update(over)
    return data


def test_staff_create_publish_and_the_public_page(app, make_user):
    client, _ = staff_client(app, make_user)
    token = csrf_token(client, "/staff/campaigns/new")
    response = client.post("/staff/campaigns/new", data={**form_for(), "csrf_token": token})
    assert response.status_code == 302
    with app.app_context():
        campaign = db.session.scalar(select(Campaign))
        assert campaign.status is CampaignStatus.DRAFT and campaign.goal_minor == 500000
        cid = campaign.id
    anonymous = app.test_client()
    assert anonymous.get("/campaigns/winter-appeal").status_code == 404  # a draft is private
    assert anonymous.get("/api/v1/campaigns/winter-appeal").status_code == 404
    token = csrf_token(client, f"/staff/campaigns/{cid}")
    assert (
        client.post(f"/staff/campaigns/{cid}/publish", data={"csrf_token": token}).status_code
        == 302
    )
    page = anonymous.get("/campaigns/winter-appeal").get_data(as_text=True)
    assert "Winter appeal" in page and "<h2>Why</h2>" in page and "<svg" in page
    assert "<title" in page and "<desc" in page and "<progress" in page
    assert "/donate?campaign=winter-appeal" in page.replace("&amp;", "&")
    home = anonymous.get("/").get_data(as_text=True)
    assert "/campaigns/winter-appeal" in home
    donate = anonymous.get("/donate?campaign=winter-appeal").get_data(as_text=True)
    assert 'name="campaign" value="winter-appeal"' in donate
    # publish twice is an illegal move; close works; closed is still public, not on home
    token = csrf_token(client, f"/staff/campaigns/{cid}")
    client.post(f"/staff/campaigns/{cid}/publish", data={"csrf_token": token})
    client.post(f"/staff/campaigns/{cid}/close", data={"csrf_token": token})
    with app.app_context():
        assert db.session.get(Campaign, cid).status is CampaignStatus.CLOSED
    assert "/campaigns/winter-appeal" not in anonymous.get("/").get_data(as_text=True)
    assert "has closed" in anonymous.get("/campaigns/winter-appeal").get_data(as_text=True)


def test_invalid_forms_are_refused(app, make_user):
    client, _ = staff_client(app, make_user)
    bad = [
        {"slug": "Bad Slug"},
        {"goal": "-5"},
        {"goal": "1.234"},
        {"goal_currency": "jpy"},
        {"ends_on": "2020-01-01"},
        {"appeal_code": "lower"},
        {"extra": "1"},
    ]
    for change in bad:
        token = csrf_token(client, "/staff/campaigns/new")
        response = client.post(
            "/staff/campaigns/new", data={**form_for(), **change, "csrf_token": token}
        )
        assert response.status_code == 422, change
    with app.app_context():
        assert db.session.scalar(select(Campaign)) is None


def make_campaign(app, **over) -> int:
    with app.app_context():
        data = {
            "name": "Spring",
            "slug": "spring",
            "summary": "s",
            "body_md": "",
            "goal_minor": 100000,
            "goal_currency": "gbp",
            "starts_on": date.today() - timedelta(days=10),
            "ends_on": None,
            "appeal_code": "SPR",
        }
        data.update(over)
        c = Campaign(**data, status=CampaignStatus.LIVE)
        db.session.add(c)
        db.session.commit()
        return c.id


def test_totals_with_refunds_disputes_and_currencies(app):
    cid = make_campaign(app)
    with app.app_context():
        c = db.session.get(Campaign, cid)
        a, b, e = (Donor(email=f"{n}@example.org", full_name=n) for n in "abe")
        db.session.add_all([a, b, e])
        gift(a, c, 10000)  # £100 counts
        gift(a, c, 5150, fee=150)  # £51.50 with £1.50 fee: 50
        gift(b, c, 4000, refunded=1000, status="partially_refunded")  # 30
        gift(b, c, 2000, refunded=2000, status="refunded")  # 0
        gift(e, c, 3000, status="disputed", dispute="open")  # 0 while disputed
        gift(e, c, 3000, status="charged_back", dispute="lost")  # 0
        gift(e, c, 100000, "inr")  # ₹1000
        gift(e, c, 999, status="pending")  # not paid
        gift(e, c, 1001, "usd", status="failed")  # not paid
        gift(e, None, 7777)  # another fund
        db.session.commit()
        totals = services.campaign_totals(c)
        assert totals.by_currency == {"gbp": 18000, "inr": 100000}
        assert totals.donors == 3 and totals.gifts == 4
        # no rate for INR yet: left out and named
        assert totals.raised_minor == 18000 and totals.converted.missing == ("inr",)
        money.set_rate("inr", "gbp", Decimal("0.0095"), None)
        db.session.commit()
        totals = services.campaign_totals(c)
        assert totals.raised_minor == 18000 + 950 and totals.percent == 18
    body = app.test_client().get("/api/v1/campaigns/spring").get_json()
    assert body["raised_minor"] == 18950 and body["goal_minor"] == 100000
    assert body["donors"] == 3 and body["currency"] == "gbp" and body["raised"] == "189.50"
    assert set(body) == {
        "slug",
        "name",
        "status",
        "currency",
        "raised",
        "raised_minor",
        "goal",
        "goal_minor",
        "percent",
        "donors",
        "starts_on",
        "ends_on",
    }


def test_conversion_rounds_half_even_once_per_currency():
    rates = {"gbp": Decimal(1), "inr": Decimal("0.005"), "usd": Decimal("0.8")}
    # 1050 paise * 0.005 = 5.25 -> 5 (half even); 1150 * 0.005 = 5.75 -> 6
    assert money.convert({"inr": 1050}, "gbp", rates).total_minor == 5
    assert money.convert({"inr": 1150}, "gbp", rates).total_minor == 6
    assert money.convert({"inr": 250}, "gbp", rates).total_minor == 1  # 1.25 -> 1
    # into a goal currency other than the reporting one: via the reporting currency
    assert money.convert({"gbp": 800}, "usd", rates).total_minor == 1000


def test_api_cors_and_problem_documents(app):
    make_campaign(app)
    client = app.test_client()
    response = client.get("/api/v1/campaigns/spring", headers={"Origin": "https://x.org"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Set-Cookie" not in response.headers
    missing = client.get("/api/v1/campaigns/nope")
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    assert missing.headers["Access-Control-Allow-Origin"] == "*"
    assert client.post("/api/v1/campaigns/spring").status_code in (400, 405)
    preflight = client.options("/api/v1/campaigns/spring")
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET"


def test_markdown_is_sanitised():
    html = services.render_markdown(
        "<script>alert(1)</script>\n\n[x](javascript:alert(1)) ![i](https://evil/x.png) "
        "<img src=x onerror=alert(1)> [ok](https://example.org)"
    )
    assert "<script" not in html and 'href="javascript:' not in html and "<img" not in html
    assert "&lt;script&gt;" in html  # shown as text, inert
    assert 'href="https://example.org" rel="noopener noreferrer nofollow"' in html


def test_xss_payloads_in_every_campaign_field_render_inert(app, make_user):
    client, _ = staff_client(app, make_user, "admin")
    pages_checked = 0
    for n, payload in enumerate(XSS):
        token = csrf_token(client, "/staff/campaigns/new")
        response = client.post(
            "/staff/campaigns/new",
            data={
                **form_for(slug=f"x-{n}", appeal_code=f"X{n}"),
                "name": payload,
                "summary": payload,
                "body_md": payload,
                "csrf_token": token,
            },
        )
        assert response.status_code == 302, payload
        cid = int(response.headers["Location"].rsplit("/", 1)[1])
        token = csrf_token(client, f"/staff/campaigns/{cid}")
        client.post(f"/staff/campaigns/{cid}/publish", data={"csrf_token": token})
        for url in (
            f"/campaigns/x-{n}",
            "/",
            f"/staff/campaigns/{cid}",
            "/staff/campaigns",
            f"/staff/campaigns/{cid}/edit",
        ):
            body = client.get(url).get_data(as_text=True)
            pages_checked += 1
            for bad in (
                "<script>alert",
                "<img src=x",
                "<svg onload",
                "<iframe",
                "<a href='javascript:",
                '<a href="javascript:',
            ):
                assert bad not in body, (payload, url, bad)
    METRICS.report(
        "13.1 XSS: payloads × campaign fields × pages checked / executable",
        f"{len(XSS)} × 3 × {pages_checked} pages / 0",
    )
