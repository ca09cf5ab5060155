"""`flask children publish-releases`: the weekly publication, run by hand."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from donorhub.children import services
from donorhub.database import unit_of_work, utcnow

children_cli = AppGroup("children", help="What the public and sponsors see of the children.")


@children_cli.command("publish-releases")
def publish_releases_command() -> None:
    """Publish the releases now (the scheduler does it weekly). An extra publication is a
    moment the public can see changes: use it when the schedule was missed, or when a
    safeguarding officer needs a card gone before the next one."""
    with unit_of_work():
        shown = services.publish_releases(utcnow())
    upcoming = services.next_publication(utcnow())
    click.echo(
        f"Published: {shown} cards shown. The next scheduled publication is "
        f"{upcoming:%Y-%m-%d %H:%M} UTC."
    )
