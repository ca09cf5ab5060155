"""The home page and the health check."""

from __future__ import annotations

from flask import Response, jsonify, render_template
from sqlalchemy import text

from donorhub.extensions import db
from donorhub.main import bp
from donorhub.security import public


@bp.get("/")
@public
def home():
    """What the charity does and how to help."""
    from donorhub.campaigns import services as campaign_services

    live = campaign_services.live_campaigns()
    totals = campaign_services.totals_for(live)  # one statement for all of them
    return render_template("main/home.html", campaigns=[(c, totals[c.id]) for c in live])


@bp.get("/healthz")
@public
def healthz():
    """For the load balancer: the app answers and the database is reachable. Nothing about
    the deployment (not even the environment's name) is told to whoever asks.

    One `SELECT 1` on a connection from the pool, given straight back: no ORM session and
    no unit of work, so the commit point has nothing to commit."""
    with db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return jsonify(status="ok")


#: Paths no crawler may fetch: every page about a child (the listing, profiles, match-me,
#: the impact counts), the portal, update links, accounts, plan links and the staff area.
#: Kept-private pages also answer `X-Robots-Tag: noindex`, for crawlers that ignore this.
ROBOTS_DISALLOW = (
    "/sponsor",
    "/my/",
    "/updates/",
    "/impact",
    "/account",
    "/donate/manage",
    "/staff",
)


@bp.get("/robots.txt")
@public
def robots_txt():
    """Which paths crawlers must leave alone; the home page, giving and campaigns stay open."""
    lines = ["User-agent: *", *(f"Disallow: {path}" for path in ROBOTS_DISALLOW), ""]
    return Response("\n".join(lines), mimetype="text/plain")
