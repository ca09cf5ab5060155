"""Fixtures shared by the fault tests: feed imports, the Stripe simulator, sponsors."""

from tests.feed.conftest import import_feed  # noqa: F401
from tests.payments.stripe_helpers import pay_app, pay_client, sim, simulator  # noqa: F401
from tests.sponsorship.conftest import sponsor  # noqa: F401
