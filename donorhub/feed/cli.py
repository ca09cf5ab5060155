"""`flask feed import [PATH] [--dry-run]`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import AppGroup

from donorhub.feed.importer import FeedNotConfigured
from donorhub.feed.jobs import ImportFailed, configured_source, run_import
from donorhub.feed.source import DropDirectorySource, SingleFileSource, SourceError

feed_cli = AppGroup("feed", help="The partner's data feed.")
COLUMNS = ("created", "updated", "unchanged", "rejected", "quarantined", "exits")


@feed_cli.command("import")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check and count everything, change nothing.")
def import_command(path: Path | None, dry_run: bool) -> None:
    """Import a feed file, every *.jsonl in a folder, or the configured source."""
    from flask import current_app

    if path is None:
        source = configured_source()
        if source is None:
            raise click.ClickException(
                "No PATH was given and neither FEED_DIR nor FEED_URL is set."
            )
    elif path.is_dir():
        source = DropDirectorySource(
            path, current_app.config["FEED_MAX_BYTES"], label="cli", delete_processed=False
        )
    else:
        source = SingleFileSource(path)
    bar: dict = {}

    def progress(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = click.progressbar(length=total, label="Importing", file=sys.stderr)
            bar["bar"].__enter__()
            bar["done"] = 0
        bar["bar"].update(done - bar["done"])
        bar["done"] = done
        if done == total:
            bar.pop("bar").__exit__(None, None, None)

    try:
        results = run_import(source, dry_run=dry_run, progress=progress)
    except (FeedNotConfigured, SourceError, ImportFailed) as error:
        if "bar" in bar:  # end the progress line before the message
            bar.pop("bar").__exit__(None, None, None)
        raise click.ClickException(str(error)) from None
    if not results:
        click.echo("There was nothing to import.")
        return
    header = f"{'batch':<24} {'result':<17}" + "".join(f"{c:>12}" for c in COLUMNS)
    click.echo(("Dry run: nothing was changed.\n" if dry_run else "") + header)
    for name, report in results:
        click.echo(
            f"{(report.batch or name)[:24]:<24} {report.status:<17}"
            + "".join(f"{getattr(report, c):>12}" for c in COLUMNS)
        )
        for problem in report.problems[:50]:
            field_name = f" {problem['field']}" if problem["field"] else ""
            click.echo(
                f"  line {problem['line']}{field_name}: {problem['rule']} ({problem['effect']})"
            )
        if report.reason:
            click.echo(f"  {report.reason}")
    rejected = [name for name, report in results if report.status == "rejected"]
    if rejected:
        raise click.ClickException(
            f"{len(rejected)} batch(es) were rejected as a whole; nothing of them was imported."
        )
