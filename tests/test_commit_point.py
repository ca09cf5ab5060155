"""The request's commit point keeps a request's writes exactly when its answer is a success."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from donorhub.audit import AuditEvent
from donorhub.extensions import db

#: outcome -> (status of the answer, whether the row written before it is kept)
OUTCOMES = {
    "page": (200, True),
    "redirect": (303, True),
    "form-errors": (422, False),
    "refused": (303, False),
    "provider-down": (303, False),
    "kept-then-provider-down": (303, True),
    "crash": (500, False),
    "commit-fails": (500, False),
}


@pytest.fixture
def app(app_factory):
    """Without form tokens: these requests prove the commit point, not CSRF (which every real
    form has; tests/security covers it). Errors become our 500 page, as in production."""
    return app_factory(WTF_CSRF_ENABLED=False, PROPAGATE_EXCEPTIONS=False)


def _rows(app) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "testing.write")
        )


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_a_request_keeps_its_writes_only_when_it_succeeds(app, client, outcome):
    status, kept = OUTCOMES[outcome]
    response = client.post(f"/_testing/write/{outcome}")
    assert response.status_code == status
    assert _rows(app) == (1 if kept else 0)


def test_a_refusal_goes_back_where_the_view_says_with_the_message(app, client):
    response = client.post("/_testing/write/refused")
    assert response.headers["Location"].endswith("/_testing/reflect")
    with client.session_transaction() as session:
        assert session.get("_flashes") == [("error", "That is not allowed.")]


def test_a_refusal_asked_for_as_json_is_a_problem_document(app, client):
    response = client.post("/_testing/write/refused", headers={"Accept": "application/json"})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["title"] == "Not done"
    assert response.get_json()["detail"] == "That is not allowed."
    assert _rows(app) == 0


def test_the_payment_provider_failing_says_nothing_changed(app, client):
    client.post("/_testing/write/provider-down")
    with client.session_transaction() as session:
        messages = [text for _category, text in session.get("_flashes", [])]
    assert messages == [
        "We could not reach our payment provider, so nothing has changed. "
        "Please try again in a few minutes."
    ]


def test_a_refused_commit_leaves_the_browser_session_as_it_was(app, client):
    with client.session_transaction() as session:
        session["before"] = "kept"
    response = client.post("/_testing/write/commit-fails")
    assert response.status_code == 500
    with client.session_transaction() as session:
        assert session.get("before") == "kept"
        assert "testing_signed_in" not in session
        assert session.get("_flashes", []) == []
    assert _rows(app) == 0
