# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: services-never-read-request-state
# (stands for donorhub/<feature>/services.py).
import flask
# ok: services-never-read-request-state
from flask import current_app

# ruleid: services-never-read-request-state
from flask import request
# ruleid: services-never-read-request-state
from flask import current_app as app, session
# ruleid: services-never-read-request-state
from flask_login import current_user
# ruleid: services-never-read-request-state
from flask import g

from donorhub.extensions import db


def give(amount_minor: int):
    # ruleid: services-never-read-request-state
    donor = current_user.id
    # ruleid: services-never-read-request-state
    address = request.remote_addr
    # ruleid: services-never-read-request-state
    session["gift"] = amount_minor
    # ruleid: services-never-read-request-state
    g.gift = flask.request.args["x"]
    return donor, address


def start_checkout(actor, row):
    # The acting user comes in as an argument; settings from current_app are fine.
    # ok: services-never-read-request-state
    row.created_by_id = actor.id
    # ok: services-never-read-request-state
    db.session.flush()
    return current_app.config["CHARITY_NAME"], app
