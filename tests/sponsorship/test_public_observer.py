"""The public pages as an outside observer sees them, before and after each feed batch,
sponsorship and publication (tests/sponsorship/observer.py takes and compares the snapshots).

Between two publications the only change anyone may see is a card turning from open to
"sponsored"; an exit must look exactly like a sponsorship; no hidden child and no finer
attribute may appear; at a publication no card becomes finer and every class of identical
cards shown has at least K members. Free text about a child is never public, and the order
of the cards says nothing about when a child arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from donorhub.accounts.models import User
from donorhub.children import review
from donorhub.children import services as children_services
from donorhub.children.models import Child, ChildText
from donorhub.extensions import db
from donorhub.feed import importer
from donorhub.feed.pseudonyms import keyed_hash
from tests.feed.builders import Batch, child, exit_record, update
from tests.metrics import METRICS
from tests.sponsorship import observer
from tests.sponsorship.helpers import choose, signed_in_client, sponsor_through_stripe

K = 5
#: One safe home per region the crowd uses: the feed accepts a child's region only as her
#: home's region.
HOMES = {
    "MH-01": "Maharashtra",
    "MH-02": "Maharashtra",
    "KA-01": "Karnataka",
    "GA-01": "Goa",
    "GJ-01": "Gujarat",
    "KL-01": "Kerala",
    "PB-01": "Punjab",
    "AS-01": "Assam",
    "DL-01": "Delhi",
    "WB-01": "West Bengal",
}
HOME_OF = {region: code for code, region in HOMES.items()}
#: A Friday in 2026-Q4; the feed builders' periods (2026-Q3) are in the past.
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def kid(region: str = "Maharashtra", **fields) -> dict:
    return child(home=HOME_OF[region], region=region, **fields)


@dataclass
class World:
    """The children a test seeded, by group, and what the database knows of them."""

    refs: dict[str, list[str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # ref -> public token
    aliases: dict[str, str] = field(default_factory=dict)  # ref -> alias

    def group_tokens(self, *groups: str) -> list[str]:
        return [self.tokens[r] for g in groups for r in self.refs[g]]

    def group_aliases(self, *groups: str) -> list[str]:
        return [self.aliases[r] for g in groups for r in self.refs[g]]

    def ref_of(self, alias: str) -> str:
        return next(ref for ref, a in self.aliases.items() if a == alias)


def feed(app, world: World, *groups: tuple[str, list[dict]], now: datetime | None = None):
    """Import one batch (children of the named groups, exits, updates) as the job does."""
    batch = Batch()
    for name, records in groups:
        batch.add(*records)
        world.refs.setdefault(name, []).extend(r["ref"] for r in records if r["type"] == "child")
    with app.app_context():
        report = importer.import_batch(batch.bytes(), source="test", now=now or datetime.now(UTC))
        db.session.commit()
        key, partner = app.config["FEED_PSEUDONYM_KEY"], app.config["FEED_PARTNER"]
        for ref in (r for refs in world.refs.values() for r in refs):
            row = db.session.scalar(
                select(Child).where(Child.ref_hash == keyed_hash(key, partner, "child", ref))
            )
            if row is not None:
                world.tokens[ref], world.aliases[ref] = row.public_token, row.alias
        db.session.remove()
    assert not report.rejected, report
    return report


def publish(app, now: datetime | None = None) -> None:
    """The scheduled publication: the only moment public releases are recomputed."""
    with app.app_context():
        children_services.publish_releases(now or datetime.now(UTC))
        db.session.commit()
        db.session.remove()


def wipe(app) -> None:
    """Empty every table, so a second scenario starts from the same state as the first."""
    with app.app_context():
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
        db.session.remove()


def seed_crowd(app, about: str | None = None) -> World:
    """A class of exactly K look-alikes (A), a class of K+1 (B), K children alike only once
    their state is hidden (C, shown as "India"), and four children no crowd can hide (S2,
    a pair that shares A's coarse description; S, two loners). Published at once."""
    world = World()
    a = [kid(interests=["drawing"]) for _ in range(K)]
    if about:
        a[0]["about"] = about
    b = [
        kid(gender="boy", age_band="9-11", joined_year=2025, interests=["football"])
        for _ in range(K + 1)
    ]
    c = [
        kid(
            region,
            age_band="15-17",
            stage="vocational_training",
            joined_year=2023,
            interests=["sewing"],
        )
        for region in ("Goa", "Gujarat", "Kerala", "Punjab", "Assam")
    ]
    pair = [kid("Karnataka", joined_year=2023, interests=["dance"]) for _ in range(2)]
    loners = [
        kid(
            "Goa",
            gender="boy",
            age_band="15-17",
            stage="residential_care",
            joined_year=2022,
            interests=["chess"],
        ),
        kid(
            "Delhi",
            gender="not_stated",
            age_band="18+",
            stage="aftercare",
            joined_year=2021,
            interests=["cooking"],
        ),
    ]
    feed(app, world, ("A", a), ("B", b), ("C", c), ("S2", pair), ("S", loners))
    publish(app)
    return world


def snapshot(app, world: World) -> observer.Snapshot:
    """A fresh anonymous visitor's snapshot; she also asks for every token ever issued."""
    return observer.take_snapshot(app.test_client(), known_tokens=world.tokens.values())


def middle_card(snap: observer.Snapshot, aliases: list[str]) -> str:
    """One of `aliases` that is neither first nor last in the listing, so that a card moved
    to either end is seen to move."""
    order = [c.alias for c in snap.listing]
    return next(a for a in aliases if 0 < order.index(a) < len(order) - 1)


def try_to_choose(app, sponsor, token: str, alias: str) -> tuple:
    """What a signed-in visitor learns by pressing "Sponsor" on a card: the status of the
    answer and its text (or that it sent her to the checkout)."""
    response = choose(signed_in_client(app, sponsor(target_app=app)), token)
    if response.status_code == 303:
        return (303, "to the checkout")
    return (response.status_code, observer.visible_lines(response.get_data(as_text=True), alias))


def sponsor_child(app, sim, sponsor, token: str) -> None:
    """A sponsor chooses the child, pays on the simulator, and the webhooks arrive."""
    person = sponsor(target_app=app)
    sponsor_through_stripe(app, signed_in_client(app, person), sim, token)


@pytest.fixture
def clock():
    """Time stands at START and moves on with the test, so no midnight passes mid-test."""
    with time_machine.travel(START, tick=True) as traveller:
        yield traveller


@pytest.fixture
def observed_app(app_factory, sim):
    return app_factory(
        STRIPE_API_BASE=sim.base_url, CSP_FORM_ACTION=[sim.base_url], FEED_HOMES=HOMES
    )


# Exits and sponsorships between publications ------------------------------------------------


def test_an_exit_and_a_sponsorship_look_the_same_and_publication_stays_monotone(
    observed_app, sim, sponsor, clock
):
    app = observed_app
    seen: dict[str, list[tuple]] = {}
    for event in ("exit", "sponsorship"):
        wipe(app)
        sim.reset()
        world = seed_crowd(app)
        hidden = world.group_tokens("S", "S2"), world.group_aliases("S", "S2")
        before = snapshot(app, world)
        observer.assert_not_shown(before, *hidden)
        observer.assert_k_anonymous(before, K)
        observer.check_consistency(before)
        target = middle_card(before, world.group_aliases("A"))
        if event == "exit":
            feed(app, world, ("exit", [exit_record(world.ref_of(target))]))
        else:
            sponsor_child(app, sim, sponsor, before.token_of(target))
        after = snapshot(app, world)
        changes = observer.diff(before, after)
        # At most her own card changes (to "sponsored"), or nothing until the publication.
        assert observer.subjects(changes) <= {target}, changes
        assert observer.only_open_to_sponsored(before, after) <= {target}
        observer.assert_not_shown(after, *hidden)
        observer.assert_k_anonymous(after, K)
        observer.check_consistency(after)
        # Trying to sponsor her tells a signed-in visitor no more than the pages do.
        probe = try_to_choose(app, sponsor, before.token_of(target), target)
        seen[event] = [*observer.canonical(changes), ("choose", *probe)]

        publish(app)
        published = snapshot(app, world)
        observer.assert_k_anonymous(published, K)
        observer.assert_monotone(after, published)
        observer.assert_monotone(before, published)
        observer.check_consistency(published)
        card = published.card(target)
        if event == "sponsorship":
            assert card is not None and card.state == "sponsored"
        else:
            assert card is None or card.state == "sponsored"
    METRICS.report("observer: scenarios from one starting state (exit, sponsorship)", len(seen))
    assert seen["exit"] == seen["sponsorship"], (seen["exit"], seen["sponsorship"])


def test_between_publications_only_open_to_sponsored_changes(observed_app, sim, sponsor, clock):
    app = observed_app
    world = seed_crowd(app)
    last = snapshot(app, world)
    steps = 0
    #: Whether the cards of sponsored or departed children turned "sponsored" at once (True)
    #: or only at the next publication (False): the same for every event, whatever it was.
    at_once: set[bool] = set()
    history = [last]

    def step(acted_on: set[str], *, unseen: tuple[str, ...] = ()) -> observer.Snapshot:
        nonlocal last, steps
        now = snapshot(app, world)
        turned = observer.only_open_to_sponsored(last, now)
        assert turned <= acted_on, (turned, acted_on)
        if acted_on:
            assert turned in (acted_on, set()), (turned, acted_on)
            at_once.add(turned == acted_on)
        # Whoever the last snapshot did not show (the children no crowd hid, newcomers) is
        # still on no page at all.
        hidden = [
            ref
            for ref in world.refs["S"]
            + world.refs["S2"]
            + [r for group in unseen for r in world.refs[group]]
            if world.aliases[ref] not in last.aliases
        ]
        observer.assert_not_shown(
            now, [world.tokens[r] for r in hidden], [world.aliases[r] for r in hidden]
        )
        observer.assert_k_anonymous(now, K)
        observer.check_consistency(now)
        last, steps = now, steps + 1
        history.append(now)
        return now

    # New arrivals (a class of K and a loner) stay unseen until the next publication.
    newcomers = [kid(age_band="6-8", interests=["singing"]) for _ in range(K)]
    feed(app, world, ("D", newcomers), ("D1", [kid("West Bengal", age_band="0-5")]))
    step(set(), unseen=("D", "D1"))
    b_alias, b_alias_held = world.group_aliases("B")[:2]
    # A hold that is never paid: the visitor went to the checkout and left.
    response = choose(signed_in_client(app, sponsor(target_app=app)), last.token_of(b_alias_held))
    assert response.status_code == 303
    step(set(), unseen=("D", "D1"))
    # A sponsorship.
    sponsor_child(app, sim, sponsor, last.token_of(b_alias))
    step({b_alias}, unseen=("D", "D1"))
    # The exit of an "India" card, with news of another child in the same batch.
    c_ref, a_ref = world.refs["C"][0], world.refs["A"][1]
    feed(app, world, ("exit", [exit_record(c_ref), update(a_ref)]))
    step({world.aliases[c_ref]}, unseen=("D", "D1"))
    # The exit of a child nobody could see changes nothing.
    feed(app, world, ("exit", [exit_record(world.refs["S2"][0])]))
    step(set(), unseen=("D", "D1"))
    # An arrival and an exit from the class of exactly K in one batch.
    a_gone = world.refs["A"][2]
    feed(
        app,
        world,
        ("E", [kid(age_band="6-8", interests=["singing"])]),
        ("exit", [exit_record(a_gone)]),
    )
    step({world.aliases[a_gone]}, unseen=("D", "D1", "E"))
    # The exit of a newcomer before anyone saw her.
    feed(app, world, ("exit", [exit_record(world.refs["D"][0])]))
    step(set(), unseen=("D", "D1", "E"))
    # News from the partner: one child moves on to another stage, one withdraws her consent
    # to a profile, and the sponsored child leaves.
    no_profile = {
        "profile": False,
        "updates": False,
        "basis": "guardian_and_child",
        "expires": "2027-Q2",
    }
    changed = [
        kid(
            "Gujarat",
            ref=world.refs["C"][1],
            age_band="15-17",
            stage="reintegration",
            joined_year=2023,
            interests=["sewing"],
        ),
        kid(ref=world.refs["A"][3], interests=["drawing"], consent=no_profile),
    ]
    feed(app, world, ("changed", changed), ("exit", [exit_record(world.ref_of(b_alias))]))
    step(set(), unseen=("D", "D1", "E"))

    assert len(at_once) == 1, "sponsorships and exits showed at different times"

    before_publication = last
    publish(app)
    published = snapshot(app, world)
    observer.assert_k_anonymous(published, K)
    observer.assert_monotone(before_publication, published)
    observer.check_consistency(published)
    history.append(published)
    for ref in (c_ref, a_gone, world.ref_of(b_alias)):
        gone = published.card(world.aliases[ref])
        assert gone is None or gone.state == "sponsored"
    withdrawn = world.refs["A"][3]
    assert published.card(world.aliases[withdrawn]) is None
    # Children who left before anyone saw them never appear.
    left_unseen = [world.refs["S2"][0], world.refs["D"][0]]
    observer.assert_not_shown(
        published, [world.tokens[r] for r in left_unseen], [world.aliases[r] for r in left_unseen]
    )
    last = published
    # After the publication, an exit again only turns a card "sponsored".
    b_ref = world.refs["B"][3]
    feed(app, world, ("exit", [exit_record(b_ref)]))
    step({world.aliases[b_ref]}, unseen=("D", "D1", "E"))
    # She gives her consent again: at the next publication her card, if shown, says nothing
    # that no earlier card of hers said.
    feed(app, world, ("changed", [kid(ref=withdrawn, interests=["drawing"])]))
    step(set(), unseen=("D", "D1", "E"))
    publish(app)
    republished = snapshot(app, world)
    # A crowd hides her again, at the level her look-alikes reached meanwhile.
    assert republished.card(world.aliases[withdrawn]) is not None
    observer.assert_k_anonymous(republished, K)
    observer.assert_monotone(last, republished)
    observer.assert_reveals_nothing_new(history, republished)
    observer.check_consistency(republished)
    METRICS.report("observer: batches checked between publications", steps)


# What is shown publicly ---------------------------------------------------------------------

PLANTED_ABOUT = "She hums a tune about green kites over the river while she paints the sky."


def test_approved_about_text_reaches_only_the_childs_sponsor(observed_app, sim, sponsor, clock):
    app = observed_app
    world = seed_crowd(app, about=PLANTED_ABOUT)
    ref = world.refs["A"][0]
    with app.app_context():
        officer = User(email="officer@x.invalid", full_name="Officer", password_hash="x")  # noqa: S106 - never signs in
        db.session.add(officer)
        db.session.flush()
        text = db.session.scalar(
            select(ChildText).join(Child).where(Child.public_token == world.tokens[ref])
        )
        review.approve(officer, "about", text.id)  # common words only: nothing to confirm
        db.session.commit()
        db.session.remove()
    publish(app)
    fragments = (PLANTED_ABOUT, "green kites", "hums a tune")
    public = snapshot(app, world)
    observer.assert_k_anonymous(public, K)  # free text would make her card one of a kind
    for fragment in fragments:
        assert fragment not in public.visible_text(), fragment

    person = sponsor(target_app=app)
    client = signed_in_client(app, person)
    row, _ = sponsor_through_stripe(app, client, sim, world.tokens[ref])
    portal = client.get(f"/my/sponsorships/{row.portal_token}").get_data(as_text=True)
    assert PLANTED_ABOUT in portal
    # The sponsor of one of her look-alikes does not read it.
    other = signed_in_client(app, sponsor(target_app=app))
    other_row, _ = sponsor_through_stripe(app, other, sim, world.tokens[world.refs["A"][1]])
    other_portal = other.get(f"/my/sponsorships/{other_row.portal_token}")
    other_page = other_portal.get_data(as_text=True)
    assert other_portal.status_code == 200 and world.aliases[world.refs["A"][1]] in other_page
    assert "green kites" not in other_page
    publish(app)
    for fragment in fragments:
        assert fragment not in snapshot(app, world).visible_text(), fragment


def test_shown_classes_stay_at_k_after_six_sponsorships(observed_app, sim, sponsor, clock):
    app = observed_app
    world = seed_crowd(app)
    before = snapshot(app, world)
    observer.assert_k_anonymous(before, K)
    # One of the class of exactly K, one of the "India" class, four of the class of K+1.
    chosen = [world.group_aliases("A")[0], world.group_aliases("C")[0]]
    chosen += world.group_aliases("B")[:4]
    for alias in chosen:
        sponsor_child(app, sim, sponsor, before.token_of(alias))
    after = snapshot(app, world)
    observer.assert_k_anonymous(after, K)
    assert observer.only_open_to_sponsored(before, after) <= set(chosen)
    publish(app)
    published = snapshot(app, world)
    observer.assert_k_anonymous(published, K)
    observer.assert_monotone(after, published)
    assert observer.only_open_to_sponsored(before, published) == set(chosen)
    classes = observer.shown_classes(published)
    METRICS.report("observer: smallest shown class after 6 sponsorships", min(classes.values()))


def arrive_sixty(app) -> tuple[World, list[str]]:
    """60 children (12 classes of K) in 6 batches half an hour apart; returns the aliases in
    arrival order (batch, then line)."""
    world = World()
    ages, interests = ("6-8", "9-11", "12-14", "15-17"), ("drawing", "football", "reading")
    classes = [(age, interest) for age in ages for interest in interests]
    arrival_refs: list[str] = []
    for batch_number in range(6):
        records = [
            kid(
                age_band=classes[(batch_number * 10 + line) % 12][0],
                interests=[classes[(batch_number * 10 + line) % 12][1]],
            )
            for line in range(10)
        ]
        arrival_refs += [r["ref"] for r in records]
        at = START.replace(hour=1) + timedelta(minutes=30 * batch_number)
        with time_machine.travel(at, tick=False):
            feed(app, world, (f"batch{batch_number}", records), now=at)
    return world, [world.aliases[ref] for ref in arrival_refs]


def listing_order(app, at: datetime) -> list[str]:
    with time_machine.travel(at, tick=False):
        return [card.alias for card in observer.take_snapshot_listing(app.test_client())]


def rank_correlation(order: list[str], reference: list[str]) -> float:
    """Spearman's rho between the positions of the same items in two orders."""
    position = {alias: i for i, alias in enumerate(reference)}
    n = len(order)
    d2 = sum((i - position[alias]) ** 2 for i, alias in enumerate(order))
    return 1 - 6 * d2 / (n * (n * n - 1))


def test_listing_order_says_nothing_of_arrival_and_changes_daily(app_factory):
    app = app_factory(FEED_HOMES=HOMES)
    world, arrival = arrive_sixty(app)
    day = START.replace(hour=4)
    with time_machine.travel(day, tick=False):
        publish(app, day)
    morning = listing_order(app, day.replace(hour=5))
    assert sorted(morning) == sorted(arrival), "every child of the twelve classes is listed"
    assert morning != arrival and morning != arrival[::-1]
    rho = rank_correlation(morning, arrival)
    METRICS.report("observer: rank correlation of listing order with arrival", round(rho, 3))
    assert abs(rho) < 0.6, rho
    # The same order all day, whatever arrives meanwhile.
    at = day.replace(hour=14)
    with time_machine.travel(at, tick=False):
        feed(app, world, ("late", [kid(age_band="6-8", interests=["drawing"])]), now=at)
    assert listing_order(app, day.replace(hour=23, minute=50)) == morning
    # A new order the next day.
    next_day = day + timedelta(days=1)
    with time_machine.travel(next_day, tick=False):
        publish(app, next_day)
    assert listing_order(app, next_day.replace(hour=12)) != morning


def test_match_me_does_not_always_pick_the_longest_waiting_child(app_factory):
    app = app_factory(FEED_HOMES=HOMES)
    _world, arrival = arrive_sixty(app)
    matched = []
    for offset in range(8):
        day = START.replace(hour=4) + timedelta(days=offset)
        with time_machine.travel(day, tick=False):
            publish(app, day)
        with time_machine.travel(day.replace(hour=12), tick=False):
            client = app.test_client()
            for _ in range(2):
                response = client.get("/sponsor/match")
                assert response.status_code == 302
                token = response.headers["Location"].split("/sponsor/")[1].split("?")[0]
                matched.append(observer.alias_on_profile(client, token))
    longest_waiting, first_batch = arrival[0], set(arrival[:10])
    assert set(matched) != {longest_waiting}, matched
    assert not set(matched) <= first_batch, matched


@pytest.mark.parametrize(
    ("before", "after", "finer"),
    [
        (
            "{alias} is a girl aged 12 to 17 at a safe home in India.",
            "{alias} is a girl aged 12 to 14 at a safe home in India.",
            ["age"],
        ),
        (
            "{alias} is a girl aged 12 to 14 learning at a safe home in India.",
            "{alias} is a girl aged 12 to 14 going to school at a safe home in Maharashtra.",
            ["region", "stage"],
        ),
        (
            "{alias} is a child aged under 12 at a safe home in India.",
            "{alias} is a girl aged under 12 at a safe home in India.",
            ["gender"],
        ),
        ("{alias} joined more than a year ago.", "{alias} 2024.", ["joined"]),
        ("Enjoys drawing.", "Enjoys dance and drawing.", ["interests"]),
        (
            "{alias} is a girl aged 12 to 14 going to school at a safe home in Maharashtra.",
            "{alias} is a child aged 12 to 17 at a safe home in India.",
            [],
        ),
        ("{alias} 2024.", "{alias} joined more than a year ago.", []),
        ("Enjoys dance and drawing.", "Enjoys drawing.", []),
    ],
)
def test_the_monotone_check_sees_every_finer_attribute(before, after, finer):
    assert observer.finer_attributes([after], [before]) == finer
