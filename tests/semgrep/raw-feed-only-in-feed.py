# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: raw-feed-only-in-feed (a module outside donorhub/feed/).

# ruleid: raw-feed-only-in-feed
from donorhub.feed.parse import parse_feed
# ruleid: raw-feed-only-in-feed
from donorhub.feed.guard import scan_text
# ruleid: raw-feed-only-in-feed
import donorhub.feed.pseudonyms
# ruleid: raw-feed-only-in-feed
from donorhub.feed import review, schemas

# ok: raw-feed-only-in-feed
from donorhub.children.models import Child, ChildRelease
# ok: raw-feed-only-in-feed
from donorhub.feed import review as feed_review
# ok: raw-feed-only-in-feed
from donorhub.feed.release import suppress_table
# ok: raw-feed-only-in-feed
from donorhub.feed.source import DropDirectorySource

USED = (parse_feed, scan_text, donorhub.feed.pseudonyms, review, schemas, Child, ChildRelease,
        feed_review, suppress_table, DropDirectorySource)
