"""The ceiling for DonorHub's per-request overhead (bench/overhead.py): a bare Flask app that
does the same work as two DonorHub pages and nothing else.

    gunicorn bench.bare_app:app          (DATABASE_URL: the same PostgreSQL database)

* `/healthz`: `SELECT 1` through a pooled SQLAlchemy engine made with DonorHub's own
  `SQLALCHEMY_ENGINE_OPTIONS` (pool pre-ping included) on psycopg 3, answered with the same
  JSON. No Flask-SQLAlchemy session: a connection is checked out, used and given back.
* `/donate`: DonorHub's own template, `templates/donations/donate.html` (and `base.html`,
  `_macros/forms.html`), rendered with the same data, made per request by DonorHub's own
  `form_context()` from the same configuration class.

What it leaves out, on purpose, is what the goal measures: no CSRF (no Flask-WTF; no
session, because there is no SECRET_KEY, so Flask's null session answers the template's
flash lookup), no Flask-Login (the visitor is a constant anonymous user), no Flask-Limiter,
no before/after-request hooks, no security headers, no request id, no logging of ours, no
commit point.

What the template needs, and how it gets it here, honestly:
- `url_for(...)` of seven endpoints: stub routes with the same endpoint names and the same
  rules as DonorHub's (main.home, main.impact, accounts.sign_in, accounts.register,
  sponsorship.waiting_children, donations.donate, static), so every link is the same bytes;
  all but /donate and /healthz answer 404.
- `csrf_token()`: a fixed string of the length of a Flask-WTF token (the page's bytes stay
  the same; nothing is signed or stored).
- `current_user`: Flask-Login's `AnonymousUserMixin()`, built once.
- `charity_name`, `charity_registration`, `StaffRole`, and the `money` and `plain_amount`
  filters: the same values and functions DonorHub's `create_app` registers.
- `get_flashed_messages()`: Flask's own, reading the null session (always empty).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, abort, jsonify, render_template, request
from flask_login import AnonymousUserMixin
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config import config_for_environment, normalise_database_url  # noqa: E402
from donorhub.accounts.models import StaffRole  # noqa: E402
from donorhub.donations.views import form_context  # noqa: E402
from donorhub.money import CURRENCIES, format_money, plain_amount  # noqa: E402

#: As long as the signed token Flask-WTF puts in DonorHub's forms (40 hex characters, a
#: timestamp and a signature), so both pages weigh the same.
STAND_IN_CSRF_TOKEN = "I" * 91

#: The settings `form_context()` and the template read, from DonorHub's configuration class.
SETTINGS = (
    "CHARITY_NAME",
    "CHARITY_REGISTRATION",
    "DONATION_DEFAULT_CURRENCY",
    "DONATION_PRESETS",
    "DONATION_LIMITS",
    "DONATION_FEE_COVER",
    "GIFT_AID_DECLARATION_VERSION",
    "SQLALCHEMY_ENGINE_OPTIONS",
    "PREFERRED_URL_SCHEME",
)


def not_here(**_: Any):
    abort(404)


def stub_blueprint(name: str, rules: dict[str, str]) -> Blueprint:
    """Routes that exist for `url_for` only: same endpoint names, same rules."""
    blueprint = Blueprint(name, __name__)
    for endpoint, rule in rules.items():
        blueprint.route(rule, endpoint=endpoint)(not_here)
    return blueprint


def create_bare_app(database_url: str | None = None) -> Flask:
    settings = config_for_environment()
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    for name in SETTINGS:
        app.config[name] = getattr(settings, name)
    engine = create_engine(
        normalise_database_url(database_url or os.environ["DATABASE_URL"]),
        **app.config["SQLALCHEMY_ENGINE_OPTIONS"],
    )

    anonymous = AnonymousUserMixin()
    app.add_template_filter(format_money, "money")
    app.add_template_filter(plain_amount, "plain_amount")
    app.jinja_env.globals.update(
        csrf_token=lambda: STAND_IN_CSRF_TOKEN,
        current_user=anonymous,
        charity_name=app.config["CHARITY_NAME"],
        charity_registration=app.config["CHARITY_REGISTRATION"],
        StaffRole=StaffRole,
    )

    main = Blueprint("main", __name__)
    donations = Blueprint("donations", __name__)

    @main.get("/healthz", endpoint="healthz")
    def healthz():
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return jsonify(status="ok")

    main.route("/", endpoint="home")(not_here)
    main.route("/impact", endpoint="impact")(not_here)

    @donations.get("/donate", endpoint="donate")
    def donate():
        # The same form DonorHub's GET builds for an anonymous visitor.
        form = {
            "frequency": request.args.get("frequency", "monthly"),
            "currency": request.args.get("currency", "")
            if request.args.get("currency") in CURRENCIES
            else "",
        }
        return render_template("donations/donate.html", **form_context(form, {}))

    app.register_blueprint(main)
    app.register_blueprint(donations)
    app.register_blueprint(
        stub_blueprint("accounts", {"sign_in": "/account/sign-in", "register": "/account/register"})
    )
    app.register_blueprint(stub_blueprint("sponsorship", {"waiting_children": "/sponsor"}))
    app.extensions["bare_engine"] = engine
    return app


if os.environ.get("DATABASE_URL"):
    app = create_bare_app()
