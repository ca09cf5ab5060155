"""The ceiling of bench/overhead.py is honest: the bare Flask app renders DonorHub's donate
page to the same bytes (but for the two tokens, which it does not make) and answers the
health check the same way, on the same database."""

from __future__ import annotations

import re

import pytest

from bench.bare_app import STAND_IN_CSRF_TOKEN, create_bare_app

TOKENS = re.compile(r'name="(csrf_token|form_token)" value="[^"]+"')


def without_tokens(page: str) -> str:
    return TOKENS.sub(lambda match: f'name="{match.group(1)}" value=""', page)


@pytest.fixture
def bare_app(app):
    bare = create_bare_app(app.config["SQLALCHEMY_DATABASE_URI"])
    yield bare
    bare.extensions["bare_engine"].dispose()


def test_bare_donate_page_is_donorhubs_but_for_the_tokens(app, bare_app):
    for query in ("", "?currency=eur&frequency=once", "?currency=inr"):
        # A first visit each time, as wrk makes it: no cookie sent.
        ours = app.test_client().get("/donate" + query)
        theirs = bare_app.test_client().get("/donate" + query)
        assert ours.status_code == theirs.status_code == 200, query
        ours_text, theirs_text = ours.get_data(as_text=True), theirs.get_data(as_text=True)
        assert without_tokens(ours_text) == without_tokens(theirs_text), query
        real_token = re.search(r'name="csrf_token" value="([^"]+)"', ours_text)
        assert real_token and len(real_token.group(1)) == len(STAND_IN_CSRF_TOKEN)
        # What the bare app leaves out: no cookie, no security headers.
        assert "Set-Cookie" in ours.headers and "Set-Cookie" not in theirs.headers
        assert "Content-Security-Policy" not in theirs.headers


def test_bare_healthz_answers_like_donorhubs(client, bare_app):
    ours, theirs = client.get("/healthz"), bare_app.test_client().get("/healthz")
    assert ours.status_code == theirs.status_code == 200
    assert ours.get_json() == theirs.get_json() == {"status": "ok"}
