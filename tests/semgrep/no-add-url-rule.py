# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: no-add-url-rule.


def register(app, bp, view):
    # ruleid: no-add-url-rule
    app.add_url_rule("/hidden", view_func=view)
    # ruleid: no-add-url-rule
    bp.add_url_rule("/other", "other", view)
    # ok: no-add-url-rule
    app.register_blueprint(bp)
