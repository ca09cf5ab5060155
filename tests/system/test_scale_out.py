"""Scale-out: two app servers on one PostgreSQL database, one jobs process, Redis for the
rate-limit counters, one Stripe simulator whose webhooks reach both servers through a
round-robin reverse proxy, and the mixed load of tests/system/mixed.py spread over both.

What a person cares about: every gift, plan, hold, receipt and notification is accounted
for exactly once however the requests were spread; a sign-in, a CSRF token or a hold made
on one server works on the other (the web tier keeps nothing in process memory); a second
jobs process refuses to run, so no job runs twice.
"""

from __future__ import annotations

import http.client
import itertools
import signal
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from tests.metrics import METRICS
from tests.system import mixed
from tests.system.stack import (
    drop_database,
    free_port,
    fresh_database,
    start_gunicorn,
    start_jobs,
    start_simulator,
)

DATABASE = "donorhub_system_scale_out"
REDIS_URI = "redis://127.0.0.1:6379/13"  # db 13 is this test's own; only it is flushed
LOAD_SECONDS = 20


class RoundRobinProxy:
    """A reverse proxy in front of both servers, as nginx would be: each request goes to
    the next backend, with X-Forwarded-For and X-Forwarded-Proto set, body passed as is."""

    def __init__(self, backends: list[str]) -> None:
        self.served: Counter = Counter()
        ports = itertools.cycle([int(b.rsplit(":", 1)[1]) for b in backends])
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's API
                with lock:
                    port = next(ports)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower()
                    not in ("host", "connection", "x-forwarded-for", "x-forwarded-proto")
                }
                headers["X-Forwarded-For"] = self.client_address[0]
                headers["X-Forwarded-Proto"] = "http"
                upstream = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                try:
                    upstream.request("POST", self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    content = answer.read()
                    status = answer.status
                except OSError:
                    status, content = 502, b"bad gateway\n"
                finally:
                    upstream.close()
                with lock:
                    proxy.served[port] += 1
                self.send_response(status)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scratch_database():
    url = fresh_database(DATABASE)
    yield url
    drop_database(DATABASE)


@pytest.fixture
def rate_limit_redis():
    client = redis.Redis.from_url(REDIS_URI)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_two_servers_one_database_every_gift_once(scratch_database, rate_limit_redis, tmp_path):
    url = scratch_database
    phase = mixed.Phases()
    phase("migrate and seed")
    sponsors = mixed.prepare_database(url, sponsors=30)
    ports = [free_port(), free_port()]
    proxy = RoundRobinProxy([f"http://127.0.0.1:{p}" for p in ports])
    services = []
    try:
        phase("start the stack")
        sim = start_simulator(tmp_path, proxy.url + "/stripe/webhook")
        services.append(sim)
        env = dict(
            mixed.CHEAP_ARGON2,
            STRIPE_API_BASE=sim.base_url,
            PROXY_COUNT="1",
            RATELIMIT_STORAGE_URI=REDIS_URI,
            PUBLIC_BASE_URL=proxy.url,
            CSP_FORM_ACTION=sim.base_url,
            DONORHUB_INSTANCE_DIR=str(tmp_path),
        )
        failed: RuntimeError | None = None
        with ThreadPoolExecutor(3) as pool:  # the processes start side by side
            starting = [
                pool.submit(
                    start_gunicorn, url, tmp_path, port=port, workers=2, name=f"web-{n}", **env
                )
                for n, port in enumerate(ports, 1)
            ]
            jobs = start_jobs(url, tmp_path, **env)
            services.append(jobs)
            for future in starting:
                try:
                    services.append(future.result())
                except RuntimeError as error:
                    failed = error
        if failed:
            raise failed
        webs = services[-2:]
        mixed.wait_for_output(jobs, "Jobs process started")
        second = start_jobs(url, tmp_path, name="jobs-second", **env)
        services.append(second)
        assert second.wait(timeout=60) == 3, second.output()
        assert "Another jobs process is already running" in second.output()
        assert jobs.alive()

        phase("load")
        load = mixed.MixedLoad(
            [w.base_url for w in webs], sim.base_url, sponsors, public_base_url=proxy.url, people=6
        )
        result = load.run(LOAD_SECONDS)
        print(result.table())
        assert result.failures == [], result.failures[:5]

        served = result.served_by()
        total = sum(served.values())
        assert total > 100, served
        assert all(served[w.base_url] >= 0.35 * total for w in webs), served
        for label in (h[2] for h in mixed.HANDOFFS[:2]):
            assert result.handoffs[label] >= 1, (label, result.handoffs)

        phase("settle")
        mixed.settle(url, sim.base_url)
        phase("accounting")
        assert all(proxy.served[p] >= 5 for p in ports), proxy.served  # webhooks on both
        accounting = mixed.account(url, sim.base_url, result)
        print(accounting.summary())
        assert accounting.problems == []
        counts = accounting.counts
        for kind in (
            "one-off gifts paid",
            "monthly plans started",
            "sponsorships paid",
            "holds released",
            "receipts queued once",
            "sponsors notified once",
        ):
            assert counts[kind] >= 1, (kind, counts)
        assert jobs.alive(), jobs.output()[-2000:]
        METRICS.report(
            "scale-out: 2 gunicorn servers x 2 workers, 1 PostgreSQL, Redis, 1 jobs process",
            f"{total} requests, {served[webs[0].base_url]}/{served[webs[1].base_url]} per "
            f"server, webhooks {proxy.served[ports[0]]}/{proxy.served[ports[1]]}; "
            f"{sum(result.handoffs.values())} sessions crossed servers; 0 unexpected errors; "
            f"second jobs process exit 3; {counts['one-off gifts paid']} gifts, "
            f"{counts['monthly plans started']} plans, {counts['sponsorships paid']} "
            f"sponsorships, {counts['holds released']} holds released, "
            f"{counts['events stored once']} events: 0 discrepancies",
        )
        # The rate-limit counters of both servers live in Redis (db 13), not in a worker.
        assert rate_limit_redis.keys("LIMITS*"), "no rate-limit counter in Redis"
    finally:
        phase("stop")
        for service in services:  # all at once, then wait for each
            service.kill(signal.SIGTERM)
        for service in reversed(services):
            service.stop()
        proxy.close()
        print(phase.report())
