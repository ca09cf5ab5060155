# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: no-print-in-the-app.
import logging

import click

log = logging.getLogger(__name__)


def import_feed(report):
    # ruleid: no-print-in-the-app
    print("imported", report.count)
    # ok: no-print-in-the-app
    click.echo(f"{report.count} records imported")
    # ok: no-print-in-the-app
    log.info("feed imported", extra={"count": report.count})
