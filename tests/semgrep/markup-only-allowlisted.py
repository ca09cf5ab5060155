# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: markup-only-allowlisted.
import markupsafe
from markupsafe import Markup, escape


def greeting(user):
    # ruleid: markup-only-allowlisted
    return Markup(f"<b>{user.full_name}</b>")


def note(text):
    # ruleid: markup-only-allowlisted
    return markupsafe.Markup(text)


def safe_note(text):
    # ok: markup-only-allowlisted
    return escape(text)
