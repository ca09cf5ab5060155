"""The safe homes' news and counts in the portal appear only at the child's released level:
pooled over the homes of the released state, or over every home when the child is released
only as "India". A sponsor never sees one home's news or counts the release does not show,
and the disclosure ledger records what was shown."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from donorhub.accounts.models import User
from donorhub.children import review
from donorhub.children import services as children
from donorhub.children.models import Child, ChildRelease, ChildUpdate
from donorhub.database import utcnow
from donorhub.extensions import db
from donorhub.sponsorship import conduct
from donorhub.sponsorship.models import (
    ConductAcceptance,
    Disclosure,
    Sponsorship,
    SponsorshipStatus,
)
from tests.feed.builders import Batch, child, home_stats, update
from tests.helpers import sign_in

#: Each home's counts (children in care, in school, learning a trade, moved on, new).
COUNTS = {
    "MH-01": (21, 12, 6, 7, 8),
    "MH-02": (37, 30, 5, 9, 6),
    "WB-01": (25, 10, 7, 6, 5),
    "DL-01": (23, 9, 8, 5, 7),  # the planted home: the only home in Delhi
}
MEASURES = ("children_in_care", "in_school", "in_vocational_training", "reintegrated")
NEWS = {
    "MH-01": "The library got new shelves.",
    "MH-02": "The garden gave its first tomatoes.",
    "WB-01": "The football team won a match.",
    "DL-01": "The planted home painted its gate blue.",
}


def stats(home: str) -> dict:
    values = dict(
        zip((*MEASURES, "new_arrivals"), COUNTS[home], strict=True),
    )
    return home_stats(home, **values)


def home_section(page: str) -> str:
    match = re.search(r'<section aria-labelledby="home-heading">.*?</section>', page, re.S)
    assert match, "no home news on the page"
    return match.group(0)


def shown_counts(section: str) -> dict[str, str]:
    return dict(re.findall(r'<th scope="row">([^<]+)</th><td>([^<]+)</td>', section))


def seed(app, import_feed, officer_id: int) -> dict[str, int]:
    """Children released only as "India" in MH-02 and WB-01, children released as
    "Maharashtra" in MH-01, every home's counts and one approved, published news item per
    home. Returns a child id per kind."""
    india_mh = [child(home="MH-02", region="Maharashtra") for _ in range(3)]
    india_wb = [child(home="WB-01", region="West Bengal") for _ in range(2)]
    state_mh = [child(home="MH-01", region="Maharashtra", age_band="15-17") for _ in range(5)]
    news = [update(home=home, milestones=[], text=text) for home, text in NEWS.items()]
    import_feed(
        Batch().add(*india_mh, *india_wb, *state_mh, *[stats(home) for home in COUNTS], *news),
        now=utcnow(),
    )
    with app.app_context():
        officer = db.session.get(User, officer_id)
        for item in review.review_queue():
            review.approve(officer, item.kind, item.id)
        for row in db.session.scalars(select(ChildUpdate)):
            row.published_at = utcnow()
        releases = {
            home: db.session.execute(
                select(Child.id, ChildRelease.region_text)
                .join(ChildRelease)
                .where(Child.home_code == home)
            ).first()
            for home in ("MH-02", "WB-01", "MH-01")
        }
        db.session.commit()
        db.session.remove()
    assert releases["MH-02"][1] == "India" and releases["WB-01"][1] == "India"
    assert releases["MH-01"][1] == "Maharashtra"
    return {home: child_id for home, (child_id, _) in releases.items()}


def portal_of(app, make_user, child_id: int):
    """A signed-in sponsor of `child_id` and the URL of the sponsorship's page."""
    person = make_user()
    with app.app_context():
        db.session.add(ConductAcceptance(user_id=person.id, version=conduct.CURRENT_VERSION))
        row = Sponsorship(
            user_id=person.id,
            child_id=child_id,
            status=SponsorshipStatus.ACTIVE,
            amount_minor=2500,
            currency="gbp",
            started_at=utcnow(),
        )
        db.session.add(row)
        db.session.commit()
        url = f"/my/sponsorships/{row.portal_token}"
        db.session.remove()
    client = app.test_client()
    sign_in(client, person.email)
    return client, url


def pooled(homes) -> dict[str, str]:
    labels = ("Children in care", "In school", "Learning a trade", "Moved on safely")
    return {label: str(sum(COUNTS[home][i] for home in homes)) for i, label in enumerate(labels)}


def test_a_child_released_as_india_gets_every_home_pooled(app, import_feed, make_user):
    officer = make_user(roles=("safeguarding_officer",))
    ids = seed(app, import_feed, officer.id)
    in_mumbai, mumbai_url = portal_of(app, make_user, ids["MH-02"])
    in_bengal, bengal_url = portal_of(app, make_user, ids["WB-01"])
    mumbai_page = in_mumbai.get(mumbai_url).get_data(as_text=True)
    section = home_section(mumbai_page)
    # Nothing on the page says which state (let alone which home) the child lives in.
    for named in ("Maharashtra", "West Bengal", "Delhi", "MH-0", "WB-01", "DL-01"):
        assert named not in mumbai_page
    assert "News from the safe homes in India" in section
    # A sponsor whose child lives in another home sees the very same news and counts: the
    # section depends on the released level only, never on the child's home.
    assert home_section(in_bengal.get(bengal_url).get_data(as_text=True)) == section
    assert all(text in section for text in NEWS.values())
    # The counts are the sums over every home (each cell is at least K, so all are shown).
    counts = shown_counts(section)
    assert {label: counts[label] for label in pooled(COUNTS)} == pooled(COUNTS)
    # Never one home's own count: the planted home's 23 children in care appear nowhere.
    assert all(str(COUNTS[home][0]) not in counts.values() for home in COUNTS)


def test_a_child_released_as_a_state_gets_that_states_homes_only(app, import_feed, make_user):
    officer = make_user(roles=("safeguarding_officer",))
    ids = seed(app, import_feed, officer.id)
    client, url = portal_of(app, make_user, ids["MH-01"])
    section = home_section(client.get(url).get_data(as_text=True))
    assert "News from the safe homes in Maharashtra" in section
    assert NEWS["MH-01"] in section and NEWS["MH-02"] in section
    # The planted home (another state) and West Bengal's never reach this sponsor.
    assert NEWS["DL-01"] not in section and NEWS["WB-01"] not in section
    counts = shown_counts(section)
    assert {label: counts[label] for label in pooled(["MH-01", "MH-02"])} == pooled(
        ["MH-01", "MH-02"]
    )


def test_one_reporting_home_of_a_state_with_two_is_never_counted_alone(app, import_feed, make_user):
    from donorhub.children.models import HomeStat

    officer = make_user(roles=("safeguarding_officer",))
    ids = seed(app, import_feed, officer.id)
    with app.app_context():  # MH-01 reports a newer quarter; MH-02 has not yet
        db.session.add(
            HomeStat(
                home_code="MH-01",
                period="2026-Q4",
                **dict(zip((*MEASURES, "new_arrivals"), (99, 98, 97, 96, 95), strict=True)),
            )
        )
        db.session.commit()
        db.session.remove()
    client, url = portal_of(app, make_user, ids["MH-01"])
    section = home_section(client.get(url).get_data(as_text=True))
    # The latest quarter both homes reported, summed: never MH-01's newer counts alone.
    assert "99" not in section and "July to September 2026" in section
    counts = shown_counts(section)
    assert counts["Children in care"] == pooled(["MH-01", "MH-02"])["Children in care"]


def test_the_ledger_records_the_home_news_and_counts_shown(app, import_feed, make_user):
    officer = make_user(roles=("safeguarding_officer",))
    ids = seed(app, import_feed, officer.id)
    client, url = portal_of(app, make_user, ids["MH-01"])
    client.get(url)
    with app.app_context():
        [first] = db.session.scalars(select(Disclosure)).all()
        shown = set(
            db.session.scalars(
                select(ChildUpdate.id).where(ChildUpdate.home_code.in_(["MH-01", "MH-02"]))
            )
        )
        assert first.home_hash is not None and set(first.home_update_ids) == shown
        # New news from the pool is a new fact shown: a new row, the same day.
        news = db.session.scalar(select(ChildUpdate).where(ChildUpdate.home_code == "MH-01"))
        db.session.add(
            ChildUpdate(
                source_hash="f" * 64,
                home_code="MH-02",
                period="2026-Q3",
                category="education",
                milestones=[],
                approved_text="The children built a swing.",
                status=news.status,
                content_hash="e" * 64,
                published_at=utcnow() + timedelta(seconds=1),
            )
        )
        db.session.commit()
        db.session.remove()
    assert "The children built a swing." in client.get(url).get_data(as_text=True)
    with app.app_context():
        rows = db.session.scalars(select(Disclosure).order_by(Disclosure.id)).all()
        assert len(rows) == 2 and rows[0].profile_hash == rows[1].profile_hash
        assert rows[0].home_hash != rows[1].home_hash
        assert rows[0].content_hash != rows[1].content_hash
        db.session.remove()


def test_home_news_notifies_every_sponsor_whose_pool_holds_the_home(app, import_feed, make_user):
    from donorhub.updates import services as updates

    officer = make_user(roles=("safeguarding_officer",))
    ids = seed(app, import_feed, officer.id)
    people = {}
    for home, child_id in ids.items():
        person = make_user()
        people[home] = person.id
        with app.app_context():
            db.session.add(ConductAcceptance(user_id=person.id, version=conduct.CURRENT_VERSION))
            db.session.add(
                Sponsorship(
                    user_id=person.id,
                    child_id=child_id,
                    status=SponsorshipStatus.ACTIVE,
                    amount_minor=2500,
                    currency="gbp",
                )
            )
            db.session.commit()
            db.session.remove()

    def told_of(home: str) -> set[int]:
        from donorhub.updates.models import Publication

        with app.app_context():
            publication = Publication(scheduled_for=utcnow().date(), updates_published=1)
            db.session.add(publication)
            db.session.flush()
            news = db.session.scalar(select(ChildUpdate).where(ChildUpdate.home_code == home))
            news.publication_id = publication.id
            told = updates.recipients(publication)
            db.session.rollback()
            db.session.remove()
        return told

    # West Bengal's news reaches both "India" sponsors (whatever home their child is in),
    # and not the sponsor of a child released as Maharashtra.
    assert told_of("WB-01") == {people["MH-02"], people["WB-01"]}
    assert told_of("MH-01") == set(people.values())
    # The Maharashtra child exits: until the neutral notice her sponsor goes on hearing of
    # her pool's news like everyone else (the mails stopping would tell of the exit).
    with app.app_context():
        children.record_exit(db.session.get(Child, ids["MH-01"]), "2026-Q3", utcnow())
        db.session.commit()
        db.session.remove()
    assert told_of("MH-01") == set(people.values())
