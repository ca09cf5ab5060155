"""A withdrawal of profile consent closes the child for new sponsors at once, even though her
public card stays until the next publication: a hold made just before the withdrawal can no
longer become a sponsorship."""

from __future__ import annotations

import pytest

from donorhub.accounts.models import User
from donorhub.database import utcnow
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.sponsorship import services
from donorhub.sponsorship.models import Sponsorship
from tests.feed.builders import Batch, child
from tests.sponsorship.helpers import load_children


def test_a_hold_made_before_a_profile_consent_withdrawal_cannot_be_paid(app, import_feed, sponsor):
    kids = load_children(app, import_feed, 6, updates=False)
    holder = sponsor()
    with app.app_context():
        hold = services.hold_child(db.session.get(User, holder.id), kids.tokens[0], "gbp")
        db.session.commit()
        hold_id = hold.id
        db.session.remove()
    withdrawn = child(kids.refs[0], consent={**child()["consent"], "profile": False})
    import_feed(Batch().add(withdrawn), publish=False)
    with app.app_context():
        # The holds job ends it and expires its Checkout Session ...
        assert hold_id in services.expired_hold_ids(utcnow())
        # ... and until it runs, no checkout opens for it.
        with pytest.raises(DomainError):
            services.open_checkout(db.session.get(Sponsorship, hold_id))
        db.session.rollback()
