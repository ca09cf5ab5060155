"""MRR is summed exactly (in twelfths of a minor unit) and rounded once, half to even: a sum
of yearly plans / 12 that ends in exactly .5 must not drift to .4999… (found by
bench/reports.py, where the hand-written SQL and the report differed by one penny)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from donorhub.donations.models import Donor, Frequency, RecurringPlan
from donorhub.extensions import db
from donorhub.reports import services as reports


def test_yearly_plans_sum_exactly_and_round_half_even(app):
    with app.app_context():
        donor = Donor(email="y@example.org", full_name="Y")
        for amount in (1000, 5005, 5005):  # 11010 / 12 = 917.5 -> 918 (half to even)
            db.session.add(
                RecurringPlan(
                    donor=donor,
                    amount_minor=amount,
                    fee_cover_minor=0,
                    currency="gbp",
                    frequency=Frequency.YEARLY,
                    status="active",
                    started_at=datetime(2025, 1, 1, tzinfo=UTC),
                )
            )
        db.session.commit()
        (row,) = reports.mrr(date(2026, 1, 1), date(2026, 12, 31)).rows
        assert row == ["gbp", 918, 0, 0, 0, 0, 0, 918]
    assert [reports._from_twelfths(n) for n in (6, 18, 17, 19, 0, 30)] == [0, 2, 1, 2, 0, 2]
