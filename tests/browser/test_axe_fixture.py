"""Negative controls for the `axe` fixture: it must catch a real violation on a real page of
the site, and it must refuse a journey that showed a page without auditing it.

`AxeAudit` is used directly, so each failing case is asserted (its `verdict()` raises),
rather than being a failing test. The pages are test-only routes (`/_testing/a11y/<flaw>`,
donorhub/testing_routes.py): the site's own layout with one planted flaw each.
"""

from __future__ import annotations

import pytest

from tests.browser.audits import AxeAudit

pytestmark = pytest.mark.browser

PLANTED = [
    ("unlabelled-input", "label", "critical"),
    ("image-without-alt", "image-alt", "critical"),
    ("low-contrast", "color-contrast", "serious"),
    ("chart-without-name", "svg-img-alt", "serious"),
]


def test_the_layout_without_a_flaw_passes(live_server, page):
    audit = AxeAudit()
    audit.watch(page)
    page.goto(live_server + "/_testing/a11y/none")
    violations = audit.check(page)
    assert [v for v in violations if v["impact"] in ("serious", "critical")] == []
    audit.verdict()  # does not raise


@pytest.mark.parametrize(("flaw", "rule", "impact"), PLANTED)
def test_a_planted_flaw_fails_the_audit(live_server, page, flaw, rule, impact):
    audit = AxeAudit()
    audit.watch(page)
    page.goto(live_server + f"/_testing/a11y/{flaw}")
    audit.check(page, flaw)
    assert [(v["id"], v["impact"]) for v in audit.failures()] == [(rule, impact)]
    with pytest.raises(AssertionError, match=rf"{flaw}: {rule} \({impact}\)"):
        audit.verdict()


def test_a_shown_but_unaudited_page_fails(live_server, page):
    audit = AxeAudit()
    audit.watch(page)
    page.goto(live_server + "/_testing/a11y/none")
    audit.check(page)
    page.goto(live_server + "/donate")  # shown, never audited
    page.goto("about:blank")  # another origin: not ours to audit
    assert audit.unaudited() == [live_server + "/donate"]
    with pytest.raises(AssertionError, match="pages shown but not audited"):
        audit.verdict()
    page.goto(live_server + "/donate")
    audit.check(page)
    audit.verdict()  # audited now: passes


def test_a_journey_that_audits_nothing_fails(live_server, page):
    audit = AxeAudit()
    audit.watch(page)
    page.goto(live_server + "/donate")
    with pytest.raises(AssertionError, match="no page was audited"):
        audit.verdict()
