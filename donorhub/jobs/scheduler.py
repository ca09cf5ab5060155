"""The APScheduler process: never started inside a web worker."""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask

from donorhub.jobs.registry import JobSpec, all_jobs, run_job


def build_scheduler(app: Flask, jobs: list[JobSpec] | None = None) -> BlockingScheduler:
    scheduler = BlockingScheduler(timezone=UTC)
    with app.app_context():
        jobs = jobs if jobs is not None else all_jobs()
        for job in jobs:
            scheduler.add_job(
                run_job,
                args=(app, job),
                id=job.name,
                name=job.description,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=300,
                **job.trigger(),
            )
    return scheduler


def next_run_times(app: Flask, now: datetime | None = None) -> list[tuple[JobSpec, datetime]]:
    now = now or datetime.now(UTC)
    rows = []
    with app.app_context():
        for job in all_jobs():
            arguments = dict(job.trigger())
            kind = arguments.pop("trigger")
            if kind == "interval":
                trigger = IntervalTrigger(timezone=UTC, start_date=now, **arguments)
            else:
                from apscheduler.triggers.cron import CronTrigger

                arguments.setdefault("timezone", UTC)
                trigger = CronTrigger(**arguments)
            rows.append((job, trigger.get_next_fire_time(None, now)))
    return rows
