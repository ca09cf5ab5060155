"""Impact updates: publication on a fixed schedule and content-free notifications."""

from flask import Blueprint

bp = Blueprint("updates", __name__)
