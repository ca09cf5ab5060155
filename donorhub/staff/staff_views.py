"""Issue 7 staff pages (donors, reports, exports, data protection), imported in one place."""

from donorhub.staff import (  # noqa: F401
    donors_views,
    dp_views,
    reports_views,
)
