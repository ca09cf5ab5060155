"""`flask payments reconcile [--since DATE]`, `flask payments apply-events [--once]` and
`flask payments simulate-renewal PLAN`."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from flask import current_app
from flask.cli import AppGroup

from donorhub.payments.gateway import GatewayError, get_gateway

payments_cli = AppGroup("payments", help="Stripe: reconciliation and the local simulator.")


@payments_cli.command("reconcile")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    default=None,
    help="UTC date (or date and time) to look back to. Default: "
    "STRIPE_RECONCILE_LOOKBACK_HOURS (72) ago.",
)
def reconcile_command(since: datetime | None) -> None:
    """List Stripe's events and store any that were missed for the event worker
    (idempotent); report the queue's dead letters."""
    from donorhub.payments.reconcile import reconcile

    try:
        report = reconcile(since.replace(tzinfo=UTC) if since else None)
    except GatewayError as error:
        raise click.ClickException(f"Stripe could not be reached: {error.message}") from None
    click.echo(report.summary())
    if report.failed:
        raise SystemExit(1)


@payments_cli.command("apply-events")
@click.option("--once", is_flag=True, help="Apply every due event, then stop.")
def apply_events(once: bool) -> None:
    """Apply stored Stripe events: the event worker in this process (the jobs process runs
    one too; on PostgreSQL more than one may run, none applies an event another holds)."""
    import signal
    import threading

    from donorhub.payments.jobs import apply_now, run_event_worker

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if once:
        import time

        started = time.perf_counter()
        report = apply_now(app)
        seconds = time.perf_counter() - started
        click.echo(f"Stripe events: {report.summary()}, in {seconds:.3f} s.")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo("Event worker started.")
    run_event_worker(app, stop)
    click.echo("Event worker stopped.")


@payments_cli.command("simulate-renewal")
@click.argument("plan")
@click.option("--fail", is_flag=True, help="The renewal payment fails (insufficient funds).")
@click.option("--action-required", is_flag=True, help="The bank asks for 3-D Secure.")
def simulate_renewal(plan: str, fail: bool, action_required: bool) -> None:
    """Renew a plan now in the local Stripe simulator (PLAN: its id or public id)."""
    from donorhub.donations.models import RecurringPlan
    from donorhub.extensions import db

    if current_app.config["STRIPE_SECRET_KEY"]:
        raise click.ClickException(
            "Renewals can be simulated only against the local simulator (STRIPE_SECRET_KEY is set)."
        )
    row = (
        db.session.get(RecurringPlan, int(plan))
        if plan.isdigit()
        else db.session.query(RecurringPlan).filter_by(public_id=plan).one_or_none()
    )
    if row is None or not row.stripe_subscription_id:
        raise click.ClickException("No plan with that id has a subscription.")
    params = {}
    if fail:
        params["fail"] = "1"
    if action_required:
        params["action_required"] = "1"
    try:
        result = get_gateway().simulate(
            f"subscriptions/{row.stripe_subscription_id}/renew", **params
        )
    except GatewayError as error:
        raise click.ClickException(f"The simulator refused: {error.message}") from None
    invoice = result.get("invoice") or {}
    click.echo(
        f"Renewed plan {row.id}: invoice {invoice.get('id')} is "
        f"{invoice.get('status')}. The webhook will record the outcome."
    )
