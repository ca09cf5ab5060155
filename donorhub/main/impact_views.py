"""The public impact page."""

from __future__ import annotations

from flask import render_template

from donorhub.children.impact import MEASURES, latest_impact
from donorhub.main import bp
from donorhub.security import keep_private, public


@bp.get("/impact")
@public
@keep_private  # counts per safe home: dated copies would let anyone diff them over time
def impact():
    """What the safe homes did last quarter, in counts that cannot single anyone out."""
    return render_template("main/impact.html", table=latest_impact(), measures=MEASURES)
