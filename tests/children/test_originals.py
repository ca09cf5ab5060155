"""No original after a decision: the partner's words are erased, a keyed hash stays."""

from __future__ import annotations

import sqlite3
import subprocess

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from donorhub.accounts.models import User
from donorhub.children import review
from donorhub.children.models import ChildText, ChildUpdate, ReviewStatus
from donorhub.extensions import db
from tests.feed.builders import Batch, crowd, update
from tests.metrics import METRICS

CANARY = "Ravindra-Canary"
PLANTED = f"Her brother {CANARY} calls on 98200 12345."
SAFE_REWRITE = "She likes to talk with her family."
DUMPS_MADE = []


def database_dump(app) -> str:
    """Every row of every table, as the backend's own dump tool writes it."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(url.database)
        try:
            return "\n".join(connection.iterdump())
        finally:
            connection.close()
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    dumped = subprocess.run(  # noqa: S603 - fixed arguments, the test's own database
        ["pg_dump", "--data-only", "--dbname", plain],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )
    return dumped.stdout


def seed(import_feed, *, about: str | None = PLANTED, update_text: str | None = None):
    records = crowd(5)
    if about is not None:
        records[0]["about"] = about
    extra = [update(records[1]["ref"], text=update_text)] if update_text else []
    import_feed(Batch().add(*records, *extra))
    return records + extra


def officer(app, make_user) -> User:
    handle = make_user(roles=("safeguarding_officer",))
    return db.session.get(User, handle.id)


def row_id(model) -> int:
    return db.session.scalar(select(model.id))


def assert_planted_text_is_nowhere(app):
    dump = database_dump(app)
    assert "Ravindra" in PLANTED and len(dump) > 1000  # the dump holds the crowd
    hits = (CANARY in dump) + ("98200 12345" in dump)
    METRICS.tally(
        "decided originals: database dumps after a decision / planted values found",
        dumps=1,
        hits=hits,
    )
    assert hits == 0


@pytest.mark.parametrize("kind", ["about", "update"])
@pytest.mark.parametrize("decision", ["approve_edited", "reject"])
def test_a_decision_erases_the_original_from_every_table(
    app, make_user, import_feed, kind, decision
):
    if kind == "about":
        seed(import_feed)
    else:
        seed(import_feed, about=None, update_text=PLANTED)
    with app.app_context():
        assert CANARY in database_dump(app)  # planted where the test looks
    with app.app_context():
        actor = officer(app, make_user)
        item_id = row_id(ChildText if kind == "about" else ChildUpdate)
        if decision == "approve_edited":
            review.approve(actor, kind, item_id, edited_text=SAFE_REWRITE)
        else:
            review.reject(actor, kind, item_id, "identifying")
        db.session.commit()
        row = db.session.get(ChildText if kind == "about" else ChildUpdate, item_id)
        assert row.original_hash is not None and len(row.original_hash) == 64
    assert_planted_text_is_nowhere(app)


def test_an_approval_as_sent_keeps_only_the_approved_copy(app, make_user, import_feed):
    seed(import_feed, about="Loves drawing birds and wants to teach.")
    with app.app_context():
        actor = officer(app, make_user)
        review.approve(actor, "about", row_id(ChildText))
        db.session.commit()
        text = db.session.scalar(select(ChildText))
        assert text.original is None
        assert text.approved == "Loves drawing birds and wants to teach."


def test_a_withdrawn_text_leaves_no_original(app, import_feed):
    records = seed(import_feed)
    del records[0]["about"]
    import_feed(Batch().add(*records))
    with app.app_context():
        assert db.session.scalar(select(ChildText.status)) == ReviewStatus.WITHDRAWN
    assert_planted_text_is_nowhere(app)


def test_reveal_refuses_once_the_item_is_decided(app, make_user, import_feed):
    seed(import_feed)
    with app.app_context():
        actor = officer(app, make_user)
        item_id = row_id(ChildText)
        text, _findings = review.reveal(actor, "about", item_id)
        assert text == PLANTED
        review.reject(actor, "about", item_id, "identifying")
        db.session.commit()
        with pytest.raises(review.NotReviewable):
            review.reveal(actor, "about", item_id)


def test_the_same_text_sent_again_keeps_its_decision(app, make_user, import_feed):
    records = seed(import_feed)
    with app.app_context():
        actor = officer(app, make_user)
        review.reject(actor, "about", row_id(ChildText), "identifying")
        db.session.commit()
    records[0]["stage"] = "vocational_training"  # the record changed, its text did not
    report = import_feed(Batch().add(*records))
    assert report.updated == 1 and report.quarantined == 0
    with app.app_context():
        assert db.session.scalar(select(ChildText.status)) == ReviewStatus.REJECTED
    records[0]["about"] = "A new text about her drawing."
    import_feed(Batch().add(*records))
    with app.app_context():
        assert db.session.scalar(select(ChildText.status)) == ReviewStatus.PENDING


def test_an_unchanged_record_stays_unchanged_after_its_text_is_decided(app, make_user, import_feed):
    records = seed(import_feed, update_text="She won the relay race.")
    with app.app_context():
        actor = officer(app, make_user)
        review.approve(actor, "update", row_id(ChildUpdate))
        db.session.commit()
    report = import_feed(Batch().add(*records))
    assert (report.updated, report.unchanged) == (0, 6)
    with app.app_context():
        assert db.session.scalar(select(ChildUpdate.status)) == ReviewStatus.APPROVED


def test_the_upgrade_erases_decided_originals_and_keeps_their_keyed_hashes(tmp_path):
    from flask_migrate import upgrade
    from sqlalchemy import text

    from config import TestingConfig
    from donorhub import create_app
    from donorhub.feed import importer
    from donorhub.feed.pseudonyms import keyed_hash
    from tests.feed.builders import NOW, child

    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'old.db'}")
    key, partner = app.config["FEED_PSEUDONYM_KEY"], app.config["FEED_PARTNER"]
    columns = (
        "ref_hash, alias, public_token, illustration, status, home_code, age_band, gender, "
        "region, stage, joined_year, interests, consent_profile, consent_updates, "
        "consent_basis, consent_expires, content_hash, first_seen_at, updated_at"
    )
    with app.app_context():
        upgrade(revision="0014")
        for n, (ref, status, original) in enumerate(
            [("c-old-1", "rejected", PLANTED), ("c-old-2", "pending", "Waiting words.")], 1
        ):
            db.session.execute(
                text(
                    f"INSERT INTO children (id, {columns}) VALUES (:id, :ref, :alias, :token, 1, "  # noqa: S608
                    "'active', 'MH-02', '12-14', 'girl', 'Maharashtra', 'education', 2024, "
                    "'[]', 1, 1, 'guardian_and_child', '2027-Q2', 'legacy', "
                    "'2026-11-01 00:00:00', '2026-11-01 00:00:00')"
                ),
                {
                    "id": n,
                    "ref": keyed_hash(key, partner, "child", ref),
                    "alias": f"A{n}",
                    "token": f"t{n}",
                },
            )
            db.session.execute(
                text(
                    "INSERT INTO child_texts (child_id, original, status, findings, received_at) "
                    "VALUES (:id, :original, :status, '[]', '2026-11-01 00:00:00')"
                ),
                {"id": n, "original": original, "status": status},
            )
        db.session.commit()
        upgrade()
        rows = db.session.execute(
            text("SELECT child_id, original, original_hash FROM child_texts ORDER BY child_id")
        ).all()
        assert rows[0] == (1, None, keyed_hash(key, partner, "about_text", PLANTED))
        assert rows[1][1] == "Waiting words." and rows[1][2] is not None
        assert db.session.scalar(text("SELECT content_hash FROM children WHERE id = 1")) == (
            keyed_hash(key, partner, "child_content", "legacy")
        )
        # The partner sends the rejected text again: recognised by its hash, still rejected.
        records = [child("c-old-1", about=PLANTED), *crowd(5)]
        importer.import_batch(Batch().add(*records).bytes(), source="test", now=NOW)
        db.session.commit()
        assert db.session.execute(
            text("SELECT status, original FROM child_texts WHERE child_id = 1")
        ).one() == ("rejected", None)
        db.session.remove()
        db.engine.dispose()
