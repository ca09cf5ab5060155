"""Free text a visitor types never carries a link into mail sent to an address they need not
own: a guest's receipt goes to whatever address was typed, so a dedication with a web address
would make the charity's genuine, signed receipt someone's phishing.
"""

from __future__ import annotations

import pytest
from marshmallow import ValidationError, fields, validate
from sqlalchemy import select

from donorhub.donations.schemas import NewGiftSchema
from donorhub.extensions import db
from donorhub.forms import check_no_link, check_plain_name
from tests.helpers import input_schemas
from tests.payments.stripe_helpers import Postman, checkout_url, give, send_mail

VICTIM = "vicky@example.org"
LINKS = [
    "In memory of www.evil.example",
    "verify at https://evil.example/x",
    "see evil.example://x",
    "ｈｔｔｐｓ：／／evil.example",
    "HTTP evil",
]

#: Free-text fields that never reach mail to an address the writer does not own, and why.
#: Every other free-text field of every input schema must refuse links.
NOT_IN_OTHERS_MAIL = {
    # Staff write these; they are the charity's own words, shown on its pages and mail.
    "StaffInvitationSchema.full_name": "checked as a name",
    "DonorFilterSchema.q": "a staff search, never stored",
    "RefundSchema.note": "a staff note, shown to staff only",
    "OfflineGiftSchema.reference": "a staff reference, shown to staff only",
    "NoteSchema.body": "a staff note, shown to staff only",
    "CampaignSchema.name": "staff-written campaign text",
    "CampaignSchema.summary": "staff-written campaign text",
    "CampaignSchema.body_md": "staff-written campaign text",
    "ApproveSchema.text": "the safeguarding officer's approved update text",
    "AuditFilterSchema.action": "a staff search, never stored",
    "AuditFilterSchema.subject_type": "a staff search, never stored",
    # Numbers, codes and look-ups: parsed further, never put into mail as typed.
    "RefundSchema.amount": "parsed as money",
    "OfflineGiftSchema.amount": "parsed as money",
    "PlanChangeSchema.amount": "parsed as money",
    "NewGiftSchema.custom_amount": "parsed as money",
    "CampaignSchema.goal": "parsed as money",
    "RateSchema.rate": "parsed as a number",
    "NewGiftSchema.campaign": "a slug looked up among published campaigns",
    "SuspendSchema.email": "a staff look-up of an account",
    "ConductSchema.version": "compared with the current version",
    "ConductSchema.next": "a redirect target, checked by is_safe_next",
    # Gift Aid details: kept for HMRC, never put into mail (the mail has the name only).
    "NewGiftSchema.gift_aid_title": "at most 4 letters, never in mail",
    "NewGiftSchema.gift_aid_house": "kept for HMRC, never in mail",
    "NewGiftSchema.gift_aid_address": "kept for HMRC, never in mail",
    "NewGiftSchema.gift_aid_postcode": "normalised to a UK postcode",
}


def _free_text_fields() -> list[tuple[type, str]]:
    """Every string field of every input schema not bounded to a list or a pattern (every
    module is imported: schemas live in views modules too)."""
    found = []
    for cls in input_schemas():
        for name, field in cls._declared_fields.items():
            if type(field) is not fields.String:
                continue
            if any(isinstance(v, validate.OneOf | validate.Regexp) for v in field.validators):
                continue
            if any(getattr(v, "__name__", "") == "_second_factor_code" for v in field.validators):
                continue
            found.append((cls, name))
    return found


def test_every_free_text_field_refuses_a_link_or_is_known_not_to_reach_others_mail():
    found = _free_text_fields()
    names = {f"{cls.__name__}.{name}" for cls, name in found}
    assert "NewGiftSchema.dedication" in names
    for cls, name in found:
        key = f"{cls.__name__}.{name}"
        validators = cls._declared_fields[name].validators
        if check_no_link in validators or check_plain_name in validators:
            for text in LINKS:
                with pytest.raises(ValidationError):
                    for validator in validators:
                        validator(text)
                    raise AssertionError(f"{key} took {text!r}")
            continue
        assert key in NOT_IN_OTHERS_MAIL, (
            f"{key} is free text: refuse links (forms.check_no_link) or say in "
            "NOT_IN_OTHERS_MAIL why it never reaches mail to someone else"
        )
    for validator in NewGiftSchema._declared_fields["dedication"].validators:
        validator("In memory of my grandmother, who loved the sea")  # ordinary text passes


def test_a_dedication_with_a_link_is_refused_and_opens_no_checkout(pay_client, sim):
    response = give(
        pay_client,
        email=VICTIM,
        full_name="Sam Sender",
        dedication="Your card needs re-verifying at www.evil.example",
    )
    assert response.status_code == 422
    assert "Leave out web addresses" in response.get_data(as_text=True)
    assert sim.requests("/v1/checkout") == []


def test_a_dedication_stored_with_a_link_before_the_rule_is_left_out_of_the_receipt(
    pay_app, pay_client, sim, mailbox
):
    from donorhub.donations.models import Donation

    url = checkout_url(
        give(pay_client, email=VICTIM, full_name="Vicky Victim", dedication="For Gran")
    )
    with pay_app.app_context():
        gift = db.session.scalar(select(Donation))
        gift.dedication = "Verify your card at https://evil.example/verify"
        db.session.commit()
    assert sim.pay(url)[0] == 303
    Postman(sim, pay_client).flush()
    send_mail(pay_app)
    (receipt,) = [m for m in mailbox.to(VICTIM) if "receipt" in m.subject]
    html = receipt.message.get_body(preferencelist=("html",))
    assert "evil.example" not in receipt.text
    assert html is None or "evil.example" not in html.get_content()
    assert "Dear Vicky Victim," in receipt.text
