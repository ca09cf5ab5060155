# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: pii-guard-only-in-feed-and-review (a module outside
# donorhub/feed/ and donorhub/children/review.py).

# ruleid: pii-guard-only-in-feed-and-review
from donorhub import guard
# ruleid: pii-guard-only-in-feed-and-review
from donorhub.guard import scan_text
# ruleid: pii-guard-only-in-feed-and-review
from donorhub.guard.scan import Finding
# ruleid: pii-guard-only-in-feed-and-review
import donorhub.guard
# ruleid: pii-guard-only-in-feed-and-review
from donorhub import audit, guard as pii_guard

# ok: pii-guard-only-in-feed-and-review
from donorhub.children import review
# ok: pii-guard-only-in-feed-and-review
from donorhub import guarded_names
# ok: pii-guard-only-in-feed-and-review
from donorhub.security import guard_route

USED = (guard, scan_text, Finding, donorhub.guard, audit, pii_guard, review, guarded_names,
        guard_route)
