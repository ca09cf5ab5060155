"""Staff journeys in a real browser (headless Chromium), axe-core on every page shown:

1. a safeguarding officer signs in with password and code, rewrites a quarantined update
   from a real feed import and approves it; the publish job releases it and the child's
   sponsor, in a second browser, reads it, while no planted identifier reaches any page the
   sponsor or the officer's queue shows (nor the sponsor's e-mail);
2. an admin invites a new colleague, who follows the e-mailed link (real SMTP), chooses a
   password, is made to connect an authenticator (the QR page's key, codes from pyotp),
   reaches the pages of their role and is refused the others.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from donorhub.accounts.models import StaffInvitation, User
from donorhub.audit import AuditEvent
from donorhub.children.models import Child, ChildUpdate, ReviewStatus
from donorhub.extensions import db
from donorhub.jobs.registry import find_job, run_job
from donorhub.mail.sender import send_due_mail
from donorhub.sponsorship import conduct
from donorhub.sponsorship.models import ConductAcceptance, Sponsorship, SponsorshipStatus
from tests.feed.builders import Batch, crowd, update
from tests.helpers import PASSWORD, current_totp
from tests.metrics import METRICS

pytestmark = pytest.mark.browser

#: Made-up words the guard must flag: a name after a kinship word, and a place.
PLANTED_NAME, PLANTED_PLACE = "Zorvanthi", "Qelmaripura"
QUARANTINED_TEXT = (
    f"She won the school relay race. Her brother {PLANTED_NAME} cheered "
    f"from near {PLANTED_PLACE} Road."
)
REWRITTEN_TEXT = "She won the school relay race. Her family cheered her on."
NEW_PASSWORD = "correct horse battery staple for staff"  # noqa: S105


def sign_in_as_staff(page, axe, base_url: str, email: str, password: str, secret: str):
    page.goto(base_url + "/account/sign-in")
    axe.check(page)
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    axe.check(page)
    page.get_by_label("6-digit code").fill(current_totp(secret))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(base_url + "/staff")
    axe.check(page)


def deliver_mail(app) -> int:
    with app.app_context():
        sent = send_due_mail().sent
        db.session.remove()
    return sent


def audit_trail(app, actor_id: int) -> list[tuple[str, str, int | None, dict]]:
    with app.app_context():
        rows = db.session.execute(
            select(
                AuditEvent.action, AuditEvent.subject_type, AuditEvent.subject_id, AuditEvent.detail
            )
            .where(AuditEvent.actor_id == actor_id)
            .order_by(AuditEvent.id)
        ).all()
        db.session.remove()
    return [tuple(r) for r in rows]


@pytest.fixture
def quarantined_update(app, import_feed, make_user):
    """Five listed children from a real import; the first one's update carries identifying
    free text (quarantined) and has an active sponsor."""
    records = crowd(5)
    batch = Batch().add(*records, update(records[0]["ref"], text=QUARANTINED_TEXT))
    report = import_feed(batch, now=datetime(2026, 11, 20, 12, tzinfo=UTC))
    sponsor = make_user("sponsor.of.first@example.org", name="Sam Sponsor")
    with app.app_context():
        row = db.session.scalar(select(ChildUpdate))
        assert row.status is ReviewStatus.QUARANTINED
        child = db.session.get(Child, row.child_id)
        db.session.add(ConductAcceptance(user_id=sponsor.id, version=conduct.CURRENT_VERSION))
        db.session.add(
            Sponsorship(
                user_id=sponsor.id,
                child_id=child.id,
                status=SponsorshipStatus.ACTIVE,
                amount_minor=2500,
                currency="gbp",
                started_at=datetime(2026, 11, 21, tzinfo=UTC),
            )
        )
        db.session.commit()
        found = (row.id, child.alias, records[0]["ref"], batch.records[-1]["id"], report)
        db.session.remove()
    return sponsor, found


def test_officer_rewrites_and_approves_a_quarantined_update_the_sponsor_reads_it_clean(
    live_server, page, browser, axe, make_user, quarantined_update, mailbox
):
    started = time.monotonic()
    app = live_server.app
    sponsor, (update_id, alias, child_ref, update_uid, _report) = quarantined_update
    planted = (PLANTED_NAME, PLANTED_PLACE, child_ref, update_uid)
    officer = make_user(
        "officer.journey@example.org", roles=("safeguarding_officer",), name="Olu Officer"
    )

    def assert_clean(where: str, html: str) -> None:
        assert [p for p in planted if p in html] == [], f"planted identifier on {where}"

    sign_in_as_staff(page, axe, live_server, officer.email, officer.password, officer.totp_secret)
    page.get_by_role("link", name="Safeguarding review").click()
    expect(page.get_by_role("heading", name="Safeguarding review")).to_be_visible()
    axe.check(page)
    assert_clean("the queue", page.content())
    row = page.get_by_role("row").filter(has_text="Quarantined")
    expect(row).to_contain_text("person name, place")
    row.get_by_role("link", name=alias, exact=True).click()
    expect(page.get_by_role("heading", name=f"Update for {alias}")).to_be_visible()
    axe.check(page)
    # Masked: the flagged spans are named, not shown; the edit box has [removed] markers.
    assert_clean("the review page", page.content())
    expect(page.get_by_text("[hidden: possible person name]")).to_be_visible()
    expect(page.get_by_text("[hidden: possible place]")).to_be_visible()
    edit_box = page.get_by_role("textbox", name="Edited text")
    assert edit_box.input_value() == (
        "She won the school relay race. Her brother [removed] cheered from [removed]."
    )

    # As sent, each flagged part needs its own tick: described by rule and shape, not shown.
    checks = page.get_by_role("group", name="Before approving the text as sent")
    expect(checks.get_by_role("checkbox")).to_have_count(2)
    expect(checks).to_contain_text("I have checked: possible person name")
    page.get_by_role("checkbox", name="I have checked: possible place").check()
    page.get_by_role("button", name="Approve as sent").click()
    expect(
        page.get_by_role("checkbox", name="I have checked: possible person name")
    ).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field-error", has_text="Tick this once")).to_have_count(1)
    axe.check(page)
    assert_clean("the refused approval as sent", page.content())

    # Approving with the markers left in is refused, and the text stays masked.
    page.get_by_role("button", name="Approve the edited text").click()
    expect(page.locator("#text-error")).to_contain_text("Replace or delete every [removed]")
    axe.check(page)
    assert_clean("the refused approval", page.content())

    # Deleting the markers is not a rewrite: the preview says so before anything is decided.
    page.get_by_role("textbox", name="Edited text").fill(
        "She won the school relay race. Her brother cheered from."
    )
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#text-error")).to_contain_text("only cuts the flagged parts out")
    expect(page.locator("#text-error-2")).to_contain_text("“…Her brother cheered from.” ends as")
    axe.check(page)

    # The preview shows the sponsor's sentences exactly, milestone sentences included.
    page.get_by_role("textbox", name="Edited text").fill(REWRITTEN_TEXT)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#edited-preview")).to_contain_text(f"{alias} passed the term exams.")
    expect(page.locator("#edited-preview")).to_contain_text(REWRITTEN_TEXT)
    expect(page.get_by_text("every word is in the known vocabulary")).to_be_visible()
    axe.check(page)
    page.get_by_role("button", name="Approve the edited text").click()
    expect(page.get_by_text(f"Approved: {alias}'s update.")).to_be_visible()
    expect(page.get_by_text("Nothing is waiting for review.")).to_be_visible()
    axe.check(page)
    assert_clean("the queue after approval", page.content())

    with app.app_context():
        approved = db.session.get(ChildUpdate, update_id)
        assert (approved.status, approved.approved_text, approved.reviewed_by_id) == (
            ReviewStatus.APPROVED,
            REWRITTEN_TEXT,
            officer.id,
        )
        assert approved.published_at is None  # approval alone shows nothing to a sponsor
        db.session.remove()
    trail = audit_trail(app, officer.id)
    assert [action for action, *_ in trail] == [
        "safeguarding.queue_viewed",
        "safeguarding.item_viewed",  # the page
        "safeguarding.item_viewed",  # the refused approvals: as sent, and with markers
        "safeguarding.item_viewed",
        "safeguarding.item_viewed",  # two previews
        "safeguarding.item_viewed",
        "safeguarding.item_viewed",  # the approval
        "safeguarding.approved",
        "safeguarding.queue_viewed",
    ]
    assert trail[7] == (
        "safeguarding.approved",
        "child_update",
        update_id,
        {"edited": True, "flags_confirmed": 0, "unknown_words_confirmed": 0},
    )
    assert "safeguarding.text_revealed" not in [action for action, *_ in trail]

    # The scheduler's job, as the jobs process runs it (today is past a schedule date).
    assert run_job(app, find_job("publish_updates"))
    assert run_job(app, find_job("send_update_notifications"))
    with app.app_context():
        assert db.session.get(ChildUpdate, update_id).published_at is not None
        db.session.remove()
    assert deliver_mail(app) >= 1
    [notice] = mailbox.to(sponsor.email)
    assert_clean("the sponsor's e-mail", notice.message.as_string())
    assert REWRITTEN_TEXT not in notice.message.as_string()  # mail carries no child content

    sponsor_context = browser.new_context()
    sponsor_page = sponsor_context.new_page()
    axe.watch(sponsor_page)
    try:
        sponsor_page.goto(live_server + "/account/sign-in")
        axe.check(sponsor_page)
        sponsor_page.get_by_label("E-mail address").fill(sponsor.email)
        sponsor_page.get_by_label("Password").fill(PASSWORD)
        sponsor_page.get_by_role("button", name="Sign in").click()
        sponsor_page.wait_for_url(live_server + "/")
        axe.check(sponsor_page)
        assert_clean("the sponsor's home page", sponsor_page.content())
        sponsor_page.goto(live_server + "/my/sponsorships")
        axe.check(sponsor_page)
        assert_clean("the sponsor's portal", sponsor_page.content())
        sponsor_page.get_by_role("link", name=alias, exact=True).click()
        expect(
            sponsor_page.get_by_role("heading", name=f"My sponsorship of {alias}")
        ).to_be_visible()
        axe.check(sponsor_page)
        content = sponsor_page.content()
        assert REWRITTEN_TEXT in content
        assert f"{alias} passed the term exams." in content
        assert_clean("the sponsorship page", content)
    finally:
        sponsor_context.close()
    METRICS.report(
        "browser: officer signs in (2FA) → rewrites quarantined update → approves "
        "→ published → sponsor reads it (s) / planted identifiers shown",
        f"{time.monotonic() - started:.1f} / 0 of {len(planted)}",
    )


def test_admin_invites_a_colleague_who_sets_a_password_enrols_2fa_and_gets_their_role(
    live_server, page, browser, axe, make_user, mailbox, log_guard
):
    started = time.monotonic()
    app = live_server.app
    admin = make_user("admin.journey@example.org", roles=("admin",), name="Ada Admin")
    newcomer_email = "fran.fundraiser@example.org"
    log_guard.watch(newcomer_email, NEW_PASSWORD)

    sign_in_as_staff(page, axe, live_server, admin.email, admin.password, admin.totp_secret)
    page.get_by_role("link", name="Staff accounts").click()
    expect(page.get_by_role("heading", name="Staff accounts")).to_be_visible()
    axe.check(page)
    # A slip first: no role ticked. The page comes back with the error and what was typed.
    page.get_by_label("Their name").fill("Fran Fundraiser")
    page.get_by_label("Their e-mail address").fill(newcomer_email)
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.get_by_role("link", name="Choose at least one role.")).to_be_visible()
    axe.check(page)
    expect(page.get_by_label("Their e-mail address")).to_have_value(newcomer_email)
    page.get_by_label("Fundraiser").check()
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.get_by_text(f"We have sent an invitation to {newcomer_email}")).to_be_visible()
    axe.check(page)
    invitations = page.get_by_role("row").filter(has_text=newcomer_email)
    expect(invitations).to_contain_text("waiting")

    assert deliver_mail(app) == 1
    [invitation] = mailbox.to(newcomer_email)
    [link] = [link for link in invitation.links() if "/account/invitation/" in link]
    assert link.startswith(live_server)
    log_guard.watch(link.rsplit("/", 1)[1])

    newcomer_context = browser.new_context()
    newcomer = newcomer_context.new_page()
    axe.watch(newcomer)
    try:
        newcomer.goto(link)
        newcomer.wait_for_url(live_server + "/account/invitation")  # token out of the bar
        expect(newcomer.get_by_role("heading", name="Welcome to the staff area")).to_be_visible()
        axe.check(newcomer)
        newcomer.get_by_label("Choose a password").fill(NEW_PASSWORD)
        newcomer.get_by_label("Type it again").fill(NEW_PASSWORD)
        newcomer.get_by_role("button", name="Save my password").click()
        newcomer.wait_for_url(live_server + "/account/sign-in")
        expect(newcomer.get_by_text("Your password is set.")).to_be_visible()
        axe.check(newcomer)

        newcomer.get_by_label("E-mail address").fill(newcomer_email)
        newcomer.get_by_label("Password").fill(NEW_PASSWORD)
        newcomer.get_by_role("button", name="Sign in").click()
        newcomer.wait_for_url(live_server + "/account/two-factor/setup")
        expect(newcomer.get_by_role("heading", name="Set up two-factor sign-in")).to_be_visible()
        axe.check(newcomer)
        expect(newcomer.locator("figure.qr svg")).to_be_visible()
        secret = newcomer.locator("code.secret").inner_text().strip()
        assert re.fullmatch(r"[A-Z2-7]{16,}", secret)
        log_guard.watch(secret)
        newcomer.get_by_label("6-digit code").fill(current_totp(secret))
        newcomer.get_by_role("button", name="Turn on two-factor sign-in").click()
        expect(newcomer.get_by_role("heading", name="Your recovery codes")).to_be_visible()
        expect(newcomer.locator("ol.recovery-codes li")).to_have_count(10)
        axe.check(newcomer)
        newcomer.get_by_role("link", name="I have kept my codes: continue").click()
        newcomer.wait_for_url(live_server + "/staff")
        axe.check(newcomer)

        newcomer.get_by_role("link", name="Donors").click()
        expect(newcomer.get_by_role("heading", name="Donors")).to_be_visible()
        axe.check(newcomer)
        nav = newcomer.get_by_role("navigation", name="Staff area")
        expect(nav.get_by_role("link", name="Staff accounts")).to_have_count(0)
        expect(nav.get_by_role("link", name="Safeguarding review")).to_have_count(0)
        refused = []
        for path in ("/staff/accounts", "/staff/safeguarding", "/staff/audit"):
            response = newcomer.goto(live_server + path)
            refused.append(response.status)
            axe.check(newcomer)
        assert refused == [403, 403, 403]
    finally:
        newcomer_context.close()

    # The same link does not work twice.
    page.goto(link)
    assert "This invitation link does not work" in page.content()
    axe.check(page)
    page.goto(live_server + "/staff/accounts")
    axe.check(page)
    staff_row = page.get_by_role("row").filter(has_text=newcomer_email)
    expect(staff_row).to_contain_text("fundraiser")
    expect(staff_row).to_contain_text("on")  # two-factor
    expect(page.get_by_text("None.")).to_be_visible()  # no invitation waiting any more

    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == newcomer_email))
        assert user.staff_roles == {"fundraiser"} and user.has_totp and user.is_verified
        invitation_id = db.session.scalar(select(StaffInvitation.id))
        new_id = user.id
        db.session.remove()
    assert audit_trail(app, admin.id) == [
        ("staff.invited", "staff_invitation", invitation_id, {"roles": "fundraiser"}),
        ("staff.role_granted", "user", new_id, {"role": "fundraiser", "invitation": invitation_id}),
    ]
    assert [a for a, *_ in audit_trail(app, new_id)] == [
        "staff.invitation_accepted",
        "staff.totp_enrolled",
        "staff.recovery_codes_made",
    ]
    METRICS.report(
        "browser: admin invites staff → e-mail → password → 2FA enrolment → role "
        "pages / other roles refused (s)",
        f"{time.monotonic() - started:.1f} / 3 of 3 refused",
    )
