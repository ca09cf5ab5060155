# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: every-view-is-classified.
from donorhub.security import machine, public, signed_in, staff


# ruleid: every-view-is-classified
@bp.get("/staff/secret-report")
def secret_report():
    return ""


# ruleid: every-view-is-classified
@bp.route("/donate/export", methods=["GET", "POST"])
@limit("10 per minute")
def export():
    return ""


# ok: every-view-is-classified
@bp.get("/")
@public
def home():
    return ""


# ok: every-view-is-classified
@bp.post("/account/settings")
@signed_in
def settings():
    return ""


# ok: every-view-is-classified
@staff_bp.route("/gift-aid", methods=["GET", "POST"])
@staff(StaffRole.FUNDRAISER, StaffRole.ADMIN)
def gift_aid():
    return ""


# ok: every-view-is-classified
@bp.post("/stripe/webhook")
@machine
def receive():
    return ""


# ok: every-view-is-classified
@functools.cache
def not_a_view():
    return ""
