# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: views-never-commit (stands for a views.py).
from donorhub.commit_point import commit_before_calling_stripe
from donorhub.extensions import db


def donate():
    # ruleid: views-never-commit
    db.session.commit()
    return ""


def retry():
    # ok: views-never-commit
    commit_before_calling_stripe()
    return ""
