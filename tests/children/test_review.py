"""The safeguarding officer's review: masked by default, every view and decision audited."""

from __future__ import annotations

import re

from sqlalchemy import select

from donorhub.audit import AuditEvent
from donorhub.children.models import Child, ChildText, ChildUpdate, ReviewStatus
from donorhub.extensions import db
from donorhub.sponsorship.services import child_content, listed_profiles
from tests.feed.builders import Batch, crowd, update
from tests.helpers import csrf_token, sign_in

IDENTIFYING = "Her brother Ravi calls on 98200 12345."


def officer_client(app, make_user):
    officer = make_user(roles=("safeguarding_officer",))
    client = app.test_client()
    sign_in(client, officer.email, totp_secret=officer.totp_secret)
    return client, officer


def seed(import_feed):
    records = crowd(5)
    records[0]["about"] = "Loves drawing birds and wants to teach."
    records[1]["about"] = IDENTIFYING
    import_feed(Batch().add(*records, update(records[2]["ref"], text="She won the relay.")))


def ids(app):
    with app.app_context():
        texts = {t.original or "": t.id for t in db.session.scalars(select(ChildText))}
        update_id = db.session.scalar(select(ChildUpdate.id))
    return texts, update_id


def audit_actions(app):
    with app.app_context():
        return db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()


def sponsor_profiles(app):
    """Each listed child's profile as her sponsors see it in the portal."""
    with app.app_context():
        profiles = [child_content(child)[0] for child in db.session.scalars(select(Child))]
        return [profile for profile in profiles if profile is not None]


def post(client, url, data, page):
    return client.post(url, data={**data, "csrf_token": csrf_token(client, page)})


def test_only_safeguarding_officers_reach_the_queue(app, make_user, import_feed):
    seed(import_feed)
    for roles in (("admin",), ("fundraiser",)):
        user = make_user(roles=roles)
        client = app.test_client()
        sign_in(client, user.email, totp_secret=user.totp_secret)
        assert client.get("/staff/safeguarding").status_code == 403
    donor = make_user()
    client = app.test_client()
    sign_in(client, donor.email)
    assert client.get("/staff/safeguarding").status_code == 403
    assert app.test_client().get("/staff/safeguarding").status_code == 302


def test_quarantined_text_is_masked_and_revealing_it_is_audited(app, make_user, import_feed):
    seed(import_feed)
    client, _officer = officer_client(app, make_user)
    texts, _ = ids(app)
    queue = client.get("/staff/safeguarding").get_data(as_text=True)
    assert "Quarantined" in queue
    page = client.get(f"/staff/safeguarding/about/{texts[IDENTIFYING]}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "98200" not in html and "Ravi" not in html
    assert "[hidden: possible phone]" in html
    revealed = client.get(f"/staff/safeguarding/about/{texts[IDENTIFYING]}/reveal")
    assert "98200 12345" in revealed.get_data(as_text=True)
    assert revealed.headers["Cache-Control"] == "no-store"
    actions = audit_actions(app)
    assert actions.count("safeguarding.queue_viewed") == 1
    assert actions.count("safeguarding.item_viewed") >= 2
    assert actions[-1] == "safeguarding.text_revealed"


def test_flagged_text_needs_an_edit_or_an_explicit_confirmation(app, make_user, import_feed):
    seed(import_feed)
    client, officer = officer_client(app, make_user)
    texts, _ = ids(app)
    item = texts[IDENTIFYING]
    url = f"/staff/safeguarding/about/{item}"
    response = post(client, url + "/approve", {"mode": "as_sent"}, url)
    assert response.status_code == 422
    assert "Confirm that you checked every flagged part" in response.get_data(as_text=True)
    response = post(
        client,
        url + "/approve",
        {"mode": "edited", "text": "Her brother [removed] calls on [removed]."},
        url,
    )
    assert response.status_code == 422 and "[removed] marker" in response.get_data(as_text=True)
    response = post(
        client, url + "/approve", {"mode": "edited", "text": "Her family keeps in touch."}, url
    )
    assert response.status_code == 302
    with app.app_context():
        row = db.session.get(ChildText, item)
        assert (row.status, row.approved, row.reviewed_by_id) == (
            ReviewStatus.APPROVED,
            "Her family keeps in touch.",
            officer.id,
        )
    approved_about = {profile.about for profile in sponsor_profiles(app)}
    assert "Her family keeps in touch." in approved_about
    assert audit_actions(app)[-1] == "safeguarding.approved"


def test_approved_text_reaches_the_childs_sponsors_and_never_a_public_page(
    app, make_user, import_feed
):
    seed(import_feed)
    client, _ = officer_client(app, make_user)
    texts, _ = ids(app)
    item = texts["Loves drawing birds and wants to teach."]
    url = f"/staff/safeguarding/about/{item}"
    page = client.get(url).get_data(as_text=True)
    assert "What a sponsor would read" in page and "Loves drawing birds" in page
    assert post(client, url + "/approve", {"mode": "as_sent"}, url).status_code == 302
    abouts = [p.about for p in sponsor_profiles(app) if p.about]
    assert abouts == ["Loves drawing birds and wants to teach."]
    # Free text is unique to one child: no crowd could hide her behind it.
    with app.app_context():
        cards = listed_profiles()
    assert len(cards) == 5 and all(card.about is None for card in cards)
    visitor = app.test_client()
    for page in ["/sponsor", *(f"/sponsor/{card.token}" for card in cards)]:
        assert "Loves drawing birds" not in visitor.get(page).get_data(as_text=True)


def test_rejected_text_never_reaches_a_profile(app, make_user, import_feed):
    seed(import_feed)
    client, _ = officer_client(app, make_user)
    texts, update_id = ids(app)
    url = f"/staff/safeguarding/update/{update_id}"
    assert post(client, url + "/reject", {}, url).status_code == 422
    assert post(client, url + "/reject", {"reason": "sensitive"}, url).status_code == 302
    assert post(client, url + "/reject", {"reason": "sensitive"}, url).status_code in (302, 422)
    with app.app_context():
        row = db.session.get(ChildUpdate, update_id)
        assert row.status == ReviewStatus.REJECTED and row.approved_text is None
    events = audit_actions(app)
    assert events.count("safeguarding.rejected") == 1


def test_update_preview_uses_our_own_milestone_sentences(app, make_user, import_feed):
    seed(import_feed)
    client, _ = officer_client(app, make_user)
    _, update_id = ids(app)
    page = client.get(f"/staff/safeguarding/update/{update_id}").get_data(as_text=True)
    assert re.search(r"<p>\w+ passed the term exams\.</p>", page)
    assert "She won the relay." in page


def test_import_history_shows_counts_and_rules(app, make_user, import_feed):
    seed(import_feed)
    client, _ = officer_client(app, make_user)
    page = client.get("/staff/safeguarding/imports").get_data(as_text=True)
    assert "completed" in page
    with app.app_context():
        from donorhub.feed.models import FeedRun

        run_id = db.session.scalar(select(FeedRun.id))
    detail = client.get(f"/staff/safeguarding/imports/{run_id}").get_data(as_text=True)
    assert "the PII guard found a possible identifier" in detail
    assert "98200" not in detail
