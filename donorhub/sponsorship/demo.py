"""Demo sponsorship: the demo sponsor has accepted the code of conduct and sponsors one listed
child whose approved updates of past quarters are published, so the portal shows something.

Written straight to the database, like the demo plans (no Stripe subscription behind it);
sponsor through /sponsor to try the simulator. The publication job releases updates on its
schedule; the demo publishes approved updates of past quarters here at once.
"""

from __future__ import annotations

from sqlalchemy import select

from donorhub.accounts.services import find_user_by_email
from donorhub.children.models import Child, ChildRelease, ChildStatus, ChildUpdate, ReviewStatus
from donorhub.children.periods import quarter_of
from donorhub.database import unit_of_work, utcnow
from donorhub.donations import services as donations
from donorhub.donations.models import Frequency, PlanStatus, RecurringPlan
from donorhub.extensions import db
from donorhub.sponsorship import conduct, services
from donorhub.sponsorship.models import Sponsorship, SponsorshipStatus

DEMO_SPONSOR = "sponsor@demo.donorhub.invalid"


def seed_sponsorships() -> str:
    """Called by `flask demo seed` after the feed seed; its own unit of work."""
    with unit_of_work():
        user = find_user_by_email(DEMO_SPONSOR)
        if user is None:
            return "Demo sponsorship skipped: no demo sponsor account."
        current = str(quarter_of(utcnow().date()))
        published = 0
        for update in db.session.scalars(
            select(ChildUpdate).where(
                ChildUpdate.status == ReviewStatus.APPROVED,
                ChildUpdate.published_at.is_(None),
                ChildUpdate.period < current,
            )
        ):
            update.published_at = utcnow()
            published += 1
        services.accept_conduct(user, conduct.CURRENT_VERSION)
        if db.session.scalar(select(Sponsorship.id).where(Sponsorship.user_id == user.id)):
            return f"Demo sponsorship already there; {published} updates published."
        child = db.session.scalar(
            select(Child)
            .join(ChildRelease)
            .join(ChildUpdate, ChildUpdate.child_id == Child.id)
            .where(
                Child.status == ChildStatus.ACTIVE,
                ChildRelease.is_listed.is_(True),
                ChildRelease.updates_allowed.is_(True),
                ChildUpdate.published_at.is_not(None),
            )
            .order_by(Child.first_seen_at, Child.id)
            .limit(1)
        )
        if child is None:
            return f"No listed child with published updates; {published} updates published."
        sponsorship = services.hold_child(user, child.public_token, "gbp")
        plan: RecurringPlan = sponsorship.plan
        plan.frequency = Frequency.MONTHLY
        plan.checkout_completed = True
        plan.started_at = utcnow()
        plan.settle()
        assert plan.status is PlanStatus.ACTIVE
        sponsorship.move(SponsorshipStatus.ACTIVE)
        sponsorship.started_at = utcnow()
        sponsorship.hold_expires_at = None
        donations.find_or_create_donor(user.email, user.full_name)
        return (
            f"Demo sponsor {DEMO_SPONSOR} sponsors one child; {published} approved "
            "updates of past quarters published."
        )
