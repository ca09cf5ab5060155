"""Nobody renames a donor by paying under their address.

Anyone can give as a guest under any e-mail address. The donor record's name (staff pages,
Gift Aid views, exports, mail of older gifts) is the account holder's own name when the
record belongs to an account, and otherwise the name of its first paid gift; a later guest
gift keeps its payer's name on its own receipt only.
"""

from __future__ import annotations

from sqlalchemy import select

from donorhub.accounts import passwords
from donorhub.accounts.models import User
from donorhub.database import utcnow
from donorhub.donations.models import Donation, Donor
from donorhub.extensions import db
from tests.helpers import PASSWORD
from tests.payments.stripe_helpers import Postman, checkout_url, give, send_mail

VICTIM = "vicky@example.org"
ATTACKER_NAME = "Mallory Renamer"


def pay(app, client, sim, **form) -> None:
    url = checkout_url(give(client, **form))
    assert sim.pay(url)[0] == 303
    Postman(sim, client).flush()


def donor_name(app) -> str:
    with app.app_context():
        return db.session.scalar(select(Donor.full_name).where(Donor.email == VICTIM))


def test_a_guest_gift_under_a_guest_donors_address_keeps_the_donors_name(
    pay_app, pay_client, sim, mailbox
):
    pay(pay_app, pay_client, sim, email=VICTIM, full_name="Vicky Victim")
    assert donor_name(pay_app) == "Vicky Victim"
    pay(pay_app, pay_app.test_client(), sim, email=VICTIM, full_name=ATTACKER_NAME)
    assert donor_name(pay_app) == "Vicky Victim"
    with pay_app.app_context():  # the second gift's own receipt still names its payer
        names = db.session.scalars(select(Donation.donor_name).order_by(Donation.id)).all()
    assert names == ["Vicky Victim", ATTACKER_NAME]
    send_mail(pay_app)
    receipts = [m for m in mailbox.to(VICTIM) if "receipt" in m.subject]
    assert [r.text.splitlines()[0] for r in receipts] == [
        "Dear Vicky Victim,",
        f"Dear {ATTACKER_NAME},",
    ]


def test_a_guest_gift_never_renames_a_donor_that_belongs_to_an_account(pay_app, pay_client, sim):
    with pay_app.app_context():
        user = User(
            email=VICTIM,
            full_name="Vicky Victim",
            email_verified_at=utcnow(),
            password_hash=passwords.hash_password(PASSWORD),
        )
        db.session.add(user)
        db.session.flush()
        db.session.add(Donor(email=VICTIM, full_name="Vicky Victim", user_id=user.id))
        db.session.commit()
    pay(pay_app, pay_client, sim, email=VICTIM, full_name=ATTACKER_NAME)  # first paid gift
    assert donor_name(pay_app) == "Vicky Victim"
