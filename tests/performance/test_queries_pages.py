"""Statements per request of the pages every visitor meets first, and what an anonymous
visitor's request costs beyond its own work: no user loaded, no session read or written
where no form needs one."""

from __future__ import annotations

from tests.helpers import sign_in


def test_healthz_sends_exactly_its_select_and_sets_no_cookie(client, count_queries):
    client.get("/healthz")  # the pool's first connection, outside the count
    with count_queries() as queries:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert [" ".join(s.split()).upper() for s in queries.statements] == ["SELECT 1"], (
        queries.report()
    )
    assert "Set-Cookie" not in response.headers


def test_an_anonymous_page_without_a_form_sets_no_session_cookie(client):
    for path in ("/healthz", "/robots.txt"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "Set-Cookie" not in response.headers, path


def test_anonymous_donate_page_queries_nothing(client, count_queries):
    client.get("/donate")
    with count_queries() as queries:
        response = client.get("/donate")
    assert response.status_code == 200
    assert queries.count == 0, queries.report()


def test_signed_in_donate_page_loads_the_account_once(client, make_user, count_queries):
    user = make_user()
    assert sign_in(client, user.email).status_code == 302
    client.get("/donate")
    with count_queries() as queries:
        response = client.get("/donate")
    assert response.status_code == 200
    assert user.email in response.get_data(as_text=True)
    # The account and its roles (the header shows the staff link to staff), nothing else.
    assert queries.count == 2, queries.report()
    assert "FROM users" in queries.statements[0] and "user_roles" in queries.statements[1], (
        queries.report()
    )


def test_sign_in_page_queries_nothing(client, count_queries):
    client.get("/account/sign-in")
    with count_queries() as queries:
        response = client.get("/account/sign-in")
    assert response.status_code == 200
    assert queries.count == 0, queries.report()
