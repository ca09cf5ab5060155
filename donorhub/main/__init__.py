"""Public pages that belong to no feature: the home page and the health check."""

from flask import Blueprint

bp = Blueprint("main", __name__)
