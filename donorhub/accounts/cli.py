"""`flask accounts create-staff EMAIL --role ROLE`, `flask accounts reset-two-factor EMAIL`."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from donorhub.accounts import services
from donorhub.accounts.models import StaffRole
from donorhub.database import unit_of_work
from donorhub.errors import DomainError

accounts_cli = AppGroup("accounts", help="Manage accounts.")


def read_password() -> str:
    """From a hidden prompt on a terminal, else the first line of standard input."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


@accounts_cli.command("create-staff")
@click.argument("email")
@click.option(
    "--role",
    required=True,
    type=click.Choice([r.value for r in StaffRole]),
    help="The staff role to grant.",
)
@click.option("--name", default="", help="The person's name as staff will see it.")
def create_staff(email: str, role: str, name: str) -> None:
    """Create a staff account (the password is read from a prompt or standard input)."""
    password = read_password()
    if not password:
        raise click.ClickException("No password was given on standard input or at the prompt.")
    try:
        with unit_of_work():
            user = services.create_staff_account(
                email, name or email.split("@")[0], password, StaffRole(role), actor=None
            )
    except services.WeakPassword as error:
        raise click.ClickException(
            "That password is too weak: " + " ".join(error.problems)
        ) from None
    except DomainError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"Staff account {user.id} has the {role} role. It sets up two-factor sign-in "
        "the first time it signs in."
    )


@accounts_cli.command("reset-two-factor")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset_two_factor(email: str, yes: bool) -> None:
    """Remove a staff member's authenticator and recovery codes (they lost both): their
    sessions end, and their next sign-in sets up a new authenticator. Check who is asking
    first (docs/operations.md)."""
    if not yes:
        click.confirm(
            f"Reset two-factor sign-in for {email}? Check it is really them first", abort=True
        )
    try:
        with unit_of_work():
            user = services.find_user_by_email(email)
            if user is None:
                raise DomainError("There is no account with that address.")
            services.reset_second_factor(user)
            user_id = user.id
    except DomainError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"Two-factor sign-in of account {user_id} is reset; its sessions have ended. "
        "It sets up a new authenticator at its next sign-in. The owner was told by "
        "e-mail."
    )
