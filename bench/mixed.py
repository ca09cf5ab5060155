"""Benchmark: the mixed load (tests/system/mixed.py) against the whole system.

    .venv/bin/python bench/mixed.py [--duration 60] [--people 8] [--sponsors 80]

gunicorn (2 sync workers) on PostgreSQL, with the jobs process and the Stripe simulator
delivering signed webhooks, all as real processes (tests/system/stack.py). The database is a
scratch one on the machine's server (BENCH_PG_SERVER, default
postgresql://postgres@127.0.0.1:5432), named donorhub_bench_mixed, dropped and re-created at
the start and dropped at the end. Rate-limit counters go to Redis db 14 (BENCH_REDIS_URI),
which is flushed before and after.

Simulated people browse public pages, give once and monthly through Checkout, sponsor
children (some leave their hold to expire) and replay webhooks. It prints requests per
second and p50/p99 latency per kind of request, with the same run's /healthz rate from as
many clients as the baseline (a figure from a shared machine is noisy: read the ratio), then
the accounting: every gift, plan, hold,
receipt, notification and Stripe event accounted for exactly once. It exits 1 on any
discrepancy or unexpected error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import requests  # noqa: E402

from tests.system import mixed  # noqa: E402
from tests.system.stack import (  # noqa: E402
    drop_database,
    free_port,
    fresh_database,
    start_gunicorn,
    start_jobs,
    start_simulator,
)

DATABASE = "donorhub_bench_mixed"


def trivial_rate(base_url: str, clients: int, seconds: float) -> float:
    """Requests per second of /healthz (one SELECT 1) from `clients` threads: the same run's
    baseline, so the figures can be compared across noisy runs as ratios."""
    deadline = time.monotonic() + seconds
    counts = [0] * clients

    def hit(index: int) -> None:
        with requests.Session() as session:
            session.trust_env = False
            while time.monotonic() < deadline:
                if session.get(base_url + "/healthz", timeout=10).status_code == 200:
                    counts[index] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(hit, range(clients)))
    return sum(counts) / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of load")
    parser.add_argument("--people", type=int, default=8, help="concurrent simulated people")
    parser.add_argument("--sponsors", type=int, default=80, help="sponsor accounts to seed")
    args = parser.parse_args()
    server = os.environ.get("BENCH_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")
    redis_uri = os.environ.get("BENCH_REDIS_URI", "redis://127.0.0.1:6379/14")
    counters = redis.Redis.from_url(redis_uri)
    counters.flushdb()
    logs = Path(tempfile.mkdtemp(prefix="donorhub-bench-mixed-"))
    url = fresh_database(DATABASE, server)
    services = []
    try:
        phase = mixed.Phases()
        phase("seed")
        sponsors = mixed.prepare_database(url, sponsors=args.sponsors)
        phase("start")
        port = free_port()
        sim = start_simulator(logs, f"http://127.0.0.1:{port}/stripe/webhook")
        services.append(sim)
        env = dict(
            mixed.CHEAP_ARGON2,
            STRIPE_API_BASE=sim.base_url,
            PROXY_COUNT="1",
            RATELIMIT_STORAGE_URI=redis_uri,
            CSP_FORM_ACTION=sim.base_url,
            DONORHUB_INSTANCE_DIR=str(logs),
        )
        services.append(start_jobs(url, logs, **env))
        web = start_gunicorn(url, logs, port=port, workers=2, **env)
        services.append(web)
        mixed.wait_for_output(services[1], "Jobs process started")
        phase("baseline")
        baseline = trivial_rate(web.base_url, args.people, seconds=8)
        phase("load")
        result = mixed.MixedLoad([web.base_url], sim.base_url, sponsors, people=args.people).run(
            args.duration
        )
        phase("settle")
        mixed.settle(url, sim.base_url)
        accounting = mixed.account(url, sim.base_url, result)
        phase("stop")
    finally:
        for service in services:
            service.kill(signal.SIGTERM)
        for service in reversed(services):
            service.stop()
        drop_database(DATABASE, server)
        counters.flushdb()
        counters.close()

    print(
        f"mixed load: {args.duration:.0f} s, {args.people} concurrent people, gunicorn 2 "
        "sync workers, PostgreSQL, jobs process, Stripe simulator webhooks"
    )
    print(result.table())
    app_samples = [s for s in result.samples if not s.kind.startswith("sim:")]
    app_rate = len(app_samples) / result.elapsed
    print(
        f"baseline, same run, {args.people} clients: /healthz {baseline:.1f} requests/s; "
        f"mixed app requests {app_rate:.1f}/s; ratio mixed / trivial {app_rate / baseline:.2f}"
    )
    print("people: " + ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items())))
    print(f"phases: {phase.report()}")
    print(accounting.summary())
    for failure in result.failures[:20]:
        print(f"unexpected: {failure.kind} {failure.status} {failure.detail[:300]}")
    for problem in accounting.problems[:50]:
        print(f"discrepancy: {problem}")
    if result.failures or accounting.problems:
        print(
            f"FAILED: {len(result.failures)} unexpected errors, "
            f"{len(accounting.problems)} discrepancies"
        )
        return 1
    print("every gift accounted for exactly once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
