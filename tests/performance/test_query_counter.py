"""The statement counter itself: it sees what the app sends, and only inside its block."""

from __future__ import annotations


def test_counts_the_statements_of_a_request_and_nothing_outside(client, count_queries):
    client.get("/healthz")  # outside the block: not counted
    with count_queries() as queries:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert queries.count >= 1, queries.report()
    assert any("SELECT 1" in s.upper() for s in queries.statements), queries.report()
    before = queries.count
    client.get("/healthz")
    assert queries.count == before
