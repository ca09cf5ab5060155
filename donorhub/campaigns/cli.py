"""`flask campaigns verify-totals [--repair]`: the running totals against a full recount.

The commands hang on the public blueprint's own command group (`bp.cli`, named after the
blueprint), which Flask adds to the app when it registers the blueprint.
"""

from __future__ import annotations

import click
from sqlalchemy import func, select

from donorhub.campaigns import bp, services
from donorhub.campaigns.models import Campaign
from donorhub.database import unit_of_work
from donorhub.extensions import db


def _differences() -> list[str]:
    db.session.rollback()  # a transaction of its own, from its first statement
    try:
        return services.totals_differences()
    finally:
        db.session.rollback()


@bp.cli.command("verify-totals")
@click.option(
    "--repair",
    is_flag=True,
    help="Rewrite every running total from the recount, in one transaction.",
)
def verify_totals(repair: bool) -> None:
    """Compare every campaign's running totals with a full recount of its gifts; exit 1
    naming each campaign that differs (and by how much), unless --repair mends them."""
    differences = _differences()
    campaigns = db.session.scalar(select(func.count()).select_from(Campaign)) or 0
    db.session.rollback()
    if not differences:
        click.echo(f"The running totals of all {campaigns} campaigns equal a full recount.")
        return
    for sentence in differences:
        click.echo(sentence, err=True)
    if not repair:
        raise SystemExit(1)
    with unit_of_work():
        services.repair_totals()
    left = _differences()
    if left:
        for sentence in left:
            click.echo(f"Still different after the repair: {sentence}", err=True)
        raise SystemExit(1)
    click.echo(
        f"Repaired {len(differences)} campaign(s) from a full recount; "
        "the running totals now equal it."
    )
