"""Plant identifying strings in every field and free text of a feed; prove none comes out.

Walks every GET route as every role (anonymous, donor, admin, fundraiser, safeguarding
officer) with real arguments, delivers all mail through the real SMTP server, and checks
every log record. The one deliberate exception is the officer's audited "show the hidden
parts" page, whose purpose is to show flagged text to the person who must judge it.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from donorhub.children.models import Child, ChildText, ChildUpdate
from donorhub.extensions import db
from donorhub.feed.models import FeedRun
from donorhub.mail.sender import send_due_mail
from donorhub.sponsorship import jobs as sponsorship_jobs
from donorhub.sponsorship import services as sponsorship_services
from donorhub.sponsorship.models import Sponsorship
from tests.feed.builders import Batch, child, exit_record, home_stats, update
from tests.helpers import csrf_token, sign_in
from tests.metrics import METRICS
from tests.security.routes import all_routes

#: The audited page whose purpose is to show the officer the flagged text itself.
DELIBERATE_EXCEPTIONS = {"staff.reveal_item"}


def canary(n: int) -> str:
    return f"Zqx{n:03d}Planted"


def planted_feed():
    """Five look-alike children (so they are listed), each field carrying canaries where the
    contract allows free values; vocabulary fields carry canaries on rejected lines."""
    numbers = itertools.count(1)
    canaries = set()

    def plant() -> str:
        value = canary(next(numbers))
        canaries.add(value)
        return value

    children = []
    for _ in range(6):
        ref = "c-" + plant()
        children.append(
            child(
                ref,
                about=f"My name is {plant()} from {plant()} Nagar, call "
                f"98200 {50000 + len(children)}.",
            )
        )
    updates = [
        update(
            c["ref"],
            uid="u-" + plant(),
            text=f"She met Mr. {plant()} near {plant()} Road on 12/03/2026.",
        )
        for c in children
    ]
    home_update = update(
        home="MH-02", uid="u-" + plant(), text=f"{plant()} Vidyalaya visited the home."
    )
    rejected_lines = [
        child("c-" + plant(), age_band=plant()),
        child("c-" + plant(), home=plant()),
        child("c-" + plant(), region=plant()),
        update(children[0]["ref"], uid="u-" + plant(), category=plant()),
    ]
    main = Batch().add(*children, *updates, home_update, home_stats(), *rejected_lines)
    leaver = Batch().add(exit_record(children[5]["ref"]))
    leaky = Batch(batch="leaky-1").add(child("c-" + plant(), name=plant(), school=plant()))
    return [main, leaver, leaky], canaries, children


def test_planted_identifiers_never_come_out(
    app, make_user, import_feed, mailbox, log_guard, backend
):
    batches, canaries, children = planted_feed()
    log_guard.watch(*canaries)
    roles = {
        "anonymous": None,
        "donor": make_user(),
        "sponsor": make_user(),
        "admin": make_user(roles=("admin",)),
        "fundraiser": make_user(roles=("fundraiser",)),
        "safeguarding_officer": make_user(roles=("safeguarding_officer",)),
    }
    import_feed(batches[0])
    sponsor_planted_children(app, roles["sponsor"].id, roles["safeguarding_officer"].id)
    for batch in batches[1:]:
        import_feed(batch)
    with app.app_context():  # the exit's neutral notice, as the jobs would send it
        sponsorship_jobs.stop_collection_for_exited()
        sponsorship_jobs.send_due_exit_notices(datetime.now(UTC) + timedelta(days=30))

    # The officer approves one quarantined text after editing the identifiers out.
    officer = roles["safeguarding_officer"]
    officer_client = app.test_client()
    sign_in(officer_client, officer.email, totp_secret=officer.totp_secret)
    with app.app_context():
        text_id = db.session.scalars(select(ChildText.id).order_by(ChildText.id)).first()
    url = f"/staff/safeguarding/about/{text_id}"
    response = officer_client.post(
        url + "/approve",
        data={
            "csrf_token": csrf_token(officer_client, url),
            "mode": "edited",
            "text": "She loves drawing and wants to be a teacher.",
        },
    )
    assert response.status_code == 302

    arguments = route_arguments(app)
    responses_checked, hits = 0, []
    for role, user in roles.items():
        client = officer_client if role == "safeguarding_officer" else app.test_client()
        if user is not None and role != "safeguarding_officer":
            sign_in(client, user.email, totp_secret=user.totp_secret)
        for route in all_routes(app):
            if "GET" not in route.methods or route.endpoint in DELIBERATE_EXCEPTIONS:
                continue
            for path in arguments(route):
                for accept in ("text/html", "application/json"):
                    response = client.get(path, headers={"Accept": accept})
                    body = response.get_data(as_text=True)
                    response.close()
                    responses_checked += 1
                    hits += [(role, path, c) for c in canaries if c in body]
    assert hits == [], hits[:5]
    # The walk saw the sponsor's portal with real content: an approved, published update
    # and the neutral notice of the child who exited.
    sponsor_client = app.test_client()
    sign_in(sponsor_client, roles["sponsor"].email)
    portal_pages = "".join(
        sponsor_client.get(path).get_data(as_text=True)
        for path in arguments(
            next(r for r in all_routes(app) if r.endpoint == "sponsorship.portal_sponsorship")
        )
    )
    assert "She enjoyed the art class." in portal_pages
    assert "has moved on from this part of our programme" in portal_pages

    with app.app_context():
        report = send_due_mail()
    mail_text = "\n".join(m.message.as_string() for m in mailbox.messages)
    assert report.sent >= 1 and mailbox.messages
    assert any(m.subject == "A new update is waiting for you" for m in mailbox.messages)
    assert [c for c in canaries if c in mail_text] == []

    with app.app_context():
        stored_reports = json.dumps(
            [r.report for r in db.session.scalars(select(FeedRun))]
            + [r.reason for r in db.session.scalars(select(FeedRun))]
        )
        assert [c for c in canaries if c in stored_reports] == []
        ref_hits = []
        refs = {c["ref"] for c in children}
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(text(f"SELECT * FROM {table.name}")):
                rendered = json.dumps([str(v) for v in row])
                ref_hits += [(table.name, ref) for ref in refs if ref in rendered]
        assert ref_hits == []
        exited = db.session.scalars(select(Child).where(Child.status == "exited")).one()
        assert exited.about.original is None
        assert all(
            u.original_text is None
            for u in db.session.scalars(
                select(ChildUpdate).where(ChildUpdate.child_id == exited.id)
            )
        )

    METRICS.report(
        "safeguarding: planted identifiers / responses checked / hits",
        f"{len(canaries)} / {responses_checked} / 0 (+ mail, logs, run reports, database refs)",
    )


def sponsor_planted_children(app, user_id: int, officer_id: int) -> None:
    """The sponsor role sponsors the first planted child (with an approved, published
    update) and the one that will exit, so the portal walk sees real child data."""
    from donorhub.accounts.models import User
    from donorhub.children import review
    from donorhub.sponsorship import conduct
    from donorhub.sponsorship.models import SponsorshipStatus

    with app.app_context():
        user = db.session.get(User, user_id)
        sponsorship_services.accept_conduct(user, conduct.CURRENT_VERSION)
        listed = db.session.scalars(select(Child).order_by(Child.id)).all()
        for child in (listed[0], listed[5]):
            row = sponsorship_services.hold_child(user, child.public_token, "gbp")
            row.move(SponsorshipStatus.ACTIVE)
            row.started_at = datetime.now(UTC)
        update_row = db.session.scalars(
            select(ChildUpdate).where(ChildUpdate.child_id == listed[0].id)
        ).first()
        review.approve(
            db.session.get(User, officer_id),
            "update",
            update_row.id,
            edited_text="She enjoyed the art class.",
        )
        db.session.commit()
        # Published and announced the way the jobs do it, so the rendered update and the
        # notification e-mail are part of what this test checks.
        from donorhub.updates import jobs as update_jobs

        assert update_jobs.publish_updates().startswith("published")
        assert "mailed=1" in update_jobs.send_update_notifications()


def route_arguments(app):
    """Real values for every route parameter, so each page shows real (planted) data."""
    with app.app_context():
        tokens = db.session.scalars(select(Child.public_token)).all()
        texts = db.session.scalars(select(ChildText.id)).all()
        updates = db.session.scalars(select(ChildUpdate.id)).all()
        runs = db.session.scalars(select(FeedRun.id)).all()
        portal_tokens = db.session.scalars(select(Sponsorship.portal_token)).all()

    def arguments(route) -> list[str]:
        rule = route.rule
        if "<" not in rule:
            return [rule]
        if route.endpoint == "sponsorship.profile":
            return [f"/sponsor/{token}" for token in tokens]
        if route.endpoint in ("staff.review_item", "staff.reveal_item"):
            suffix = "/reveal" if route.endpoint == "staff.reveal_item" else ""
            return [f"/staff/safeguarding/about/{i}{suffix}" for i in texts] + [
                f"/staff/safeguarding/update/{i}{suffix}" for i in updates
            ]
        if route.endpoint == "sponsorship.portal_sponsorship":
            return [f"/my/sponsorships/{token}" for token in portal_tokens]
        if route.endpoint == "staff.report":
            from donorhub.reports.services import REPORTS

            return [f"/staff/reports/{key}" for key in REPORTS]
        if route.endpoint == "staff.feed_import":
            return [f"/staff/safeguarding/imports/{i}" for i in runs]
        # Every other parameterised route must be given real arguments here, or this walk
        # would only see its 404 page.
        assert (
            route.endpoint in GENERIC_ARGUMENTS_OK
            or route.endpoint.split(".")[0] in NO_CHILD_DATA_BLUEPRINTS
        ), f"give {route.endpoint} real arguments"
        return [route.url()]

    return arguments


#: Blueprints that hold no child data at all (money only).
NO_CHILD_DATA_BLUEPRINTS = {"donations", "payments", "donations_staff", "campaigns"}
#: Routes whose parameters are tokens or ids that no child data can be reached through.
GENERIC_ARGUMENTS_OK = {
    "static",
    "accounts.verify_email",
    "accounts.reset_password",
    "accounts.confirm_email_change",
    "staff.outbox_message",
    "updates.unsubscribe_page",
    # Campaigns and donors: money and donor data; sponsorships by alias only.
    "campaigns_staff.detail",
    "campaigns_staff.edit",
    "staff.donor",
    "staff.data_protection",
    # Staff accounts and invitations: staff names only, invitation tokens.
    "accounts.accept_invitation",
    "staff.account",
}
