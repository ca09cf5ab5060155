"""Scheduled publication and content-free notifications (frozen clock, real SMTP)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from donorhub.children import review
from donorhub.children.models import Child, ChildUpdate, ReviewStatus
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.mail.sender import send_due_mail
from donorhub.sponsorship import conduct
from donorhub.sponsorship.models import ConductAcceptance, Sponsorship, SponsorshipStatus
from donorhub.updates import jobs, services
from donorhub.updates.models import NotificationChoice, Publication, UpdateNotification
from tests.feed.builders import Batch, crowd, exit_record, update
from tests.helpers import csrf_token, mentions, sign_in

IMPORTED = datetime(2026, 11, 20, 12, tzinfo=UTC)


def seed(app, import_feed, *, texts=True, sponsors=2):
    """Five listed children with approved news; `sponsors` sponsors of the first child."""
    records = crowd(5)
    updates = [update(r["ref"], text="She read a whole book." if texts else None) for r in records]
    import_feed(Batch().add(*records, *updates), now=IMPORTED)
    return records


def approve_all(app, officer_id):
    from donorhub.accounts.models import User

    with app.app_context():
        officer = db.session.get(User, officer_id)
        for item in review.review_queue():
            review.approve(officer, item.kind, item.id)
        db.session.commit()


def sponsor(app, user_id, child_id):
    with app.app_context():
        db.session.add(ConductAcceptance(user_id=user_id, version=conduct.CURRENT_VERSION))
        db.session.add(
            Sponsorship(
                user_id=user_id,
                child_id=child_id,
                status=SponsorshipStatus.ACTIVE,
                amount_minor=2500,
                currency="gbp",
                started_at=IMPORTED,
            )
        )
        db.session.commit()


def first_child_id(app):
    with app.app_context():
        return db.session.scalar(select(Child.id).order_by(Child.id))


def run_publish(app, when):
    with time_machine.travel(when, tick=False), app.app_context():
        return jobs.publish_updates()


def run_notify(app, when):
    with time_machine.travel(when, tick=False), app.app_context():
        return jobs.send_update_notifications()


@pytest.mark.parametrize(
    "today,due,following",
    [
        (date(2026, 11, 28), date(2026, 10, 15), date(2027, 1, 15)),
        (date(2026, 10, 15), date(2026, 10, 15), date(2027, 1, 15)),
        (date(2026, 10, 14), date(2026, 7, 15), date(2026, 10, 15)),
        (date(2027, 1, 3), date(2026, 10, 15), date(2027, 1, 15)),
    ],
)
def test_quarterly_schedule(app, today, due, following):
    with app.app_context():
        assert services.due_date(today) == due
        assert services.next_publication(today) == following


def test_monthly_schedule(app_factory):
    app = app_factory(UPDATES_PUBLICATION_CADENCE="monthly", UPDATES_PUBLICATION_DAY=1)
    with app.app_context():
        assert services.due_date(date(2026, 11, 28)) == date(2026, 11, 1)


def test_approved_updates_wait_for_the_schedule_day_then_appear_together(
    app, import_feed, make_user
):
    officer = make_user(roles=("safeguarding_officer",))
    seed(app, import_feed)
    approve_all(app, officer.id)
    # 2026-11-28 is after the 2026-10-15 date, which had no publication: caught up once.
    assert run_publish(app, "2026-11-28 05:00:00+00:00").startswith("published 5 updates")
    assert run_publish(app, "2026-11-29 05:00:00+00:00") == "nothing due"
    with app.app_context():
        published = db.session.scalars(select(ChildUpdate.published_at)).all()
        assert len(set(published)) == 1 and None not in published
        assert db.session.scalar(select(Publication.scheduled_for)) == date(2026, 10, 15)
    # Approved later: waits for the next schedule day, whatever day it was approved.
    records = crowd(5, age_band="9-11")
    import_feed(Batch().add(*records, update(records[0]["ref"], text="New term.")), now=IMPORTED)
    approve_all(app, officer.id)
    assert run_publish(app, "2026-12-20 05:00:00+00:00") == "nothing due"
    assert run_publish(app, "2027-01-15 05:00:00+00:00").startswith("published 1 updates")


def test_unapproved_and_unconsented_updates_are_not_published(app, import_feed, make_user):
    officer = make_user(roles=("safeguarding_officer",))
    records = crowd(
        5, consent={"profile": True, "updates": False, "basis": "cwc_order", "expires": "2027-Q2"}
    )
    others = crowd(5, age_band="9-11")
    import_feed(
        Batch().add(
            *records,
            *others,
            update(records[0]["ref"], text="She planted beans."),
            update(others[0]["ref"], text="Waiting."),
        ),
        now=IMPORTED,
    )
    with app.app_context():
        from donorhub.accounts.models import User

        officer_user = db.session.get(User, officer.id)
        first = db.session.scalars(select(ChildUpdate).order_by(ChildUpdate.id)).first()
        review.approve(officer_user, "update", first.id)
        db.session.commit()
    run_publish(app, "2026-11-28 05:00:00+00:00")
    with app.app_context():
        states = db.session.execute(
            select(ChildUpdate.status, ChildUpdate.published_at).order_by(ChildUpdate.id)
        ).all()
    # The approved one lacks update consent: it waits. The other was never approved.
    assert [(s.value, p is None) for s, p in states] == [("approved", True), ("pending", True)]


def test_only_coded_updates_are_auto_approved_and_only_when_configured(app_factory, import_feed):
    app = app_factory(UPDATES_AUTO_APPROVE_CODED=True)
    records = crowd(5)
    with app.app_context():
        from donorhub.feed import importer as feed_services

        feed_services.import_batch(
            Batch()
            .add(
                *records,
                update(records[0]["ref"]),
                update(records[1]["ref"], text="Free text is never automatic."),
            )
            .bytes(),
            source="test",
            now=IMPORTED,
        )
        from donorhub.children import services as children

        children.publish_releases(IMPORTED)  # the weekly release schedule came round
        db.session.commit()
    run_publish(app, "2026-11-28 05:00:00+00:00")
    with app.app_context():
        rows = db.session.execute(
            select(
                ChildUpdate.original_text, ChildUpdate.status, ChildUpdate.published_at
            ).order_by(ChildUpdate.id)
        ).all()
    assert [(t is None, s, p is not None) for t, s, p in rows] == [
        (True, ReviewStatus.APPROVED, True),
        (False, ReviewStatus.PENDING, False),
    ]


def test_sponsors_are_told_once_that_news_is_waiting_and_nothing_more(
    app, import_feed, make_user, mailbox, log_guard
):
    officer = make_user(roles=("safeguarding_officer",))
    first, second = make_user(), make_user()
    seed(app, import_feed)
    approve_all(app, officer.id)
    child_id = first_child_id(app)
    sponsor(app, first.id, child_id)
    sponsor(app, second.id, child_id)
    run_publish(app, "2026-11-28 05:00:00+00:00")
    assert run_notify(app, "2026-11-28 05:10:00+00:00") == "mailed=2"
    assert run_notify(app, "2026-11-28 05:20:00+00:00") == "nobody to notify"
    with app.app_context():
        assert send_due_mail().sent == 2
        alias = db.session.get(Child, child_id).alias
    for person in (first, second):
        [mail] = mailbox.to(person.email)
        assert mail.subject == "A new update is waiting for you"
        body = mail.message.as_string()
        assert not mentions(body, alias) and "book" not in body
        assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert mail.message["List-Unsubscribe"].startswith("<http://donorhub.test/updates/")


def test_a_crash_midway_neither_repeats_nor_skips_anyone(app, import_feed, make_user, monkeypatch):
    officer = make_user(roles=("safeguarding_officer",))
    sponsors = [make_user() for _ in range(4)]
    seed(app, import_feed)
    approve_all(app, officer.id)
    with app.app_context():
        child_ids = db.session.scalars(select(Child.id).order_by(Child.id)).all()
    for person, child_id in zip(sponsors, child_ids, strict=False):
        sponsor(app, person.id, child_id)
    run_publish(app, "2026-11-28 05:00:00+00:00")
    original = services.notify_one
    calls = {"n": 0}

    def crash_on_third(user_id, publication):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed mid-run")
        return original(user_id, publication)

    monkeypatch.setattr(services, "notify_one", crash_on_third)
    with pytest.raises(RuntimeError):
        run_notify(app, "2026-11-28 05:10:00+00:00")
    monkeypatch.setattr(services, "notify_one", original)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(UpdateNotification)) == 2
    assert run_notify(app, "2026-11-28 05:20:00+00:00") == "mailed=2"
    with app.app_context():
        recipients = db.session.scalars(select(OutboxMessage.recipient)).all()
        assert sorted(recipients) == sorted(p.email for p in sponsors)
        assert db.session.scalar(select(Publication.notifications_done_at)) is not None


def test_preferences_none_and_digest(app, import_feed, make_user):
    officer = make_user(roles=("safeguarding_officer",))
    quiet, digest = make_user(), make_user()
    seed(app, import_feed)
    approve_all(app, officer.id)
    child_id = first_child_id(app)
    for person, choice in ((quiet, NotificationChoice.NONE), (digest, NotificationChoice.DIGEST)):
        sponsor(app, person.id, child_id)
        with app.app_context():
            from donorhub.accounts.models import User

            services.set_preference(db.session.get(User, person.id), choice)
            db.session.commit()
    run_publish(app, "2026-11-28 05:00:00+00:00")
    assert run_notify(app, "2026-11-28 05:10:00+00:00") == "mailed=1, opted_out=1"


def test_one_click_unsubscribe_without_a_form_token(app, import_feed, make_user):
    person = make_user()
    with app.app_context():
        url = services.unsubscribe_url(person.id)
        db.session.commit()
    path = url.removeprefix("http://donorhub.test")
    client = app.test_client()
    assert "Stop these e-mails" in client.get(path).get_data(as_text=True)
    with app.app_context():
        assert services.preference(person.id).choice == NotificationChoice.EACH
    response = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    with app.app_context():
        assert services.preference(person.id).choice == NotificationChoice.NONE
    assert client.post(path[:-3] + "xyz").status_code == 400


def test_the_preferences_page(app, make_user):
    person = make_user()
    client = app.test_client()
    sign_in(client, person.email)
    page = client.get("/account/notifications")
    assert page.status_code == 200
    token = csrf_token(client, "/account/notifications")
    assert (
        client.post(
            "/account/notifications", data={"csrf_token": token, "choice": "weekly"}
        ).status_code
        == 422
    )
    assert (
        client.post(
            "/account/notifications", data={"csrf_token": token, "choice": "digest"}
        ).status_code
        == 302
    )
    with app.app_context():
        assert services.preference(person.id).choice == NotificationChoice.DIGEST


def test_exit_withdraws_unseen_updates_at_once_and_published_ones_with_the_notice(
    app, import_feed, make_user
):
    from donorhub.sponsorship import jobs as sponsorship_jobs

    officer = make_user(roles=("safeguarding_officer",))
    records = seed(app, import_feed)
    approve_all(app, officer.id)
    run_publish(app, "2026-11-28 05:00:00+00:00")
    # News still waiting for review at the exit was never seen by a sponsor: purged with it.
    import_feed(Batch().add(update(records[0]["ref"], text="She planted a tree.")), now=IMPORTED)
    import_feed(Batch().add(exit_record(records[0]["ref"])), now=IMPORTED)
    with app.app_context():
        child_id = first_child_id(app)
        rows = db.session.scalars(select(ChildUpdate).where(ChildUpdate.child_id == child_id))
        by_status = {u.status: u for u in rows}
        assert set(by_status) == {ReviewStatus.APPROVED, ReviewStatus.WITHDRAWN}
        assert by_status[ReviewStatus.WITHDRAWN].original_text is None
        # What sponsors already read stays until the neutral notice ...
        assert by_status[ReviewStatus.APPROVED].approved_text == "She read a whole book."
        sponsorship_jobs.send_due_exit_notices(IMPORTED + timedelta(days=22))
        # ... which purges it.
        rows = db.session.scalars(select(ChildUpdate).where(ChildUpdate.child_id == child_id))
        assert all(u.status is ReviewStatus.WITHDRAWN and u.approved_text is None for u in rows)


def test_the_portal_shows_home_news_and_suppressed_counts_of_the_released_state(
    app, import_feed, make_user
):
    from tests.feed.builders import home_stats

    officer = make_user(roles=("safeguarding_officer",))
    person = make_user()
    records = crowd(5)
    counts = {"in_vocational_training": 5, "reintegrated": 2, "new_arrivals": 1}
    import_feed(
        Batch().add(
            *records,
            home_stats("MH-02", children_in_care=37, in_school=30, **counts),
            home_stats("MH-01", children_in_care=20, in_school=11, **counts),
            update(
                home="MH-02",
                milestones=["celebrated_festival"],
                text="The garden gave its first tomatoes.",
            ),
        ),
        now=IMPORTED,
    )
    approve_all(app, officer.id)
    sponsor(app, person.id, first_child_id(app))
    run_publish(app, "2026-11-28 05:00:00+00:00")
    with app.app_context():
        token = db.session.scalar(select(Sponsorship.portal_token))
    client = app.test_client()
    sign_in(client, person.email)
    page = client.get(f"/my/sponsorships/{token}").get_data(as_text=True)
    assert "News from the safe homes in Maharashtra" in page
    assert "The children at the home celebrated" in page
    assert "The garden gave its first tomatoes." in page
    # Both Maharashtra homes together: 57 in care, 41 in school, 10 learning a trade.
    assert ">57<" in page and ">41<" in page and ">10<" in page
    # 4 and 2 are below K=5 (and their row had hidden cells already).
    assert ">4<" not in page and ">2<" not in page
    assert ">37<" not in page and ">30<" not in page  # never one home's own counts
    assert "MH-02" not in page and "MH-01" not in page
