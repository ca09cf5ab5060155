"""Feed fixtures, shared with the updates tests."""

from tests.feed.conftest import import_feed  # noqa: F401
