"""Webhook delivery: a background thread posts each pending event, oldest first, signed
like Stripe signs them, retrying with backoff before it moves on to the next."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from http.client import HTTPMessage
from typing import IO

import stripe

from .store import Store

log = logging.getLogger(__name__)

# Retry schedule for webhook delivery: 5 tries in all, like a (much faster) Stripe.
DEFAULT_WEBHOOK_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
WEBHOOK_TIMEOUT_SECONDS = 10.0


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Stripe counts a 3xx answer as a failed delivery; never follow it."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


class WebhookDeliverer:
    """Posts pending events, oldest first, each retried with backoff before the next."""

    def __init__(
        self,
        store: Store,
        url: str,
        secret: str,
        retry_delays: tuple[float, ...] = DEFAULT_WEBHOOK_RETRY_DELAYS,
    ) -> None:
        self.store, self.url, self.secret = store, url, secret
        self.retry_delays = tuple(retry_delays)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="stripe-simulator-webhooks", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=WEBHOOK_TIMEOUT_SECONDS + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._deliver_next()
            except Exception:  # e.g. the store closing under us; keep the thread alive
                log.exception("stripe simulator: webhook delivery failed")
                self._stop.wait(1.0)

    def _deliver_next(self) -> None:
        pending = self.store.next_pending_event()
        if pending is None:
            self._wake.wait(1.0)
            return
        seq, data, attempts = pending
        ok, error = self._post(data)
        attempts += 1
        if ok:
            self.store.record_delivery(seq, delivery="delivered", attempts=attempts, error=None)
        elif attempts > len(self.retry_delays):
            log.warning(
                "stripe simulator: giving up on event #%s after %s tries: %s", seq, attempts, error
            )
            self.store.record_delivery(seq, delivery="failed", attempts=attempts, error=error)
        else:
            self.store.record_delivery(seq, delivery="pending", attempts=attempts, error=error)
            self._stop.wait(self.retry_delays[attempts - 1])

    def _post(self, data: str) -> tuple[bool, str | None]:
        # Stripe sends pretty-printed JSON and signs exactly the bytes it sends, per attempt.
        payload = json.dumps(json.loads(data), indent=2)
        signature = stripe.WebhookSignature.generate_signature_header(payload, self.secret)
        request = urllib.request.Request(  # noqa: S310 - scheme checked in create_app
            self.url,
            data=payload.encode("utf-8"),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": signature,
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )
        try:
            with self._opener.open(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return False, f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return 200 <= status < 300, None if 200 <= status < 300 else f"HTTP {status}"
