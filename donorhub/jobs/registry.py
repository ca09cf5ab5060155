"""What a scheduled job is, and the list of every job the scheduler runs."""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask

from donorhub import park_for_kill
from donorhub.extensions import db

log = logging.getLogger("donorhub.jobs")

#: Each feature that has scheduled work lists it in `JOBS` in its jobs.py module.
JOB_MODULES = (
    "donorhub.mail.jobs",
    "donorhub.feed.jobs",
    "donorhub.children.jobs",
    "donorhub.payments.jobs",
    "donorhub.sponsorship.jobs",
    "donorhub.updates.jobs",
    "donorhub.accounts.jobs",
)


@dataclass(frozen=True)
class JobSpec:
    name: str
    #: Runs inside an app context; owns its commits (each unit of work whole or not at all);
    #: returns a one-line summary for the log.
    func: Callable[[], str | None]
    #: Called inside an app context, so intervals can come from configuration.
    trigger: Callable[[], dict[str, Any]]
    description: str


@dataclass(frozen=True)
class WorkerSpec:
    """A long-running thread of the jobs process (a feature's `WORKERS`), not a schedule."""

    name: str
    #: Runs until the event is set; owns its app contexts and commits.
    run: Callable[[Flask, threading.Event], None]
    description: str


def all_workers() -> list[WorkerSpec]:
    workers: list[WorkerSpec] = []
    for module_name in JOB_MODULES:
        workers.extend(getattr(importlib.import_module(module_name), "WORKERS", []))
    return workers


class RunningWorkers:
    """The jobs process's worker threads: started with the scheduler, stopped with it."""

    def __init__(self, app: Flask, workers: list[WorkerSpec]) -> None:
        self.stop_event = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(app, worker), name=worker.name, daemon=True)
            for worker in workers
        ]

    def _run(self, app: Flask, worker: WorkerSpec) -> None:
        try:
            worker.run(app, self.stop_event)
        except Exception:
            log.exception("worker failed", extra={"worker": worker.name})

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float = 30) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=timeout)


def all_jobs() -> list[JobSpec]:
    jobs: list[JobSpec] = []
    for module_name in JOB_MODULES:
        jobs.extend(importlib.import_module(module_name).JOBS)
    names = [job.name for job in jobs]
    if len(names) != len(set(names)):
        raise RuntimeError("two jobs share a name")
    return jobs


def find_job(name: str) -> JobSpec | None:
    return next((job for job in all_jobs() if job.name == name), None)


def run_job(app: Flask, job: JobSpec) -> bool:
    """Run one job now. A failure is logged and rolled back; the scheduler lives on."""
    started = time.monotonic()
    with app.app_context():
        try:
            park_for_kill.arrive("job-start", job.name)
            summary = job.func()
            park_for_kill.arrive("job-end", job.name)
        except Exception:
            db.session.rollback()
            log.exception("job failed", extra={"job": job.name})
            return False
        finally:
            db.session.remove()
    log.info(
        "job finished",
        extra={
            "job": job.name,
            "summary": summary or "",
            "seconds": round(time.monotonic() - started, 3),
        },
    )
    return True
