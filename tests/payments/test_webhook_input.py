"""The webhook reads the Stripe-Signature header once, strictly, and refuses any body that is
not a JSON object: every malformed header or body answers 400 with a problem document and
changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from sqlalchemy import func, select

from donorhub.extensions import db
from donorhub.payments.models import StripeEvent
from tests.metrics import METRICS
from tests.payments.stripe_helpers import WEBHOOK_SECRET


def hmac_of(body: bytes, timestamp: int | str) -> str:
    return hmac.new(
        WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()


def event_body(**overrides) -> bytes:
    now = int(time.time())
    event = {
        "id": f"evt_input_{time.time_ns()}",
        "object": "event",
        "type": "customer.created",
        "created": now,
        "livemode": False,
        "data": {"object": {"id": "cus_input", "object": "customer"}},
    }
    event.update(overrides)
    return json.dumps(event).encode()


def stored_events(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(StripeEvent))


def post(client, body: bytes, header: str | None):
    headers = {} if header is None else {"Stripe-Signature": header}
    return client.post(
        "/stripe/webhook", data=body, content_type="application/json", headers=headers
    )


def test_malformed_signature_headers_and_bodies_answer_400_and_change_nothing(app, client):
    now = int(time.time())
    future = now + 3600
    body = event_body()
    sig_now, sig_future = hmac_of(body, now), hmac_of(body, future)
    headers = {
        # Two readings of t: our check and stripe's must never see different ones.
        "plus-signed future t, then a current t": f"t=+{future},t={now},v1={sig_future}",
        "current t, then future t, spaced": f"v1={sig_future}, t={now},t={future}",
        "unknown element and spaces": f"v9=0, t={now},t={future},v1={sig_future}",
        "duplicate t, same value": f"t={now},t={now},v1={sig_now}",
        "t with a plus sign": f"t=+{now},v1={sig_now}",
        "t with leading space": f"t= {now},v1={sig_now}",
        "t with underscores": f"t={now // 1000}_{now % 1000:03d},v1={sig_now}",
        "t in full-width digits": "t="
        + str(now).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
        + f",v1={sig_now}",
        "t as a float": f"t={now}.0,v1={sig_now}",
        "t negative": f"t=-{now},v1={sig_now}",
        "no t": f"v1={sig_now}",
        "no v1": f"t={now}",
        "only v0": f"t={now},v0={sig_now}",
        "upper-case hex": f"t={now},v1={sig_now.upper()}",
        "short v1": f"t={now},v1={sig_now[:40]}",
        "empty element": f"t={now},,v1={sig_now}",
        "trailing comma": f"t={now},v1={sig_now},",
        "space after comma": f"t={now}, v1={sig_now}",
        "upper-case T": f"T={now},v1={sig_now}",
        "empty header": "",
        "not a header": "garbage",
        "signed an hour ahead": f"t={future},v1={sig_future}",
        "huge t": f"t={'9' * 40},v1={sig_now}",
        "non-ASCII": f"t={now},v1={sig_now}\u00e9",
    }
    bodies = {
        "a JSON array": b"[1, 2]",
        "a JSON string": b'"evt"',
        "a JSON number": b"42",
        "JSON null": b"null",
        "invalid UTF-8": b'{"id": "evt_\xff\xfe"}',
        "a UTF-8 BOM and an object": b"\xef\xbb\xbf" + body,
        "not JSON": b"id=evt_1&type=customer.created",
        "deeply nested": b"[" * 100_000 + b"]" * 100_000,
        "an object with a non-numeric created": event_body(created="soon"),
        "an object whose data is a list": event_body(data=[1]),
        "an object with a huge created": event_body(created=10**30),
        "an empty object": b"{}",
    }
    before = stored_events(app)
    unexpected = []
    for name, header in headers.items():
        response = post(client, body, header)
        if response.status_code != 400 or response.mimetype != "application/problem+json":
            unexpected.append(("header", name, response.status_code, response.mimetype))
    for name, payload in bodies.items():
        response = post(client, payload, f"t={now},v1={hmac_of(payload, now)}")
        if response.status_code != 400 or response.mimetype != "application/problem+json":
            unexpected.append(("body", name, response.status_code, response.mimetype))
    assert unexpected == []
    assert stored_events(app) == before
    # The canonical header still works, with one v1 or with two during a secret's rotation.
    assert post(client, body, f"t={now},v1={sig_now}").status_code == 200
    other = event_body()
    assert post(client, other, f"t={now},v1={'0' * 64},v1={hmac_of(other, now)}").status_code == 200
    assert stored_events(app) == before + 2
    METRICS.report(
        "10.13 malformed webhook headers and bodies / not answered 400",
        f"{len(headers) + len(bodies)} / 0",
    )
