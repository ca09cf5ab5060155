"""A NUL character in a request is refused with 400, never a 500.

Found by the wapiti DAST scan (tests/slow/test_dast.py): `GET /donate?campaign=...%00` made
PostgreSQL refuse the text parameter ("cannot contain NUL (0x00) bytes") and the page
answered 500. No page takes a NUL, so one anywhere in the path, the query or a form is a bad
request (SQLite would have accepted it, so the check is in the app, not the database).
"""

from __future__ import annotations

import pytest

from tests.helpers import csrf_token

PROBES = [
    ("GET", "/donate?campaign=https%3A%2F%2Fexample.org%2Fe.php%00&currency=gbp"),
    ("GET", "/donate?currency=gbp&frequency=monthly&campaign=school%00"),
    ("GET", "/campaigns/school-fees%00"),
    ("GET", "/sponsor?x=1&x=2%00"),  # a second value of a repeated parameter
    ("GET", "/api/v1/campaigns/a%00b"),
    ("GET", "/account/sign-in?next=/donate%00"),
]


# Plain ids: the test's name becomes its SQLite file's name.
@pytest.mark.parametrize(("method", "url"), PROBES, ids=[f"probe{i}" for i in range(len(PROBES))])
def test_nul_in_path_or_query_is_a_bad_request(client, method, url):
    response = client.open(url, method=method)
    assert response.status_code == 400, (url, response.status_code)


def test_nul_in_a_form_field_is_a_bad_request(client):
    token = csrf_token(client)
    response = client.post(
        "/account/sign-in",
        data={"csrf_token": token, "email": "someone@example.org\x00", "password": "x" * 20},
    )
    assert response.status_code == 400


def test_ordinary_requests_still_work(client):
    assert client.get("/donate?currency=gbp&frequency=monthly").status_code == 200
    assert client.get("/healthz").status_code == 200
