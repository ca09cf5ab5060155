# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: csrf-exempt-only-known-views (any module but the two
# that hold the known exempt views).
from donorhub.extensions import csrf
from donorhub.security import public, signed_in


# ruleid: csrf-exempt-only-known-views
@bp.post("/donate/quick")
@public
@csrf.exempt
def quick_gift():
    return "", 204


# ok: csrf-exempt-only-known-views
@bp.post("/account/delete")
@signed_in
def delete_account():
    return "", 204


def register(app):
    # ruleid: csrf-exempt-only-known-views
    csrf.exempt(delete_account)
    # ruleid: csrf-exempt-only-known-views
    app.config["WTF_CSRF_ENABLED"] = False


class ProductionConfig:
    # ruleid: csrf-exempt-only-known-views
    WTF_CSRF_ENABLED = False
    # ok: csrf-exempt-only-known-views
    WTF_CSRF_TIME_LIMIT = 3600
