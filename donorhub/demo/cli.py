"""`flask demo seed` fills an empty database with demo accounts (never in production)."""

from __future__ import annotations

import click
import pyotp
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from donorhub.accounts import services as account_services
from donorhub.accounts.models import StaffRole, User
from donorhub.database import unit_of_work, utcnow
from donorhub.demo.feed_seed import seed_feed
from donorhub.donations.demo import seed_donations
from donorhub.extensions import db
from donorhub.sponsorship.demo import seed_sponsorships

demo_cli = AppGroup("demo", help="Demo data for development (refused in production).")

#: Published in the README: demo accounts exist only on development machines.
DEMO_PASSWORD = "demo-password-for-local-use"  # noqa: S105
DEMO_STAFF = [
    ("admin@demo.donorhub.invalid", "Asha Admin", StaffRole.ADMIN),
    ("fundraiser@demo.donorhub.invalid", "Femi Fundraiser", StaffRole.FUNDRAISER),
    ("safeguarding@demo.donorhub.invalid", "Sam Safeguarding", StaffRole.SAFEGUARDING_OFFICER),
]
DEMO_DONORS = [
    ("donor@demo.donorhub.invalid", "Dana Donor"),
    ("sponsor@demo.donorhub.invalid", "Sol Sponsor"),
    ("monthly@demo.donorhub.invalid", "Morgan Monthly"),
]


def refuse_in_production() -> None:
    if current_app.config["ENV_NAME"] == "production":
        raise click.ClickException("Demo data is never created in production.")


@demo_cli.command("seed")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database has accounts.")
def seed(if_empty: bool) -> None:
    """Create demo staff (with two-factor secrets) and demo donors."""
    refuse_in_production()
    if if_empty and db.session.scalar(select(func.count()).select_from(User)):
        click.echo("The database already has accounts; demo data was not added.")
        return
    with unit_of_work():
        for email, name, role in DEMO_STAFF:
            user = account_services.create_staff_account(
                email, name, DEMO_PASSWORD, role, actor=None
            )
            # A fixed secret per demo account, so `flask demo totp` and a phone agree.
            user.totp_secret = pyotp.random_base32()
        for email, name in DEMO_DONORS:
            if account_services.find_user_by_email(email) is None:
                db.session.add(
                    User(
                        email=email,
                        full_name=name,
                        email_verified_at=utcnow(),
                        password_hash=account_services.passwords.hash_password(DEMO_PASSWORD),
                    )
                )
        seed_donations()
        __import__("donorhub.campaigns.demo").campaigns.demo.seed_campaigns()
    click.echo(seed_feed())
    click.echo(seed_sponsorships())
    click.echo("Demo data is in. Sign in at /account/sign-in with these (development only):")
    click.echo(f"  password for every demo account: {DEMO_PASSWORD}")
    for email, _name, role in DEMO_STAFF:
        account = account_services.find_user_by_email(email)
        assert account is not None  # created above, or by an earlier seed
        click.echo(f"  {role.value:<21} {email}  two-factor secret {account.totp_secret}")
    for email, _name in DEMO_DONORS:
        click.echo(f"  {'donor':<21} {email}")
    click.echo(
        "  Staff codes: add the secret to an authenticator app, or run `flask demo totp EMAIL`."
    )


@demo_cli.command("totp")
@click.argument("email")
def totp(email: str) -> None:
    """Print the current two-factor code of a demo staff account."""
    refuse_in_production()
    user = account_services.find_user_by_email(email)
    if user is None or user.totp_secret is None or not email.endswith("@demo.donorhub.invalid"):
        raise click.ClickException("That is not a demo staff account with two-factor set up.")
    click.echo(pyotp.TOTP(user.totp_secret).now())
