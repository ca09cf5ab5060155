"""The sponsor portal: only your own sponsorships (every other token is a 404), the same facts
for every sponsor of a child, the disclosure ledger, suspension and the code of conduct."""

from __future__ import annotations

import re

from sqlalchemy import func, select, text

from donorhub.children.models import ChildUpdate
from donorhub.database import utcnow
from donorhub.extensions import db
from donorhub.sponsorship import services
from donorhub.sponsorship.models import ConductAcceptance, Disclosure, Sponsorship
from tests.helpers import csrf_token, mentions, sign_in
from tests.metrics import METRICS
from tests.security.routes import all_routes
from tests.sponsorship.helpers import load_children, signed_in_client, sponsor_through_stripe

ACTIONS = ("cancel", "card", "choice", "pay", "unknown")


def checksum(app) -> dict:
    with app.app_context():
        counts = {
            t.name: db.session.execute(text(f"SELECT count(*) FROM {t.name}")).scalar()
            for t in db.metadata.sorted_tables
        }
        counts["statuses"] = [
            (s.id, s.status.value, s.plan.status.value)
            for s in db.session.scalars(select(Sponsorship).order_by(Sponsorship.id))
        ]
        db.session.remove()
    return counts


def sponsor_routes(app) -> list:
    return [r for r in all_routes(app) if r.rule.startswith("/my/sponsorships/<")]


def test_a_sponsor_reaches_only_their_own_sponsorships(pay_app, import_feed, sponsor, sim):
    kids = load_children(pay_app, import_feed, 5)
    alice, bob = sponsor(target_app=pay_app), sponsor(target_app=pay_app)
    alice_client = signed_in_client(pay_app, alice)
    bob_client = signed_in_client(pay_app, bob)
    mine, _ = sponsor_through_stripe(pay_app, alice_client, sim, kids.tokens[0])
    theirs, _ = sponsor_through_stripe(pay_app, bob_client, sim, kids.tokens[1])
    assert len(mine.portal_token) >= 43  # 256 random bits (R9: >= 128)
    assert kids.aliases[0] in alice_client.get(f"/my/sponsorships/{mine.portal_token}").get_data(
        as_text=True
    )
    before = checksum(pay_app)
    # Everything of Alice's that Bob might try: her portal token, her sponsorship's opaque
    # id, the child's public token, ids, and tokens one character off.
    tokens = [
        mine.portal_token,
        mine.public_id,
        kids.tokens[0],
        str(mine.id),
        str(kids.ids[0]),
        mine.portal_token[:-1] + ("A" if mine.portal_token[-1] != "A" else "B"),
        "x" * 43,
    ]
    tokens += [str(mine.id + delta) for delta in range(-3, 4)]
    routes = sponsor_routes(pay_app)
    assert {r.endpoint for r in routes} == {
        "sponsorship.portal_sponsorship",
        "sponsorship.portal_action",
    }
    requests, leaks, wrong = 0, [], []
    form_token = csrf_token(bob_client, "/my/sponsorships")
    for route in routes:
        for token in tokens:
            paths = (
                [
                    route.rule.replace("<token>", token).replace("<action>", action)
                    for action in ACTIONS
                ]
                if "<action>" in route.rule
                else [route.rule.replace("<token>", token)]
            )
            for path in paths:
                for method in sorted(route.methods):
                    if method == "GET":
                        response = bob_client.get(path)
                    else:
                        response = bob_client.open(
                            path, method=method, data={"csrf_token": form_token, "choice": "stop"}
                        )
                    requests += 1
                    body = response.get_data(as_text=True)
                    if response.status_code != 404:
                        wrong.append((method, path[:40], response.status_code))
                    if kids.aliases[0] in body:
                        leaks.append(path[:40])
    assert wrong == [] and leaks == []
    assert checksum(pay_app) == before
    # Bob's own page still works, and Alice's child appears nowhere in his portal.
    page = bob_client.get("/my/sponsorships").get_data(as_text=True)
    assert mentions(page, kids.aliases[1]) and not mentions(page, kids.aliases[0])
    assert theirs.portal_token in page and mine.portal_token not in page
    METRICS.report(
        "3.3 sponsor cross-tenant requests / non-404 / leaks / rows changed",
        f"{requests} / 0 / 0 / 0",
    )


def test_portal_shows_released_profile_and_published_approved_updates(
    pay_app, import_feed, sponsor, sim
):
    kids = load_children(pay_app, import_feed, 5)
    user = sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, user)
    row, _ = sponsor_through_stripe(pay_app, client, sim, kids.tokens[0])
    with pay_app.app_context():
        # An approved update not yet published, and a pending one: neither is shown.
        published = db.session.scalar(
            select(ChildUpdate).where(ChildUpdate.child_id == kids.ids[0])
        )
        later = ChildUpdate(
            source_hash="h" * 64,
            child_id=kids.ids[0],
            period="2026-Q4",
            category="education",
            milestones=["moved_up_a_class"],
            approved_text="Unpublished words.",
            status="approved",
            content_hash="c" * 64,
        )
        waiting = ChildUpdate(
            source_hash="w" * 64,
            child_id=kids.ids[0],
            period="2026-Q4",
            category="education",
            milestones=[],
            status="pending",
            original_text="Pending words.",
            content_hash="d" * 64,
        )
        db.session.add_all([later, waiting])
        db.session.commit()
        published_id, later_id = published.id, later.id
        db.session.remove()
    page = client.get(f"/my/sponsorships/{row.portal_token}").get_data(as_text=True)
    assert f"{kids.aliases[0]} passed the term exams." in page
    assert "She read a whole book to her class." in page
    assert "Unpublished words." not in page and "Pending words." not in page
    assert "July to September 2026" in page
    assert kids.tokens[0] not in page  # no link to the public card
    assert "Active: £25.00 a month." in page
    with pay_app.app_context():
        ledger = db.session.scalars(select(Disclosure)).all()
        assert len(ledger) == 1 and ledger[0].update_ids == [published_id]
        assert ledger[0].user_id == user.id and ledger[0].child_id == kids.ids[0]
        db.session.remove()
    client.get(f"/my/sponsorships/{row.portal_token}")  # same content, same day: no new row
    with pay_app.app_context():
        db.session.get(ChildUpdate, later_id).published_at = utcnow()
        db.session.commit()
        db.session.remove()
    page = client.get(f"/my/sponsorships/{row.portal_token}").get_data(as_text=True)
    assert "Unpublished words." in page
    with pay_app.app_context():
        rows = db.session.scalars(select(Disclosure).order_by(Disclosure.id)).all()
        assert [r.update_ids for r in rows] == [[published_id], [published_id, later_id]]
        db.session.remove()


def test_all_sponsors_of_a_child_see_the_same_facts(app_factory, import_feed, sponsor, sim):
    shared = app_factory(
        SPONSORS_PER_CHILD=2, STRIPE_API_BASE=sim.base_url, CSP_FORM_ACTION=[sim.base_url]
    )
    kids = load_children(shared, import_feed, 5)
    first, second = sponsor(target_app=shared), sponsor(target_app=shared)
    one, two = signed_in_client(shared, first), signed_in_client(shared, second)
    row_one, _ = sponsor_through_stripe(shared, one, sim, kids.tokens[0])
    row_two, _ = sponsor_through_stripe(shared, two, sim, kids.tokens[0])
    pages = [
        c.get(f"/my/sponsorships/{r.portal_token}").get_data(as_text=True)
        for c, r in ((one, row_one), (two, row_two))
    ]

    def facts(page: str) -> str:
        return re.search(r'<article class="profile">.*?</section>', page, re.S).group(0)

    assert facts(pages[0]) == facts(pages[1])
    with shared.app_context():
        ledger = db.session.scalars(select(Disclosure).order_by(Disclosure.id)).all()
        assert len(ledger) == 2 and ledger[0].user_id != ledger[1].user_id
        assert ledger[0].content_hash == ledger[1].content_hash
        assert ledger[0].update_ids == ledger[1].update_ids
        db.session.remove()


def test_suspension_and_an_outdated_code_hide_every_child(
    pay_app, app, import_feed, sponsor, sim, make_user
):
    kids = load_children(pay_app, import_feed, 5)
    user = sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, user)
    row, _ = sponsor_through_stripe(pay_app, client, sim, kids.tokens[0])
    officer = make_user(roles=("safeguarding_officer",))
    staff_client = pay_app.test_client()
    sign_in(staff_client, officer.email, totp_secret=officer.totp_secret)
    overview = staff_client.get("/staff/sponsorship").get_data(as_text=True)
    assert kids.aliases[1] in overview and user.email in overview
    response = staff_client.post(
        "/staff/sponsorship/suspend",
        data={
            "csrf_token": csrf_token(staff_client, "/staff/sponsorship"),
            "email": user.email,
            "reason": "concern_raised",
        },
    )
    assert response.status_code == 302
    paths = [
        "/my/sponsorships",
        f"/my/sponsorships/{row.portal_token}",
        "/sponsor",
        f"/sponsor/{kids.tokens[1]}",
    ]
    for path in paths:
        body = client.get(path).get_data(as_text=True)
        assert not any(alias in body for alias in kids.aliases), path
    with pay_app.app_context():
        ledger_rows = db.session.scalar(select(func.count()).select_from(Disclosure))
        from donorhub.audit import AuditEvent

        actions = db.session.scalars(select(AuditEvent.action)).all()
        assert "sponsorship.sponsor_suspended" in actions
        suspension_id = db.session.execute(text("SELECT id FROM sponsor_suspensions")).scalar()
        db.session.remove()
    assert ledger_rows == 0  # nothing was shown, so nothing is recorded
    fundraiser = make_user(roles=("fundraiser",))
    other = pay_app.test_client()
    sign_in(other, fundraiser.email, totp_secret=fundraiser.totp_secret)
    assert other.get("/staff/sponsorship").status_code == 403
    staff_client.post(
        f"/staff/sponsorship/suspensions/{suspension_id}/lift",
        data={"csrf_token": csrf_token(staff_client, "/staff/sponsorship")},
    )
    assert kids.aliases[0] in client.get(f"/my/sponsorships/{row.portal_token}").get_data(
        as_text=True
    )
    # A new version of the code: until accepted again, no child content.
    with pay_app.app_context():
        db.session.execute(ConductAcceptance.__table__.update().values(version="2025-01"))
        db.session.commit()
        assert not services.may_see_children(
            db.session.get(__import__("donorhub.accounts.models", fromlist=["User"]).User, user.id)
        )
        db.session.remove()
    body = client.get(f"/my/sponsorships/{row.portal_token}").get_data(as_text=True)
    assert not mentions(body, kids.aliases[0]) and "code of conduct has changed" in body
