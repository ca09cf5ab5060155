"""PostgreSQL restarted under load: the app recovers by itself and nothing is half-applied.

A PRIVATE cluster (initdb in a temporary folder, its own port; never the machine's server)
serves gunicorn (2 workers), the jobs process and the Stripe simulator's webhooks while the
mixed load of tests/system/mixed.py runs. In the middle the cluster is restarted twice:
once in `fast` mode (clients disconnected, clean shutdown) and once in `immediate` mode
(like a crash, with recovery at start), each down for about 1.5 s.

What a person cares about: within a few seconds of each restart the site works again with
no worker stuck; a request that met the outage got a clean error page (never a traceback,
never a half-made gift); afterwards every webhook that failed during the outage has been
delivered again by the simulator and applied once, every paid checkout has exactly one
paid gift, plan or sponsorship, no event row lacks its effect (every event is processed),
and no hold is left orphaned.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.helpers import HANG_GUARD_SECONDS
from tests.metrics import METRICS
from tests.system import mixed
from tests.system.stack import (
    WEBHOOK_SECRET,
    free_port,
    private_postgres,
    start_gunicorn,
    start_jobs,
    start_simulator,
)

LOAD_SECONDS = 26
#: When each restart begins, in seconds after the load started (fast, then immediate).
RESTART_AT = {"fast": 6.0, "immediate": 14.0}
DOWN_FOR = 1.5
#: A request in flight while the server was down, or up to RECOVERY seconds after it was
#: back, may fail; any other failure is a bug.
RECOVERY = 5.0
#: What a request that met the outage may get back: our error page; gunicorn's own when
#: rendering ours needed the database too (a signed-in person's page loads the account
#: first); the webhook's "retry" answer, which makes Stripe deliver again.
CLEAN_ERRORS = (
    "<title>Something went wrong",
    "<title>Internal Server Error</title>",
    "/stripe/webhook: 500 handler failed; retry",
)


def open_checkout(base_url: str) -> tuple[requests.Session, str]:
    """A guest donor fills in the donate form; returns their browser and the checkout URL."""
    browser = requests.Session()
    browser.trust_env = False
    page = browser.get(base_url + "/donate?frequency=once", timeout=20)
    token = mixed.CSRF.search(page.text).group(1)
    sent = browser.post(
        base_url + "/donate",
        allow_redirects=False,
        timeout=20,
        data={
            "csrf_token": token,
            "frequency": "once",
            "currency": "gbp",
            "amount_choice": "2500",
            "designation": "general",
            "full_name": "Outage Donor",
            "email": f"outage-{time.monotonic_ns()}@{mixed.LOAD_DOMAIN}",
        },
    )
    assert sent.status_code == 303, sent.text[:500]
    return browser, sent.headers["Location"]


def pay(checkout: tuple[requests.Session, str]) -> str:
    """Press "Succeed" on the simulator's page (it needs no database of ours)."""
    browser, location = checkout
    session_id = mixed.CHECKOUT_PATH.search(location).group(1)
    paid = browser.post(
        location.split("/checkout/")[0] + f"/checkout/{session_id}/pay",
        data={"outcome": "succeed", "name": "Outage Donor"},
        allow_redirects=False,
        timeout=20,
    )
    assert paid.status_code == 303, paid.text[:500]
    browser.close()
    return session_id


def post_completed_event(simulator_url: str, base_url: str, session_id: str) -> int:
    """Sign and post the simulator's checkout.session.completed of `session_id` to the app
    (as Stripe's next delivery would be); returns the HTTP status (0: no answer)."""
    events = mixed.sim_get(simulator_url, "/v1/events?limit=20&type=checkout.session.completed")
    event = next(e for e in events["data"] if e["data"]["object"]["id"] == session_id)
    payload = json.dumps(event, indent=2).encode()
    try:
        return requests.post(
            base_url + "/stripe/webhook",
            data=payload,
            timeout=10,
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": mixed.sign(payload, WEBHOOK_SECRET),
            },
        ).status_code
    except requests.RequestException:
        return 0


def wait_until_healthy(base_url: str, timeout: float) -> float:
    """Seconds until /healthz answers 200 again (raises after `timeout`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if requests.get(base_url + "/healthz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"/healthz did not answer 200 within {timeout} s of the restart")


def test_app_recovers_from_postgres_restarts_and_nothing_is_half_applied(tmp_path):
    phase = mixed.Phases()
    phase("private cluster and seed")
    # Its own temporary folder, not under pytest's: a pytest run started by anyone else
    # makes /tmp/pytest-of-<user> private again, and the postgres user must reach the data.
    with private_postgres() as cluster:
        url = cluster.createdb("donorhub_system_pg_restart")
        sponsors = mixed.prepare_database(url, sponsors=30)
        services = []
        try:
            phase("start the stack")
            port = free_port()
            sim = start_simulator(tmp_path, f"http://127.0.0.1:{port}/stripe/webhook")
            services.append(sim)
            # PROXY_COUNT=1: the load sends each person's own X-Forwarded-For, so the
            # sign-in rate limit counts people, not the test.
            env = dict(
                mixed.CHEAP_ARGON2,
                STRIPE_API_BASE=sim.base_url,
                PROXY_COUNT="1",
                CSP_FORM_ACTION=sim.base_url,
                DONORHUB_INSTANCE_DIR=str(tmp_path),
            )
            jobs = start_jobs(url, tmp_path, **env)
            services.append(jobs)
            web = start_gunicorn(url, tmp_path, port=port, workers=2, **env)
            services.append(web)
            mixed.wait_for_output(jobs, "Jobs process started")

            phase("load with two restarts")
            load = mixed.MixedLoad([web.base_url], sim.base_url, sponsors, people=6)
            runner = threading.Thread(target=load.run, args=(LOAD_SECONDS,), daemon=True)
            runner.start()
            load_started = time.monotonic()
            outages: list[tuple[float, float]] = []
            recovered: dict[str, float] = {}
            paid_in_outage: list[str] = []
            outage_answers: list[int] = []
            for mode, offset in RESTART_AT.items():
                time.sleep(max(0.0, load_started + offset - time.monotonic()))
                checkout = open_checkout(web.base_url)
                down = time.monotonic()
                cluster.stop(mode)
                # A donor pays while the database is away: the simulator's webhooks get
                # 5xx now and must be delivered again, and applied once, afterwards.
                session_id = pay(checkout)
                paid_in_outage.append(session_id)
                # The same event posted while the database is away must be refused (5xx, so
                # Stripe retries), never acknowledged unapplied.
                outage_answers.append(post_completed_event(sim.base_url, web.base_url, session_id))
                time.sleep(max(0.0, DOWN_FOR - (time.monotonic() - down)))
                cluster.start()
                up = time.monotonic()
                recovered[mode] = wait_until_healthy(web.base_url, RECOVERY)
                outages.append((down, up + RECOVERY))
            runner.join(LOAD_SECONDS + 120)
            assert not runner.is_alive(), "the load did not finish: a request hung"
            result = load.result
            print(result.table())
            print(
                f"seconds from the server being back to /healthz 200: {recovered}; "
                f"{len(result.failures)} requests failed during the outages: "
                f"{dict(Counter((f.kind, f.status) for f in result.failures))}"
            )

            # Failures only of requests in flight while the database was away (a request
            # may wait in gunicorn's queue before a worker takes it), and clean ones.
            def in_outage(failure) -> bool:
                return any(
                    failure.started <= end and failure.ended >= start for start, end in outages
                )

            outside = [f for f in result.failures if not in_outage(f)]
            assert outside == [], (
                [
                    (
                        f.kind,
                        f.status,
                        round(f.started - load_started, 1),
                        round(f.ended - load_started, 1),
                        f.detail[:300],
                    )
                    for f in outside[:5]
                ],
                [(round(a - load_started, 1), round(b - load_started, 1)) for a, b in outages],
            )
            for failure in result.failures:  # an answer (no hang), and a clean one:
                assert failure.status >= 500, failure
                assert any(page in failure.detail for page in CLEAN_ERRORS), failure
                assert "Traceback" not in failure.detail, failure
                assert "psycopg" not in failure.detail, failure  # no driver error shown
            # The load carried on after the outages: requests succeeded after the last one.
            last_outage_end = outages[-1][1]
            after = [
                s for s in result.samples if s.started > last_outage_end and 200 <= s.status < 400
            ]
            assert len(after) >= 10, f"only {len(after)} good requests after the restarts"

            # No worker stuck: both workers answer a burst of concurrent requests.
            def page(_n: int) -> int:
                return requests.get(web.base_url + "/sponsor", timeout=20).status_code

            with ThreadPoolExecutor(8) as pool:
                assert list(pool.map(page, range(16))) == [200] * 16

            phase("settle and account")
            mixed.settle(url, sim.base_url)
            accounting = mixed.account(url, sim.base_url, result)
            print(accounting.summary())
            assert accounting.problems == []
            for kind in ("one-off gifts paid", "holds released", "receipts queued once"):
                assert accounting.counts[kind] >= 1, (kind, accounting.counts)
            assert outage_answers and all(status >= 500 for status in outage_answers), (
                outage_answers
            )
            retried = [
                d
                for d in mixed.sim_get(sim.base_url, "/_sim/deliveries")["deliveries"]
                if d["attempts"] > 1
            ]
            print(
                f"webhooks posted during the outages answered {outage_answers}; simulator "
                f"deliveries that needed more than one try: {len(retried)}"
            )
            # Still exactly one jobs process: the restarts ended the session that held the
            # advisory lock; the jobs process must have taken it again, so a second refuses.
            assert jobs.alive(), jobs.output()[-2000:]
            second = start_jobs(url, tmp_path, name="jobs-second", **env)
            services.append(second)
            assert second.wait(timeout=60) == 3, second.output()[-2000:]
            assert jobs.alive(), jobs.output()[-2000:]
            METRICS.report(
                "PostgreSQL restarted under load (fast, immediate; down ~1.5 s each)",
                f"healthy again after {recovered['fast']:.1f} / {recovered['immediate']:.1f} s; "
                f"{len(result.failures)} requests failed in the outages (5xx page), 0 outside; "
                f"webhooks in the outage answered {sorted(set(outage_answers))}; "
                f"{accounting.counts['events stored once']} events stored once, "
                "0 half-applied, second jobs process exit 3",
            )
        finally:
            phase("stop")
            for service in services:
                service.kill(15)
            for service in reversed(services):
                service.stop()
            print(phase.report())


def test_jobs_lock_is_taken_again_when_its_session_ends_or_given_up(tmp_path):
    """What a restart does to the jobs lock, without the restart: the server ends the
    session that holds it. The holder takes it again at its next check; if another process
    took it first, the holder learns that it must stop (so exactly one runs jobs)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from config import Config
    from donorhub.jobs.lock import SchedulerLock
    from tests.system.stack import drop_database, fresh_database

    name = "donorhub_system_jobs_lock"
    url = fresh_database(name)
    admin = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")

    def holders() -> list[int]:
        with admin.connect() as connection:
            return list(
                connection.execute(
                    text(
                        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = :key "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = :name)"
                    ),
                    {"key": Config.JOBS_LOCK_ID, "name": name},
                ).scalars()
            )

    def end_sessions(pids: list[int]) -> None:
        with admin.connect() as connection:
            for pid in pids:
                # With a timeout the call returns once the backend has gone (and its locks
                # with it), not when the signal is sent: the next look at pg_locks is settled.
                ended = connection.execute(
                    text("SELECT pg_terminate_backend(:pid, :ms)"),
                    {"pid": pid, "ms": HANG_GUARD_SECONDS * 1000},
                ).scalar()
                assert ended, f"backend {pid} did not end within the hang guard"

    first = SchedulerLock(url, Config.JOBS_LOCK_ID, str(tmp_path))
    second = SchedulerLock(url, Config.JOBS_LOCK_ID, str(tmp_path))
    try:
        assert first.acquire() and len(holders()) == 1
        end_sessions(holders())  # as a restart does: the lock is gone, nobody told
        assert holders() == []
        assert first.keep() is True and len(holders()) == 1  # taken again
        assert not second.acquire()

        end_sessions(holders())
        assert second.acquire()  # another process was quicker this time
        assert first.keep() is False  # so the first must stop
        assert second.keep() is True and len(holders()) == 1
    finally:
        first.release()
        second.release()
        admin.dispose()
        drop_database(name)
