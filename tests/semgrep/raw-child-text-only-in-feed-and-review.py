# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: raw-child-text-only-in-feed-and-review (a module
# outside donorhub/feed/ and donorhub/children/review.py).
from sqlalchemy import select

from donorhub.children import review
from donorhub.children.models import ChildText, ChildUpdate


def portal_text(child, update):
    # ruleid: raw-child-text-only-in-feed-and-review
    about = child.about.original
    # ruleid: raw-child-text-only-in-feed-and-review
    sentences = [update.original_text]
    # ruleid: raw-child-text-only-in-feed-and-review
    query = select(ChildUpdate).where(ChildUpdate.original_text.is_(None))
    # ruleid: raw-child-text-only-in-feed-and-review
    return about or getattr(update, "approved_text") or update.original_text or sentences, query


def purge(text, update):
    # ok: raw-child-text-only-in-feed-and-review
    text.original = None
    # ok: raw-child-text-only-in-feed-and-review
    update.original_text = None
    # ok: raw-child-text-only-in-feed-and-review
    return update.approved_text, text.approved


def officer_page(kind, item_id):
    # ok: raw-child-text-only-in-feed-and-review
    return review.original_text(kind, item_id)
