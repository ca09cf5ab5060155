"""Rows a batch creates are stored in bulk and rows that exist are changed as objects: both
paths store what the contract says, and a record of one batch may reach across them."""

from __future__ import annotations

from sqlalchemy import select

from donorhub.children.models import AliasUse, Child, ChildStatus, ChildText, ChildUpdate
from donorhub.extensions import db
from tests.feed.builders import NOW, Batch, child, exit_record, update

IDENTIFYING = "Her phone number is 98200 12345."


def test_a_new_child_her_text_alias_and_updates_are_stored_whole(app, import_feed):
    record = child("c-bulk-new-0001", home="WB-01", region="West Bengal", about=IDENTIFYING)
    clean = update(record["ref"], uid="u-bulk-new-0001", text="She ran a race.")
    home_news = update(home="MH-01", uid="u-bulk-new-0002")
    report = import_feed(Batch().add(record, clean, home_news), publish=False)
    assert (report.created, report.quarantined, report.rejected) == (3, 1, 0)
    with app.app_context():
        her = db.session.scalar(select(Child))
        assert her.status is ChildStatus.ACTIVE and her.home_code == "WB-01"
        assert her.first_seen_at == NOW and her.interests == ["drawing"]
        assert db.session.scalar(select(AliasUse.alias)) == her.alias
        about = db.session.scalar(select(ChildText))
        assert about.child_id == her.id and about.status.value == "quarantined"
        assert about.findings and about.original == IDENTIFYING and about.original_hash
        by_child = {u.child_id: u for u in db.session.scalars(select(ChildUpdate))}
        assert by_child[her.id].home_code == "WB-01"  # an update about a child: her home
        assert by_child[her.id].status.value == "pending" and by_child[her.id].original_hash
        assert by_child[None].home_code == "MH-01" and by_child[None].original_text is None


def test_a_replaced_update_may_name_a_child_who_arrives_in_the_same_batch(app, import_feed):
    first = child("c-bulk-first-01")
    news = update(first["ref"], uid="u-bulk-moves-01", text="She read ten books.")
    import_feed(Batch().add(first, news))
    second = child("c-bulk-second-1", home="DL-01", region="Delhi")
    moved = dict(news, child=second["ref"], text="She read twelve books.")
    report = import_feed(Batch().add(second, moved))
    assert (report.created, report.updated, report.rejected) == (1, 1, 0)
    with app.app_context():
        her = db.session.scalar(select(Child).where(Child.home_code == "DL-01"))
        row = db.session.scalar(select(ChildUpdate))
        assert row.child_id == her.id and row.home_code == "DL-01"
        assert row.original_text == "She read twelve books."


def test_a_child_who_arrives_and_leaves_in_one_batch_keeps_no_words(app, import_feed):
    record = child("c-bulk-passing1", about="Loves football.")
    said = update(record["ref"], uid="u-bulk-passing1", text="She ran a race.")
    report = import_feed(Batch().add(record, said, exit_record(record["ref"])), publish=False)
    assert (report.created, report.exits, report.rejected) == (1, 1, 1)
    with app.app_context():
        her = db.session.scalar(select(Child))
        assert her.status is ChildStatus.EXITED
        assert db.session.scalar(select(ChildText)) is None
        assert db.session.scalar(select(ChildUpdate)) is None
