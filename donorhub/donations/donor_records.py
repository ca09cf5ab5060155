"""Donor records: find or create the donor of an e-mail address, and the donor record of a
signed-in account (claimed only once its address is verified).

Services flush, never commit (the view, webhook, job or CLI commits once).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from donorhub.donations.models import Donor
from donorhub.extensions import db


def find_or_create_donor(email: str, full_name: str) -> Donor:
    """Find a donor by e-mail or create one; safe when two requests race on one address."""
    email = email.strip().lower()
    donor = db.session.scalar(select(Donor).where(Donor.email == email))
    if donor is not None:
        return donor
    try:
        with db.session.begin_nested():
            donor = Donor(email=email, full_name=full_name)
            db.session.add(donor)
    except IntegrityError:
        donor = db.session.scalar(select(Donor).where(Donor.email == email))
        if donor is None:
            raise
    return donor


def donor_for_user(user) -> Donor | None:
    """The donor record of a signed-in account, without writing anything.

    Claiming: a donor linked to the account, or else the donor with the account's e-mail
    once that address is verified (so nobody can read another's gifts by registering with
    their address). The link is written by the next gift the account makes.
    """
    if user is None or not user.is_authenticated:
        return None
    donor = db.session.scalar(select(Donor).where(Donor.user_id == user.id))
    if donor is None and user.is_verified:
        donor = db.session.scalar(
            select(Donor).where(Donor.email == user.email, Donor.user_id.is_(None))
        )
    return donor


def owns_address(user, donor: Donor) -> bool:
    """A signed-in account whose verified address is the donor's."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_verified
        and (user.email or "").strip().lower() == donor.email
    )


def claim_for_account(donor: Donor, user) -> None:
    """Link the donor to the account with its verified address, if neither has a link."""
    if (
        user is not None
        and donor.user_id is None
        and user.is_verified
        and donor.email == user.email
    ):
        other = db.session.scalar(select(Donor).where(Donor.user_id == user.id))
        if other is None:
            donor.user_id = user.id
