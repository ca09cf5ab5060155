"""The name in a donor's mail is the payer's, for that gift; names carry no links.

Anyone can start (and abandon) a checkout under any e-mail address. Such a checkout must not
put its name into the real donor's receipts, plan mails or donor record.
"""

from __future__ import annotations

import pytest
from marshmallow import ValidationError
from sqlalchemy import select

from donorhub.donations.models import Donor, RecurringPlan
from donorhub.extensions import db
from donorhub.forms import check_plain_name
from tests.helpers import csrf_token, input_schemas
from tests.payments.stripe_helpers import Postman, checkout_url, give, send_mail

VICTIM = "vicky@example.org"
PHISHING = "friend. IMPORTANT: your card needs re-verifying, call 0800 000 0000 today"


@pytest.mark.parametrize("frequency", ["once", "monthly"])
def test_an_unpaid_checkout_under_someone_elses_address_never_names_them(
    pay_app, pay_client, sim, mailbox, frequency
):
    attacker = pay_app.test_client()
    checkout_url(
        give(attacker, frequency=frequency, email=VICTIM, full_name=PHISHING, amount_choice="1000")
    )  # never paid
    url = checkout_url(
        give(pay_client, frequency=frequency, email=VICTIM, full_name="Vicky Victim")
    )
    assert sim.pay(url)[0] == 303
    Postman(sim, pay_client).flush()
    with pay_app.app_context():
        donor = db.session.scalar(select(Donor).where(Donor.email == VICTIM))
        assert donor.full_name == "Vicky Victim"  # staff records and exports too
        if frequency == "monthly":
            plan = db.session.scalar(
                select(RecurringPlan).where(RecurringPlan.stripe_subscription_id.is_not(None))
            )
            sub = plan.stripe_subscription_id
    if frequency == "monthly":
        # A failed renewal: the payment-failure mail addresses the payer of the plan.
        sim.control(f"/_sim/subscriptions/{sub}/renew", fail="1")
        Postman(sim, pay_client).flush()
    send_mail(pay_app)
    mails = mailbox.to(VICTIM)
    (receipt,) = [m for m in mails if "receipt" in m.subject]
    assert receipt.text.startswith("Dear Vicky Victim,")
    for mail in mails:
        assert "IMPORTANT" not in mail.text and "0800" not in mail.text, mail.subject
        assert "Vicky Victim" in mail.text, mail.subject
    assert len(mails) == (1 if frequency == "once" else 2)


LINKS = [
    "Jo https://evil.example/x",
    "Jo www.evil.example",
    "Jo evil.example://x",
    "HTTP Jo",
    "Visit hTtPs now",
]


def _name_fields() -> list[tuple[type, str]]:
    """Every field of every input schema that takes a person's name."""
    found = []
    for cls in input_schemas():
        for name in cls._declared_fields:
            if name.endswith(("full_name", "first_name", "last_name")):
                found.append((cls, name))
    return found


def test_every_form_that_takes_a_name_refuses_a_link():
    fields = _name_fields()
    names = {f"{cls.__name__}.{name}" for cls, name in fields}
    assert {
        "NewGiftSchema.full_name",
        "RegisterSchema.full_name",
        "StaffInvitationSchema.full_name",
        "OfflineGiftSchema.full_name",
        "NewGiftSchema.gift_aid_first_name",
        "NewGiftSchema.gift_aid_last_name",
    } <= names
    for cls, name in fields:
        field = cls._declared_fields[name]
        for text in LINKS:
            with pytest.raises(ValidationError):
                for validator in field.validators:
                    validator(text)
                raise AssertionError(f"{cls.__name__}.{name} took {text!r}")
        for validator in field.validators:
            validator("Zoë Smith-Jones")  # an ordinary name passes
    with pytest.raises(ValidationError, match="web address"):
        check_plain_name("Jo http://x")


def test_the_giving_and_register_forms_say_why_a_name_is_refused(pay_app, pay_client, sim):
    response = give(pay_client, full_name="friend, verify at https://evil.example/verify")
    assert response.status_code == 422
    assert "without a web address" in response.get_data(as_text=True)
    client = pay_app.test_client()
    token = csrf_token(client, "/account/register")
    response = client.post(
        "/account/register",
        data={
            "csrf_token": token,
            "full_name": "Jo www.evil.example",
            "email": "jo@example.org",
            "password": "correct-horse-battery-9",
            "password_confirm": "correct-horse-battery-9",
        },
    )
    assert response.status_code == 422
    assert "without a web address" in response.get_data(as_text=True)
    assert sim.requests("/v1/checkout") == []


def test_a_name_stored_with_a_link_before_the_rule_is_never_put_into_mail(
    pay_app, pay_client, sim, mailbox
):
    from donorhub.donations.models import Donation

    url = checkout_url(give(pay_client, email=VICTIM, full_name="Vicky Victim"))
    with pay_app.app_context():
        # As a row written before names with links were refused would hold it.
        gift = db.session.scalar(select(Donation))
        gift.donor_name = "friend, verify at https://evil.example/verify"
        db.session.commit()
    assert sim.pay(url)[0] == 303
    Postman(sim, pay_client).flush()
    send_mail(pay_app)
    (receipt,) = [m for m in mailbox.to(VICTIM) if "receipt" in m.subject]
    assert receipt.text.startswith("Dear friend,")
    html = receipt.message.get_body(preferencelist=("html",))
    assert "evil.example" not in receipt.text
    assert html is None or "evil.example" not in html.get_content()
