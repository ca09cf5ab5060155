# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: raw-feed-only-in-feed (a module outside donorhub/feed/).

# ruleid: raw-feed-only-in-feed
from donorhub.feed.parse import parse_feed
# ruleid: raw-feed-only-in-feed
import donorhub.feed.pseudonyms
# ruleid: raw-feed-only-in-feed
from donorhub.feed import jobs, schemas

# ok: raw-feed-only-in-feed
from donorhub.children.models import Child, ChildRelease
# ok: raw-feed-only-in-feed
from donorhub.children import review as children_review
# ok: raw-feed-only-in-feed
from donorhub.children.release import suppress_table
# ok: raw-feed-only-in-feed
from donorhub.feed.source import DropDirectorySource
# ok: raw-feed-only-in-feed
from donorhub.feed.models import FeedRun

USED = (parse_feed, donorhub.feed.pseudonyms, jobs, schemas, Child, ChildRelease,
        children_review, suppress_table, DropDirectorySource, FeedRun)
