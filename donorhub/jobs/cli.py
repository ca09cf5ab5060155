"""`flask jobs run | list | run-once NAME`."""

from __future__ import annotations

import logging
import signal
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from donorhub.jobs.lock import SchedulerLock
from donorhub.jobs.registry import RunningWorkers, all_jobs, all_workers, find_job, run_job
from donorhub.jobs.scheduler import build_scheduler, next_run_times

jobs_cli = AppGroup("jobs", help="Scheduled work: run the scheduler, list or run jobs.")
log = logging.getLogger("donorhub.jobs")
#: How often the scheduler checks that it still holds the jobs lock (see SchedulerLock.keep).
LOCK_CHECK_SECONDS = 5


@jobs_cli.command("run")
def run_scheduler() -> None:
    """Run the scheduler in this process until stopped (one copy per deployment)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    lock = SchedulerLock(
        app.config["SQLALCHEMY_DATABASE_URI"], app.config["JOBS_LOCK_ID"], app.instance_path
    )
    if not lock.acquire():
        click.echo(
            "Another jobs process is already running against this database; "
            "this one is stopping so that no job runs twice.",
            err=True,
        )
        sys.exit(3)
    scheduler = build_scheduler(app)
    lost = []

    def keep_lock():
        # A database restart ends the session that holds the lock: take it again, or stop
        # if another jobs process took it meanwhile, so that no job runs twice.
        if not lock.keep():
            lost.append(True)
            log.error("jobs lock taken by another process; this one stops")
            scheduler.shutdown(wait=False)

    scheduler.add_job(
        keep_lock,
        "interval",
        seconds=LOCK_CHECK_SECONDS,
        id="keep_jobs_lock",
        max_instances=1,
        coalesce=True,
    )

    def stop(_signum, _frame):
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with app.app_context():
        workers = RunningWorkers(app, all_workers())
    workers.start()
    click.echo(
        f"Jobs process started with {len(scheduler.get_jobs()) - 1} jobs and "
        f"{len(workers.threads)} workers."
    )
    try:
        scheduler.start()
    finally:
        workers.stop()
        lock.release()
        click.echo("Jobs process stopped.")
    if lost:
        click.echo(
            "Another jobs process took the lock after the database connection was "
            "lost; this one stopped so that no job runs twice.",
            err=True,
        )
        sys.exit(3)


@jobs_cli.command("list")
def list_jobs() -> None:
    """Show every scheduled job and when it next runs."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    rows = next_run_times(app)
    width = max(len(job.name) for job, _ in rows)
    click.echo(f"{'job'.ljust(width)}  next run (UTC)        what it does")
    for job, when in rows:
        click.echo(f"{job.name.ljust(width)}  {when:%Y-%m-%d %H:%M:%S}   {job.description}")


@jobs_cli.command("run-once")
@click.argument("name")
def run_once(name: str) -> None:
    """Run one job now, in this process."""
    job = find_job(name)
    if job is None:
        names = ", ".join(j.name for j in all_jobs())
        raise click.ClickException(f"There is no job called {name!r}; the jobs are: {names}.")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not run_job(app, job):
        raise click.ClickException(f"Job {name} failed; the log has the details.")
    click.echo(f"Job {name} finished.")
