"""Two records about one child in one batch: every pair of record types, in both orders.

The contract's record types are child, update, home_stats and exit (the header is not a
record). For each ordered pair the batch is imported twice over: once for a child the
platform has never seen (she first appears in this batch) and once for a child who is already
listed. The outcome is the one docs/feed-contract.md ("Two records about one child in one
batch") gives, whatever the order of the lines, and an exited child is never shown.
"""

from __future__ import annotations

import json
from datetime import timedelta
from itertools import product

import pytest
from sqlalchemy import select, text

from donorhub.children.models import Child, ChildStatus, ChildUpdate, ExitNotice, HomeStat
from donorhub.extensions import db
from donorhub.feed.jobs import import_feed as import_feed_job
from donorhub.feed.pseudonyms import keyed_hash
from tests.feed.builders import NOW, Batch, child, crowd, exit_record, home_stats, update

TYPES = ("child", "update", "home_stats", "exit")
REF = "c-PAIRCHILD01"
#: Words from the partner about this child; after an exit none may remain in any table.
EARLIER_WORDS = ("WORDSEARLIERABOUT", "WORDSEARLIERUPDATE")
BATCH_WORDS = ("WORDSBATCHABOUT", "WORDSBATCHUPDATE")


def record(kind: str, nth: int) -> dict:
    """The `nth` (0 or 1) record of `kind` about the child (or her home) in the batch."""
    if kind == "child":
        return child(
            REF,
            about=f"{BATCH_WORDS[0]} {nth} likes kites.",
            stage="education" if nth == 0 else "vocational_training",
        )
    if kind == "update":
        return update(REF, uid=f"u-pair-{nth}", text=f"{BATCH_WORDS[1]} {nth} read a book.")
    if kind == "home_stats":
        return home_stats(children_in_care=37 + nth)
    return exit_record(REF, period="2026-Q3" if nth == 0 else "2026-Q2")


# What the contract specifies, per pair (either order) and starting point:
# (the child afterwards, the record types rejected, exits recorded, this batch's updates kept)
# "listed": shown to sponsors; "exited": recorded as gone, never shown; None: not on record.
# Same-type pairs share a key (child ref, home and quarter, exit child), so the later line is
# a duplicate, except two updates, which carry different ids.
NEW = {
    ("child", "child"): ("listed", ["child"], 0, 0),
    ("child", "update"): ("listed", [], 0, 1),
    ("child", "home_stats"): ("listed", [], 0, 0),
    ("child", "exit"): ("exited", [], 1, 0),
    ("update", "update"): (None, ["update", "update"], 0, 0),
    ("update", "home_stats"): (None, ["update"], 0, 0),
    ("update", "exit"): (None, ["exit", "update"], 0, 0),
    ("home_stats", "home_stats"): (None, ["home_stats"], 0, 0),
    ("home_stats", "exit"): (None, ["exit"], 0, 0),
    ("exit", "exit"): (None, ["exit", "exit"], 0, 0),
}
KNOWN = {
    ("child", "child"): ("listed", ["child"], 0, 0),
    ("child", "update"): ("listed", [], 0, 1),
    ("child", "home_stats"): ("listed", [], 0, 0),
    ("child", "exit"): ("exited", [], 1, 0),
    ("update", "update"): ("listed", [], 0, 2),
    ("update", "home_stats"): ("listed", [], 0, 1),
    ("update", "exit"): ("exited", ["update"], 1, 0),
    ("home_stats", "home_stats"): ("listed", ["home_stats"], 0, 0),
    ("home_stats", "exit"): ("exited", [], 1, 0),
    ("exit", "exit"): ("exited", ["exit"], 1, 0),
}
PAIRS = list(product(TYPES, TYPES))


def expected(start: str, first: str, second: str):
    table = NEW if start == "new" else KNOWN
    return table[tuple(sorted((first, second), key=TYPES.index))]


def test_the_tables_cover_every_pair_of_record_types():
    canonical = {tuple(sorted(pair, key=TYPES.index)) for pair in PAIRS}
    assert set(NEW) == set(KNOWN) == canonical


def words_anywhere(words) -> list[str]:
    found = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(text(f"SELECT * FROM {table.name}")):
            rendered = json.dumps([str(value) for value in row])
            found += [word for word in words if word in rendered]
    return found


@pytest.mark.parametrize("start", ["new", "known"])
@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}-then-{b}" for a, b in PAIRS])
def test_two_records_about_one_child_in_one_batch(app, client, import_feed, start, first, second):
    others = crowd(5)
    earlier = (
        [
            child(REF, about=f"{EARLIER_WORDS[0]} likes kites."),
            update(REF, uid="u-earlier", text=f"{EARLIER_WORDS[1]} drew a map."),
        ]
        if start == "known"
        else []
    )
    import_feed(Batch().add(*others, *earlier))

    pair = [record(first, 0), record(second, 1 if first == second else 0)]
    report = import_feed(Batch().add(*pair))

    state, rejected, exits, kept_updates = expected(start, first, second)
    assert report.status == "completed"
    rejected_lines = {p["line"] for p in report.problems if p["effect"] == "record rejected"}
    assert sorted(pair[line - 2]["type"] for line in rejected_lines) == sorted(rejected)
    assert report.exits == exits
    with app.app_context():
        ours = db.session.scalar(
            select(Child).where(
                Child.ref_hash
                == keyed_hash(
                    app.config["FEED_PSEUDONYM_KEY"], app.config["FEED_PARTNER"], "child", REF
                )
            )
        )
        if state is None:
            assert ours is None
            return
        token = ours.public_token
        batch_updates = db.session.scalars(
            select(ChildUpdate).where(
                ChildUpdate.child_id == ours.id,
                ChildUpdate.original_text.like(f"{BATCH_WORDS[1]}%"),
            )
        ).all()
        assert len(batch_updates) == kept_updates
        if "home_stats" in (first, second):
            assert db.session.scalar(select(HomeStat.children_in_care)) == 37
        if state == "listed":
            assert ours.status == ChildStatus.ACTIVE and ours.release.is_listed
        else:
            assert ours.status == ChildStatus.EXITED and not ours.release.is_listed
            assert words_anywhere(EARLIER_WORDS + BATCH_WORDS) == []
            # Sponsors hear of it only after the random delay, so nothing dates the exit.
            notice = db.session.scalar(select(ExitNotice).where(ExitNotice.child_id == ours.id))
            assert timedelta(days=7) <= notice.notify_after - NOW <= timedelta(days=21)
    listing = client.get("/sponsor").get_data(as_text=True)
    if state == "listed":
        assert f"/sponsor/{token}" in listing
    else:
        assert f"/sponsor/{token}" not in listing
        assert client.get(f"/sponsor/{token}").status_code == 404


def test_a_drop_folder_batch_in_which_a_child_arrives_and_leaves_is_imported_whole(
    app_factory, tmp_path
):
    drop = tmp_path / "drop"
    drop.mkdir()
    others = crowd(5)
    (drop / "a.jsonl").write_bytes(
        Batch()
        .add(
            *others,
            child(REF),
            update(others[0]["ref"], text="She sang."),
            home_stats(),
            exit_record(REF),
        )
        .bytes()
    )
    app = app_factory(FEED_DIR=str(drop))
    with app.app_context():
        assert import_feed_job() == "1 batch(es): completed"
        assert list(drop.iterdir()) == []
        statuses = db.session.scalars(select(Child.status).order_by(Child.id)).all()
        assert statuses == [ChildStatus.ACTIVE] * 5 + [ChildStatus.EXITED]
        assert db.session.scalar(select(ChildUpdate.original_text)) == "She sang."
        assert db.session.scalar(select(HomeStat.children_in_care)) == 37
