"""Helpers for tests that give money through the local Stripe simulator (its fixtures, sim,
pay_app and pay_client, are in tests/fixtures/payments.py).

The app talks to a real simulator over HTTP with the real stripe library. With
deliver_webhooks=False the simulator only stores events; tests fetch them from /v1/events,
sign them exactly as Stripe does and post them to /stripe/webhook themselves (in order,
shuffled, duplicated, ...).

The webhook only stores an event; the event worker applies it. `post_event` does what the
running system does after each delivery: it runs the worker's step once
(`apply_stored_events`), so the event's effect is there when it returns.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import stripe

from config import TestingConfig
from tests.helpers import CSRF_PATTERN

WEBHOOK_SECRET = TestingConfig.STRIPE_WEBHOOK_SECRET


def http(
    method: str,
    url: str,
    *,
    form: dict | None = None,
    json_body: Any = None,
    key: str | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], str]:
    """One HTTP request without following redirects: (status, headers, body)."""
    data, headers = None, {}
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    if key:
        headers["Authorization"] = f"Bearer {key}"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read().decode()


class Sim:
    """A running simulator plus the calls tests make to it."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def control(self, path: str, method: str = "POST", **body: Any) -> Any:
        status, _, text = http(
            method, f"{self.base_url}{path}", json_body=body if method == "POST" else None
        )
        assert status == 200, text
        return json.loads(text)

    def reset(self) -> None:
        self.control("/_sim/reset")

    def api(self, path: str) -> Any:
        status, _, text = http("GET", f"{self.base_url}{path}", key="sk_test_tests")
        assert status == 200, text
        return json.loads(text)

    def events(self, types: tuple[str, ...] = ()) -> list[dict]:
        """Every stored event, oldest first, as the raw JSON Stripe would send."""
        found, after = [], None
        while True:
            query = "limit=100" + (f"&starting_after={after}" if after else "")
            page = self.api(f"/v1/events?{query}")
            found.extend(page["data"])
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        found.reverse()
        return [e for e in found if not types or e["type"] in types]

    def pay(self, session_url: str, outcome: str = "succeed", **fields: str) -> tuple[int, str]:
        status, headers, _ = http("POST", f"{session_url}/pay", form={"outcome": outcome, **fields})
        return status, headers.get("Location", "")

    def requests(self, path_prefix: str) -> list[dict]:
        return self.control(f"/_sim/requests?path_prefix={path_prefix}", method="GET")["requests"]

    def fault(self, **fault: Any) -> list[dict]:
        """Add a simulator fault; every keyword (path_prefix, method, status, times,
        delay_seconds, hold) goes to the simulator: `method` filters the API calls it hits."""
        status, _, text = http("POST", f"{self.base_url}/_sim/faults", json_body=fault)
        assert status == 200, text
        return json.loads(text)["faults"]

    def hold(self, name: str, action: str, count: int = 1) -> dict:
        """Drive a named hold: "wait" until `count` calls in all have reached it, or
        "release" the next `count` and return once their effect is committed."""
        status, _, text = http(
            "POST",
            f"{self.base_url}/_sim/holds/{name}/{action}",
            json_body={"count": count, "timeout": 120},
            timeout=130,
        )
        assert status == 200, f"hold {name!r} {action} {count}: {text}"
        return json.loads(text)

    def clear_faults(self) -> None:
        http("DELETE", f"{self.base_url}/_sim/faults")


def sign(payload: bytes, *, timestamp: int | None = None, secret: str = WEBHOOK_SECRET) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, timestamp)


def apply_stored_events(app):
    """The event worker's step, run once in this process: every due stored event applied
    (donorhub/payments/jobs.py apply_now). Returns its ApplyReport."""
    from donorhub.payments.jobs import apply_now

    return apply_now(app)


def post_event(client, event: dict | bytes, *, apply: bool = True, **sign_args):
    """Deliver one signed event; then, as the running system's worker would, apply what
    was stored (apply=False: leave it stored, for tests of the queue itself)."""
    payload = event if isinstance(event, bytes) else json.dumps(event).encode()
    response = client.post(
        "/stripe/webhook",
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": sign(payload, **sign_args)},
    )
    if apply and response.status_code == 200:
        apply_stored_events(client.application)
    return response


def deliver(client, events: list[dict]) -> list[int]:
    return [post_event(client, event).status_code for event in events]


def csrf_from(client, page: str) -> str:
    match = CSRF_PATTERN.search(client.get(page).get_data(as_text=True))
    assert match, f"no CSRF token on {page}"
    return match.group(1)


def give(client, **overrides: str):
    """Fill in and send the donate form like a browser; returns the response."""
    currency = overrides.get("currency", "gbp")
    form = {
        "frequency": "once",
        "currency": currency,
        "amount_choice": "2500",
        "full_name": "Gita Giver",
        "email": "gita@example.org",
        "designation": "general",
        **overrides,
    }
    form = {k: v for k, v in form.items() if v is not None}
    form["csrf_token"] = csrf_from(client, f"/donate?currency={currency}")
    return client.post("/donate", data=form)


def checkout_url(response) -> str:
    assert response.status_code == 303, (
        response.status_code,
        response.get_data(as_text=True)[:2000],
    )
    return response.headers["Location"]


def session_id_from(url: str) -> str:
    return re.search(r"/checkout/(cs_[A-Za-z0-9_]+)", url).group(1)


def send_mail(app) -> int:
    from donorhub.mail.sender import send_due_mail

    with app.app_context():
        return send_due_mail().sent


class Postman:
    """Posts each stored simulator event to the app once, oldest first (like Stripe)."""

    def __init__(self, sim: Sim, client):
        self.sim, self.client, self.sent = sim, client, set()

    def flush(self) -> list[str]:
        fresh = [e for e in self.sim.events() if e["id"] not in self.sent]
        for event in fresh:
            response = post_event(self.client, event)
            assert response.status_code == 200, (event["type"], response.status_code)
            self.sent.add(event["id"])
        return [e["type"] for e in fresh]
