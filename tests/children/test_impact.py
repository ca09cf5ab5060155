"""The public impact page: home statistics with small cells hidden."""

from __future__ import annotations

from tests.feed.builders import Batch, home_stats


def test_impact_page_hides_small_cells_and_home_codes(app, client, import_feed):
    import_feed(
        Batch().add(
            home_stats(
                "MH-01",
                children_in_care=37,
                in_school=30,
                in_vocational_training=5,
                reintegrated=4,
                new_arrivals=3,
            ),
            home_stats(
                "MH-02",
                children_in_care=30,
                in_school=22,
                in_vocational_training=6,
                reintegrated=9,
                new_arrivals=7,
            ),
            home_stats(
                "WB-01",
                children_in_care=20,
                in_school=15,
                in_vocational_training=2,
                reintegrated=8,
                new_arrivals=6,
            ),
        )
    )
    page = client.get("/impact").get_data(as_text=True)
    assert "A safe home in Maharashtra (1)" in page and "A safe home in West Bengal" in page
    assert "MH-01" not in page and "WB-01" not in page
    # 5, 3 and 4 and 2 are below K; the rows and columns holding them get a second hidden cell.
    for exact in (">4<", ">3<", ">2<"):
        assert exact not in page
    assert page.count("fewer than 5") >= 6
    assert ">87<" in page  # total children in care: no cell of that column is hidden


def test_impact_page_before_any_report(client):
    assert "after the safe homes' next report" in client.get("/impact").get_data(as_text=True)
