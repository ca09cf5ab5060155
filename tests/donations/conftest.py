from tests.payments.stripe_helpers import pay_app, pay_client, sim, simulator  # noqa: F401
