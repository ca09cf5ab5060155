"""Children fixtures: batches imported the way the CLI and the job do (tests/feed/conftest.py)."""

from tests.feed.conftest import import_feed  # noqa: F401 - a fixture
