"""The safeguarding officer's review: masked by default, every view and decision audited."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from donorhub.audit import AuditEvent
from donorhub.children import review
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
    assert "no-store" in revealed.headers["Cache-Control"]
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
    assert "Confirm each flagged part" in response.get_data(as_text=True)
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


# -- What was and was not recognised -------------------------------------------------------

UNKNOWN_WORDS = "She enjoys kulfi and jalebi after class."
AADHAAR = "Her Aadhaar is 2345 6789 0124, please keep it safe."
WORKPLACE = "Her mother still works in Kamathipura."
FRIEND = "She plays with Priya every evening."


def seed_texts(import_feed, *abouts):
    records = crowd(max(5, len(abouts)))
    for record, about in zip(records, abouts, strict=False):
        record["about"] = about
    import_feed(Batch().add(*records))


def text_id(app, original):
    with app.app_context():
        return db.session.scalar(select(ChildText.id).where(ChildText.original == original))


def check_keys(html):
    return re.findall(r'name="((?:flag|word)-\d+-[0-9a-f]{12})"', html)


def test_the_queue_never_calls_a_text_clean_it_says_what_was_recognised(
    app, make_user, import_feed
):
    seed_texts(import_feed, UNKNOWN_WORDS, IDENTIFYING, "Loves drawing birds and wants to teach.")
    client, _ = officer_client(app, make_user)
    queue = client.get("/staff/safeguarding").get_data(as_text=True)
    assert ">none<" not in queue and "Flags" not in queue and "clean" not in queue.lower()
    assert "No identifier pattern found; 2 words not recognised: kulfi, jalebi" in queue
    assert "No identifier pattern found; every word is in the known vocabulary" in queue
    # Flagged parts are masked, so they are never listed as words either.
    assert "2 possible identifiers (person name, phone); every other word is in the" in queue
    assert "Ravi" not in queue and "98200" not in queue


def test_unknown_words_are_highlighted_on_the_item_page_flagged_parts_stay_hidden(
    app, make_user, import_feed
):
    mixed = "She loves bhelpuri and Ravi calls on 98200 12345."
    seed_texts(import_feed, UNKNOWN_WORDS, mixed)
    client, _ = officer_client(app, make_user)
    url = f"/staff/safeguarding/about/{text_id(app, UNKNOWN_WORDS)}"
    html = client.get(url).get_data(as_text=True)
    assert "Flags: none" not in html
    marks = re.findall(r'<mark class="unknown-word"[^>]*>([^<]+)<', html)
    assert marks[:2] == ["kulfi", "jalebi"]
    assert "(word not recognised)" in html  # not colour alone: screen readers hear it too
    flagged = client.get(f"/staff/safeguarding/about/{text_id(app, mixed)}").get_data(as_text=True)
    assert re.findall(r'<mark class="unknown-word"[^>]*>([^<]+)<', flagged)[0] == "bhelpuri"
    assert "Ravi" not in flagged and "98200" not in flagged
    assert "[hidden: possible phone]" in flagged
    revealed = client.get(f"/staff/safeguarding/about/{text_id(app, mixed)}/reveal")
    html = revealed.get_data(as_text=True)
    assert re.findall(r'<mark class="unknown-word"[^>]*>([^<]+)<', html) == ["bhelpuri"]
    assert re.findall(r'<mark class="flag"[^>]*>([^<]+)<', html) == ["Ravi", "98200 12345"]


# -- Residue: an edit must be a rewrite ------------------------------------------------------


def refused_edit(app, make_user, import_feed, original, edit):
    seed_texts(import_feed, original)
    client, _ = officer_client(app, make_user)
    item = text_id(app, original)
    url = f"/staff/safeguarding/about/{item}"
    page = client.get(url).get_data(as_text=True)
    data = {"mode": "edited", "text": edit, **dict.fromkeys(check_keys(page), "on")}
    response = post(client, url + "/approve", data, url)
    with app.app_context():
        row = db.session.get(ChildText, item)
        state = (row.status, row.approved)
    # Sponsors are the only readers of approved free text (public cards never carry it).
    cards = [profile.about for profile in sponsor_profiles(app)]
    return response, state, cards


def test_an_edit_that_leaves_a_copula_without_its_object_is_refused(app, make_user, import_feed):
    response, state, cards = refused_edit(
        app, make_user, import_feed, AADHAAR, "Her Aadhaar is, please keep it safe."
    )
    assert response.status_code == 422
    assert "“…Her Aadhaar is,” ends as if something was cut out" in response.get_data(as_text=True)
    assert state == (ReviewStatus.QUARANTINED, None)
    assert "Her Aadhaar is, please keep it safe." not in cards


def test_an_edit_that_leaves_a_preposition_without_its_object_is_refused(
    app, make_user, import_feed
):
    response, state, cards = refused_edit(
        app, make_user, import_feed, WORKPLACE, "Her mother still works in."
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "“…mother still works in.” ends as if something was cut out" in html
    assert 'id="text" name="text"' in html and "Her mother still works in.</textarea>" in html
    assert state == (ReviewStatus.QUARANTINED, None)
    assert "Her mother still works in." not in cards


def test_an_edit_that_only_cuts_the_flagged_parts_out_is_refused(app, make_user, import_feed):
    response, state, _ = refused_edit(
        app, make_user, import_feed, FRIEND, "She plays with  [removed]every evening!"
    )
    assert response.status_code == 422 and "[removed] marker" in response.get_data(as_text=True)
    response, state, _ = refused_edit(
        app, make_user, import_feed, FRIEND, "She plays with, every evening!"
    )
    assert response.status_code == 422
    assert "only cuts the flagged parts out" in response.get_data(as_text=True)
    assert state == (ReviewStatus.QUARANTINED, None)


def test_a_rewrite_is_approved_and_reaches_the_profile(app, make_user, import_feed):
    seed_texts(import_feed, WORKPLACE)
    client, officer = officer_client(app, make_user)
    item = text_id(app, WORKPLACE)
    url = f"/staff/safeguarding/about/{item}"
    response = post(
        client, url + "/approve", {"mode": "edited", "text": "Her family keeps in touch."}, url
    )
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(ChildText, item).approved == "Her family keeps in touch."
    assert "Her family keeps in touch." in [p.about for p in sponsor_profiles(app)]


def test_residue_rules_keep_complete_sentences():
    from donorhub.children.review import dangling_endings

    assert dangling_endings("Her Aadhaar is, please keep it safe.") == ["“…Her Aadhaar is,”"]
    assert dangling_endings("Her mother still works in.") == ["“…mother still works in.”"]
    assert dangling_endings("She lives with the.") == ["“…She lives with the.”"]
    assert dangling_endings("Her mother, who sells flowers, works in.") == ["“…works in.”"]
    for complete in (
        "She has settled in.",
        "Her family cheered her on.",
        "She grew up fast.",
        "She knows where she comes from.",
        "We are proud of her.",
        "She won the relay, and her team cheered.",
    ):
        assert dangling_endings(complete) == [], complete


# -- Preview and one confirmation per finding ---------------------------------------------


def test_preview_shows_what_the_reader_will_see_and_decides_nothing(app, make_user, import_feed):
    seed_texts(import_feed, WORKPLACE)
    client, _ = officer_client(app, make_user)
    item = text_id(app, WORKPLACE)
    url = f"/staff/safeguarding/about/{item}"
    edit = "Her family enjoys kulfi  on   holidays."
    response = post(client, url + "/preview", {"mode": "edited", "text": edit}, url)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    preview = re.search(r'<div class="preview" id="edited-preview">(.*?)</div>', html).group(1)
    assert preview == "<p>Her family enjoys kulfi on holidays.</p>"
    assert "No identifier pattern found; 1 word not recognised: kulfi" in html
    assert re.search(r'<mark class="unknown-word"[^>]*>kulfi<', html)
    bad = post(client, url + "/preview", {"mode": "edited", "text": "She works in."}, url)
    assert bad.status_code == 200 and "ends as if something was cut out" in bad.get_data(
        as_text=True
    )
    with app.app_context():
        assert db.session.get(ChildText, item).status == ReviewStatus.QUARANTINED
    assert "safeguarding.approved" not in audit_actions(app)


def test_each_finding_and_unknown_word_group_is_confirmed_on_its_own(app, make_user, import_feed):
    original = "She loves kulfi. Her brother Ravi calls on 98200 12345."
    seed_texts(import_feed, original)
    client, officer = officer_client(app, make_user)
    item = text_id(app, original)
    url = f"/staff/safeguarding/about/{item}"
    page = client.get(url).get_data(as_text=True)
    keys = check_keys(page)
    assert len(keys) == 3  # a person name, a phone, and the word "kulfi"
    assert "I have checked: possible phone (" in page and "at “##### #####”" in page
    assert "I have checked the words not recognised: “kulfi”" in page
    assert "98200" not in page and "Ravi" not in page
    for ticked in ([], keys[:1], keys[:2]):
        response = post(
            client, url + "/approve", {"mode": "as_sent", **dict.fromkeys(ticked, "on")}, url
        )
        html = response.get_data(as_text=True)
        assert response.status_code == 422
        unticked = re.findall(r'name="([^"]+)" value="on" aria-invalid="true"', html)
        assert unticked == [key for key in keys if key not in ticked]
        assert f'<a href="#{unticked[0]}">Tick this once you have checked this part.' in html
        assert "98200" not in html and "Ravi" not in html
    # Ticks given for one text do not count for another.
    edited = {"mode": "edited", "text": "She loves kulfi and sweets.", **dict.fromkeys(keys, "on")}
    response = post(client, url + "/approve", edited, url)
    assert response.status_code == 422
    with app.app_context():
        assert db.session.get(ChildText, item).status == ReviewStatus.QUARANTINED
    response = post(client, url + "/approve", {"mode": "as_sent", **dict.fromkeys(keys, "on")}, url)
    assert response.status_code == 302
    with app.app_context():
        row = db.session.get(ChildText, item)
        assert (row.status, row.approved) == (ReviewStatus.APPROVED, original)
        detail = db.session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "safeguarding.approved")
        ).one()
    assert detail == {"edited": False, "flags_confirmed": 2, "unknown_words_confirmed": 1}


def test_the_projects_own_vocabulary_is_recognised_in_review(app):
    from donorhub.children.review import read_text

    with app.test_request_context():
        reading = read_text("about", 1, "She moved to aftercare and plays kho kho.")
    assert reading.unknown_words == []
    assert reading.summary == "No identifier pattern found; every word is in the known vocabulary"


def test_an_edit_identical_to_the_original_still_needs_the_flags_found_at_import(
    app, make_user, import_feed
):
    # The guard may have changed since the import: a finding stored then must still be
    # confirmed, whether the officer approves the text as sent or "edits" it to the same text.
    original = "Loves drawing birds and wants to teach."
    seed_texts(import_feed, original)
    _, officer = officer_client(app, make_user)
    item = text_id(app, original)
    with app.app_context():
        row = db.session.get(ChildText, item)
        start = original.index("birds")
        row.findings = [
            {"detector": "person_name", "start": start, "end": start + 5, "rule": "older rule"}
        ]
        db.session.commit()
        assert len(review.approval_reading("about", item).checks) == 1
        # Nothing ticked: the current guard finds nothing in the text, the stored finding stays.
        with pytest.raises(review.NeedsConfirmation):
            review.approve(officer, "about", item, edited_text=original, confirmed=set())
