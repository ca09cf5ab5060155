"""The home page and the health check."""

from __future__ import annotations

from flask import jsonify, render_template
from sqlalchemy import text

from donorhub.extensions import db
from donorhub.main import bp
from donorhub.security import public


@bp.get("/")
@public
def home():
    """What the charity does and how to help."""
    from donorhub.campaigns import services as campaign_services

    campaigns = [
        (c, campaign_services.campaign_totals(c)) for c in campaign_services.live_campaigns()
    ]
    return render_template("main/home.html", campaigns=campaigns)


@bp.get("/healthz")
@public
def healthz():
    """For the load balancer: the app answers and the database is reachable. Nothing about
    the deployment (not even the environment's name) is told to whoever asks."""
    db.session.execute(text("SELECT 1"))
    return jsonify(status="ok")
