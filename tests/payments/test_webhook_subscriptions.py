"""The events docs/deploy.md tells the operator to subscribe at Stripe are exactly the
events the webhook acts on: one left out would reach us only through reconciliation."""

from __future__ import annotations

from donorhub.payments.webhooks import HANDLERS
from tests.system.deploy_doc import example_blocks, webhook_events


def test_the_documented_subscription_is_every_handled_event():
    documented = webhook_events()
    assert len(documented) == len(set(documented)), "an event is listed twice"
    assert set(documented) == set(HANDLERS), {
        "handled but not subscribed": sorted(set(HANDLERS) - set(documented)),
        "subscribed but not handled": sorted(set(documented) - set(HANDLERS)),
    }


def test_the_other_example_blocks_still_read():
    """Reading indented blocks left the other example blocks as they were."""
    blocks = example_blocks()
    assert {"gunicorn", "environment", "secrets", "nginx", "webhookevents"} <= set(blocks)
    assert blocks["nginx"].lstrip().startswith(("#", "server", "upstream", "map", "limit"))
