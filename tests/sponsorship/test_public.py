"""/sponsor: filters and "Match me" work on released values only."""

from __future__ import annotations

import re

from sqlalchemy import select

from donorhub.children.models import ChildRelease
from donorhub.extensions import db
from tests.sponsorship.helpers import load_children


def cards(client, query: str = "") -> list[str]:
    page = client.get("/sponsor" + query).get_data(as_text=True)
    return re.findall(r'href="/sponsor/([A-Za-z0-9_-]{40,})"', page)


def test_filters_and_match_me_use_released_values_only(app, client, import_feed):
    young = load_children(
        app, import_feed, 5, updates=False, age_band="9-11", interests=["drawing"]
    )
    older = load_children(
        app, import_feed, 5, updates=False, age_band="15-17", interests=["football"]
    )
    with app.app_context():
        released = {r.child_id: r for r in db.session.scalars(select(ChildRelease))}
        older_age = released[older.ids[0]].age_text
        db.session.remove()
    assert older_age and older_age != "15-17"
    assert sorted(cards(client, f"?age={older_age}")) == sorted(older.tokens)
    assert sorted(cards(client, "?interest=drawing")) == sorted(young.tokens)
    # A raw value (never shown anywhere) is not a filter: it is ignored, so the cards that
    # appear cannot reveal an unreleased fact.
    assert len(cards(client, "?age=15-17")) == 10
    assert len(cards(client, "?region=Kamatipura")) == 10
    # "Match me": one of the children who fit.
    response = client.get(f"/sponsor/match?age={older_age}")
    assert response.status_code == 302
    assert any(token in response.headers["Location"] for token in older.tokens)
    response = client.get("/sponsor/match?interest=football&age=" + released[young.ids[0]].age_text)
    assert "no_match=1" in response.headers["Location"]
    # Unlisted at once: gone from the cards, the profile and "Match me".
    with app.app_context():
        db.session.execute(
            ChildRelease.__table__.update()
            .where(ChildRelease.child_id == young.ids[0])
            .values(is_listed=False)
        )
        db.session.commit()
        db.session.remove()
    assert young.tokens[0] not in cards(client)
    assert client.get(f"/sponsor/{young.tokens[0]}").status_code == 404
    picked = {client.get("/sponsor/match").headers["Location"] for _ in range(20)}
    assert not any(young.tokens[0] in location for location in picked)
