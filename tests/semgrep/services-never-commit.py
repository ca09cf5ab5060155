# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: services-never-commit (stands for a services.py).
from donorhub.extensions import db


def cancel_plan(plan, actor):
    plan.status = "cancelled"
    # ok: services-never-commit
    db.session.flush()
    # ruleid: services-never-commit
    db.session.commit()


def refund(connection):
    # ruleid: services-never-commit
    connection.commit()


def release_expired_holds(now=None):
    # No exception for batch loops: a job loops with one unit of work per item.
    for _sponsorship in []:
        # ruleid: services-never-commit
        db.session.commit()
    return 0


def stop_collection_after_exits(now=None):
    # ruleid: services-never-commit
    db.session.commit()


def unit_of_work():
    # The one commit jobs and CLI commands use (donorhub/database.py).
    yield
    # ok: services-never-commit
    db.session.commit()
