"""The staff area's pages, one module per page group; each adds its routes to `staff.bp`.

The rules they use live with the feature that owns them (donations, reports, accounts,
children's review); these modules only read input, call services and render: the request's
commit point (donorhub/commit_point.py) keeps or drops what they wrote.
"""

from donorhub.staff.views import (  # noqa: F401  (each module registers its routes)
    accounts,
    audit,
    dashboard,
    data_protection,
    donors,
    outbox,
    reports,
    role_requests,
    safeguarding,
    stripe_events,
)
