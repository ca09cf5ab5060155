"""Impact updates: publication on a fixed schedule and content-free notifications."""

from flask import Blueprint

from donorhub.security import keep_private

bp = keep_private(Blueprint("updates", __name__))
