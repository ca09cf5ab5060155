"""Importing the partner feed: effects exactly as the contract's table says."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select, text

from donorhub.children.models import (
    Child,
    ChildRelease,
    ChildStatus,
    ChildText,
    ChildUpdate,
    ExitNotice,
    HomeStat,
    ReviewStatus,
)
from donorhub.extensions import db
from donorhub.feed.models import FeedRun
from donorhub.mail.models import OutboxMessage
from tests.feed.builders import NOW, Batch, child, crowd, exit_record, home_stats, update

# The contract's own example, verbatim.
CONTRACT_EXAMPLE = b"""{"type": "header", "feed_version": 1, "partner": "mumbai-safe-homes", "batch": "2026q3-0007", "generated": "2026-10-02T06:00:00Z", "records": 4}
{"type": "child", "ref": "c-7f3a9e21b6", "home": "MH-02", "age_band": "12-14", "gender": "girl", "region": "Maharashtra", "stage": "education", "joined_year": 2024, "interests": ["drawing", "kabaddi"], "consent": {"profile": true, "updates": true, "basis": "guardian_and_child", "expires": "2027-Q2"}, "about": "Loves drawing birds and wants to be a teacher."}
{"type": "update", "id": "u-55c01d", "child": "c-7f3a9e21b6", "period": "2026-Q3", "category": "education", "milestones": ["passed_term_exams"], "text": "She finished her first full term and is proud of her maths."}
{"type": "home_stats", "home": "MH-02", "period": "2026-Q3", "children_in_care": 37, "in_school": 30, "in_vocational_training": 5, "reintegrated": 4, "new_arrivals": 3}
{"type": "exit", "child": "c-19bb04e7d2", "period": "2026-Q3"}
"""


def count(model, *where):
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_the_contract_example_imports(app, import_feed):
    report = import_feed(CONTRACT_EXAMPLE)
    assert (report.created, report.rejected, report.quarantined) == (3, 1, 0)
    assert report.problems == [
        {
            "line": 5,
            "field": "child",
            "effect": "record rejected",
            "rule": "the exit names a child the platform does not know",
        }
    ]
    with app.app_context():
        only = db.session.scalar(select(Child))
        assert only.alias and len(only.public_token) >= 43
        assert len(only.ref_hash) == 64 and "c-7f3a9e21b6" not in only.ref_hash
        assert only.about.status == ReviewStatus.PENDING
        assert db.session.scalar(select(ChildUpdate)).status == ReviewStatus.PENDING
        assert count(HomeStat) == 1
        run = db.session.scalar(select(FeedRun))
        assert (run.batch, run.status.value, run.created) == ("2026q3-0007", "completed", 3)


def test_no_partner_reference_is_stored_in_clear(app, import_feed, backend):
    refs = [f"c-PLANTEDREF{n:04d}" for n in range(6)]
    batch = Batch().add(*[child(ref) for ref in refs], update(refs[0], uid="u-PLANTEDUPDATEID"))
    import_feed(batch)
    with app.app_context():
        hits = []
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(text(f"SELECT * FROM {table.name}")):
                rendered = json.dumps([str(value) for value in row])
                hits += [token for token in ["PLANTEDREF", "PLANTEDUPDATEID"] if token in rendered]
    assert hits == []


def test_a_batch_is_imported_once(app, import_feed):
    batch = Batch().add(*crowd(5))
    first = import_feed(batch)
    again = import_feed(batch)
    renamed_bytes = batch.bytes().replace(b'"records"', b'"records" ')
    same_batch_other_bytes = import_feed(renamed_bytes)
    assert first.created == 5
    assert again.already_imported and same_batch_other_bytes.already_imported
    with app.app_context():
        assert count(Child) == 5
        assert count(FeedRun) == 1


def test_unchanged_and_updated_children_are_counted(app, import_feed):
    records = crowd(5)
    import_feed(Batch().add(*records))
    changed = dict(records[0], stage="vocational_training")
    report = import_feed(Batch().add(changed, *records[1:]))
    assert (report.created, report.updated, report.unchanged) == (0, 1, 4)
    with app.app_context():
        assert (
            db.session.scalar(
                select(func.count()).select_from(Child).where(Child.stage == "vocational_training")
            )
            == 1
        )


def test_fields_outside_the_contract_reject_the_whole_batch_and_alert(app, import_feed, make_user):
    officer = make_user(roles=("safeguarding_officer",))
    planted = child(name="Sunita Planted-Name-Canary", dob="2012-03-04")
    report = import_feed(Batch().add(*crowd(5), planted))
    assert report.status == "rejected"
    assert "'name'" in report.reason and "'dob'" in report.reason
    assert "Canary" not in report.reason and "2012" not in report.reason
    with app.app_context():
        assert count(Child) == 0
        run = db.session.scalar(select(FeedRun))
        assert run.status.value == "rejected"
        mail = db.session.scalars(select(OutboxMessage)).all()
        assert [m.recipient for m in mail] == [officer.email]
        assert "Canary" not in mail[0].text_body and "'name'" in mail[0].text_body


def test_an_unknown_key_that_could_be_a_name_is_reported_by_position_only(app, import_feed):
    report = import_feed(Batch().add(child(sunita="x")))
    assert report.status == "rejected"
    assert "sunita" not in report.reason and "field #" in report.reason


def test_structural_errors_reject_the_batch(app, import_feed):
    raw = Batch().add(*crowd(5)).bytes()
    truncated = b"\n".join(raw.split(b"\n")[:-2]) + b"\n"
    report = import_feed(truncated)
    assert report.status == "rejected"
    with app.app_context():
        assert count(Child) == 0


def test_free_text_with_an_identifier_is_quarantined(app, import_feed):
    records = crowd(5)
    records[0]["about"] = "Her brother Ravi calls her on 98200 12345 every Sunday."
    report = import_feed(
        Batch().add(*records, update(records[1]["ref"], text="She visited Kamathipura."))
    )
    assert report.quarantined == 2
    with app.app_context():
        about = db.session.scalar(select(ChildText))
        assert about.status == ReviewStatus.QUARANTINED
        assert {f["detector"] for f in about.findings} >= {"phone"}
        assert db.session.scalar(select(ChildUpdate)).status == ReviewStatus.QUARANTINED


def test_update_replacement_rules(app, import_feed):
    records = crowd(5)
    first = update(records[0]["ref"], uid="u-replace-me", text="She read ten books.")
    import_feed(Batch().add(*records, first))
    same = import_feed(Batch().add(first))
    assert same.unchanged == 1
    changed = dict(first, text="She read twelve books.")
    assert import_feed(Batch().add(changed)).updated == 1
    with app.app_context():
        row = db.session.scalar(select(ChildUpdate))
        assert row.original_text == "She read twelve books."
        row.published_at = NOW
        db.session.commit()
    again = import_feed(Batch().add(dict(first, text="Something else entirely.")))
    assert again.rejected == 1
    assert again.problems[0]["rule"] == "an update that is already published cannot be replaced"


def test_exit_unlists_purges_and_owes_a_delayed_neutral_notice(app, import_feed):
    records = crowd(6)
    records[0]["about"] = "Loves drawing birds."
    import_feed(Batch().add(*records, update(records[0]["ref"], text="She painted a mural.")))
    with app.app_context():
        leaving = db.session.scalar(select(Child).order_by(Child.id))
        assert leaving.release.is_listed
    report = import_feed(Batch().add(exit_record(records[0]["ref"])))
    assert report.exits == 1
    with app.app_context():
        leaving = db.session.scalar(select(Child).order_by(Child.id))
        assert leaving.status == ChildStatus.EXITED
        assert not leaving.release.is_listed
        assert leaving.about.original is None and leaving.about.approved is None
        purged = db.session.scalar(select(ChildUpdate))
        assert purged.status == ReviewStatus.WITHDRAWN and purged.original_text is None
        notice = db.session.scalar(select(ExitNotice))
        delay = notice.notify_after - NOW
        assert timedelta(days=7) <= delay <= timedelta(days=21)
        # Five remain: still a crowd of K, so they stay listed.
        assert count(ChildRelease, ChildRelease.is_listed.is_(True)) == 5
    returning = import_feed(Batch().add(records[0]))
    assert returning.rejected == 1


def test_an_exit_that_shrinks_the_crowd_unlists_the_others_too(app, import_feed):
    records = crowd(5)
    import_feed(Batch().add(*records))
    import_feed(Batch().add(exit_record(records[0]["ref"])))
    with app.app_context():
        listed = count(ChildRelease, ChildRelease.is_listed.is_(True))
        levels = db.session.scalars(
            select(ChildRelease.level).where(ChildRelease.is_listed.is_(True))
        ).all()
    # Four identical children cannot hide among each other at any level of detail.
    assert listed == 0 and levels == []


def test_consent_decides_what_is_shown(app, import_feed):
    no_profile = crowd(
        5, consent={"profile": False, "updates": True, "basis": "cwc_order", "expires": "2027-Q2"}
    )
    expired = crowd(
        5,
        consent={
            "profile": True,
            "updates": True,
            "basis": "guardian_and_child",
            "expires": "2026-Q3",
        },
    )
    no_updates = crowd(
        5,
        consent={
            "profile": True,
            "updates": False,
            "basis": "legal_exemption",
            "expires": "2027-Q2",
        },
        age_band="9-11",
    )
    import_feed(Batch().add(*no_profile, *expired, *no_updates))
    with app.app_context():
        rows = db.session.execute(
            select(
                Child.consent_profile,
                Child.consent_expires,
                ChildRelease.is_listed,
                ChildRelease.updates_allowed,
            ).join(ChildRelease)
        ).all()
    listed = [(p, e, u) for p, e, listed_, u in rows if listed_]
    assert len(listed) == 5
    assert all(p and e == "2027-Q2" and not u for p, e, u in listed)


def test_home_stats_are_upserted(app, import_feed):
    import_feed(Batch().add(home_stats(children_in_care=37)))
    report = import_feed(Batch().add(home_stats(children_in_care=38)))
    assert report.updated == 1
    with app.app_context():
        assert db.session.scalar(select(HomeStat.children_in_care)) == 38


def test_record_errors_name_lines_fields_and_rules_never_values(app, import_feed):
    bad = child(age_band="PLANTED-BAND", home="PLANTED-HOME")
    report = import_feed(Batch().add(*crowd(5), bad))
    assert report.status == "completed" and report.rejected == 1
    rendered = json.dumps(report.problems)
    assert "PLANTED" not in rendered
    assert {p["line"] for p in report.problems} == {7}
    with app.app_context():
        stored = json.dumps(db.session.scalar(select(FeedRun.report)))
    assert "PLANTED" not in stored and '"line": 7' in stored
