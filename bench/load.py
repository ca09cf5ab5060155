"""Benchmark: wrk against gunicorn (2 sync workers) on PostgreSQL, every figure a ratio to
/healthz measured in the same run.

    .venv/bin/python bench/load.py                 # 60 s per target, about 10 minutes
    .venv/bin/python bench/load.py --duration 5    # a quick smoke run
    .venv/bin/python bench/load.py --json reports/load.json

One run: a scratch database on the machine's PostgreSQL (`donorhub_bench_load`, dropped
first and afterwards), migrated and filled with the demo data plus pending gifts and plans
for the webhook; gunicorn with 2 sync workers and the sign-in rate limit raised (so the
figures are the app's, not the limiter's); then wrk for --duration seconds per target, one
after another: /healthz (the baseline: one SELECT 1), six public pages, the sign-in form with
wrong passwords for known accounts (a full argon2id verify each), and /stripe/webhook with
distinct pre-signed events (the webhook stores them; `flask payments apply-events --once`
applies them afterwards, as the jobs process's event worker would). For each target it prints
requests/s, p50 and p99 latency and errors, and the ratios to the baseline. After the webhook
run it checks in the database that every event was stored once and applied once. Exits
non-zero on any error or failed check.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import stripe  # noqa: E402 - the benchmark signs events as Stripe does; the app is not involved
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from bench import webhooks as webhook_bench  # noqa: E402
from tests.system.stack import (  # noqa: E402
    WEBHOOK_SECRET,
    drop_database,
    fresh_database,
    migrate,
    run_flask,
    start_gunicorn,
)

LUA_SCRIPT = ROOT / "bench/load/requests.lua"
CSRF_PATTERN = re.compile(r'name="csrf_token" value="([^"]+)"')
WRONG_PASSWORD_MESSAGE = "The e-mail address or password is not right."
#: Per IP address; high enough that wrk (one address) never meets the limiter.
RAISED_SIGN_IN_LIMIT = "1000000 per minute"
#: Events to build per baseline request/s and second of run. The webhook ran at 0.16 of
#: /healthz in bench/webhooks.py's run on an idle machine and at 0.52 in this benchmark's on
#: a saturated one; more than wrk can send, so that it never runs out and repeats.
WEBHOOK_SHARE_OF_BASELINE = 0.75
#: make_events() builds about 3.47 deliveries per gift when there is one plan per 3 gifts.
DELIVERIES_PER_GIFT = 3.47
#: Stripe-Signature timestamps are accepted for 300 s (STRIPE_WEBHOOK_TOLERANCE_SECONDS).
MAX_DURATION = 240
#: argon2id parameters of TestingConfig, for --cheap-hashes only.
CHEAP_ARGON2 = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "8192", "ARGON2_PARALLELISM": "1"}


@dataclass
class Target:
    name: str
    path: str
    method: str = "GET"
    #: Lines for bench/load/requests.lua: METHOD \t PATH \t BODY [\t NAME \t VALUE]...
    lines: list[str] = field(default_factory=list)
    expect: tuple[int, ...] = (200,)
    #: Instead of `lines`: each wrk thread's own lines, so no two threads send the same event.
    per_thread: list[list[str]] = field(default_factory=list)
    must_contain: str = ""
    note: str = ""


@dataclass
class Result:
    name: str
    path: str
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    wrong_status: int
    wrong_body: int
    statuses: dict[str, int]
    expect: list[int]
    note: str = ""
    rps_ratio: float = 0.0
    p50_ratio: float = 0.0
    p99_ratio: float = 0.0

    @property
    def errors(self) -> int:
        # A target that completed nothing is broken, whatever wrk counted.
        return (
            self.socket_errors
            + self.wrong_status
            + self.wrong_body
            + (1 if self.requests == 0 else 0)
        )


def line(method: str, path: str, body: str = "", **headers: str) -> str:
    fields = [method, path, body]
    for name, value in headers.items():
        fields += [name.replace("_", "-"), value]
    if any("\t" in f or "\n" in f for f in fields):
        raise ValueError("a request field holds a tab or a newline")
    return "\t".join(fields)


def send_line(base_url: str, request_line: str) -> int:
    """Send one request of the Lua script's file format; returns its status."""
    method, path, body, *pairs = request_line.split("\t")
    headers = dict(zip(pairs[::2], pairs[1::2], strict=True))
    parsed = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    connection.request(method, path, body=body.encode() or None, headers=headers)
    status = connection.getresponse().status
    connection.close()
    return status


def http_get(base_url: str, path: str) -> tuple[int, dict[str, str], str]:
    parsed = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read().decode("utf-8", errors="replace")
    headers = {k.lower(): v for k, v in response.getheaders()}
    connection.close()
    return response.status, headers, body


# Setting up ----------------------------------------------------------------------------------


def limiter_storage(redis_db: int) -> tuple[str, str]:
    """Redis when it answers (as in production), else per-worker memory; and a description."""
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379, db=redis_db, socket_timeout=2)
        client.ping()
        client.flushdb()  # this benchmark's own database number only
        return f"redis://127.0.0.1:6379/{redis_db}", f"Redis 127.0.0.1:6379 db {redis_db}"
    except Exception as error:  # noqa: BLE001 - any failure means no usable Redis
        return "memory://", f"in-process memory (Redis unavailable: {type(error).__name__})"


def flush_redis(uri: str) -> None:
    if uri.startswith("redis://"):
        import redis

        redis.Redis.from_url(uri, socket_timeout=2).flushdb()


def argon2_verify_ms(env: dict[str, str]) -> tuple[dict[str, int], float]:
    """The argon2id parameters gunicorn will use and one verify's time in this process."""
    from argon2 import PasswordHasher, Type

    from config import DevelopmentConfig

    params = {
        "time_cost": int(env.get("ARGON2_TIME_COST", DevelopmentConfig.ARGON2_TIME_COST)),
        "memory_cost": int(env.get("ARGON2_MEMORY_COST", DevelopmentConfig.ARGON2_MEMORY_COST)),
        "parallelism": int(env.get("ARGON2_PARALLELISM", DevelopmentConfig.ARGON2_PARALLELISM)),
    }
    hasher = PasswordHasher(**params, type=Type.ID)
    stored = hasher.hash("a password for timing only")
    times = []
    for _ in range(3):
        started = time.perf_counter()
        try:
            hasher.verify(stored, "the wrong password")
        except Exception:  # noqa: BLE001, S110 - a mismatch is the point: it costs a full verify
            pass
        times.append((time.perf_counter() - started) * 1000)
    return params, statistics.median(times)


def seed_webhook_rows(app, gifts: int) -> tuple[list, list]:
    """Pending gifts and plans for the events to complete (bench/webhooks.py's seed)."""
    return webhook_bench.seed(app, gifts, max(1, gifts // 3))


def discover_pages(base_url: str) -> dict[str, str]:
    """A live campaign's page and a released child's profile, as the home page and the
    sponsor page link them."""
    _, _, home = http_get(base_url, "/")
    _, _, waiting = http_get(base_url, "/sponsor")
    campaigns = re.findall(r'href="(/campaigns/[A-Za-z0-9_-]+)"', home)
    children = [
        p
        for p in re.findall(r'href="(/sponsor/[A-Za-z0-9_-]+)"', waiting)
        if p not in ("/sponsor/match", "/sponsor/code-of-conduct")
    ]
    if not campaigns or not children:
        raise RuntimeError(
            f"the demo data shows no campaign link on / ({len(campaigns)}) or "
            f"no child profile on /sponsor ({len(children)})"
        )
    return {"campaign": campaigns[0], "child": children[0]}


def sign_in_lines(base_url: str, accounts: list[str], password: str) -> list[str]:
    """Form posts with a real CSRF token and its session cookie, wrong passwords."""
    status, headers, body = http_get(base_url, "/account/sign-in")
    match = CSRF_PATTERN.search(body)
    cookie = headers.get("set-cookie", "").split(";", 1)[0]
    if status != 200 or not match or "=" not in cookie:
        raise RuntimeError(f"/account/sign-in gave no CSRF token and cookie ({status})")
    lines = []
    for number, email in enumerate(accounts):
        form = urllib.parse.urlencode(
            {"csrf_token": match.group(1), "email": email, "password": f"{password}-wrong-{number}"}
        )
        lines.append(
            line(
                "POST",
                "/account/sign-in",
                form,
                Cookie=cookie,
                Content_Type="application/x-www-form-urlencoded",
            )
        )
    return lines


def warm_up(base_url: str, lines: list[str], expect: tuple[int, ...]) -> None:
    """A few untimed requests first, so neither worker's first-use costs (imports, template
    compilation, the hasher) fall inside a timed run."""
    for request_line in lines:
        status = send_line(base_url, request_line)
        if status not in expect:
            raise RuntimeError(f"warm-up {request_line.split(chr(9))[1]} answered {status}")


def warm_up_events(count: int) -> list[str]:
    """Events of a type the app only acknowledges, with ids outside the checked set."""
    bodies = []
    for n in range(count):
        event = webhook_bench.event("customer.created", dict(webhook_bench.FIXTURES["customer"]), n)
        event["id"] = f"evt_warmup_{n}"
        bodies.append(json.dumps(event))
    return bodies


def signed_webhook_lines(bodies: list[str]) -> list[str]:
    """Each body with a Stripe-Signature made now (valid for 300 s), so sign just before."""
    return [
        line(
            "POST",
            "/stripe/webhook",
            body,
            Content_Type="application/json",
            Stripe_Signature=stripe.WebhookSignature.generate_signature_header(
                body, WEBHOOK_SECRET
            ),
        )
        for body in bodies
    ]


# Running wrk ---------------------------------------------------------------------------------


def run_wrk(base_url: str, target: Target, args, work_dir: Path) -> Result:
    requests_file = work_dir / f"requests-{re.sub(r'[^a-z0-9]+', '-', target.name)}.txt"
    if target.per_thread:
        if len(target.per_thread) != args.threads:
            raise ValueError("one list of lines per wrk thread")
        for index, lines in enumerate(target.per_thread):
            Path(f"{requests_file}.{index}").write_text("\n".join(lines) + "\n")
    else:
        requests_file.write_text("\n".join(target.lines) + "\n")
    env = {
        **os.environ,
        "LOAD_REQUESTS": str(requests_file),
        "LOAD_EXPECT": ",".join(map(str, target.expect)),
        "LOAD_DISTINCT": "1" if target.per_thread else "0",
        "LOAD_MUST_CONTAIN": target.must_contain,
    }
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        f"--timeout={args.timeout}s",
        "-s",
        str(LUA_SCRIPT),
        base_url,
    ]
    completed = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,  # noqa: S603
        timeout=args.duration + args.timeout + 60,
        check=False,
    )
    found = [row for row in completed.stdout.splitlines() if row.startswith("LOAD_RESULT ")]
    if completed.returncode != 0 or not found:
        raise RuntimeError(
            f"wrk failed on {target.path} ({completed.returncode}):\n"
            f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
        )
    data = json.loads(found[-1].removeprefix("LOAD_RESULT "))
    seconds = data["duration_us"] / 1e6
    errors = data["errors"]
    wrong = sum(n for code, n in data["statuses"].items() if int(code) not in target.expect)
    return Result(
        name=target.name,
        path=target.path,
        requests=data["requests"],
        seconds=seconds,
        requests_per_s=data["requests"] / seconds if seconds else 0.0,
        p50_ms=data["latency_us"]["p50"] / 1000,
        p99_ms=data["latency_us"]["p99"] / 1000,
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        wrong_status=wrong,
        wrong_body=data["wrong_body"],
        statuses=data["statuses"],
        expect=list(target.expect),
        note=target.note,
    )


# Checking the webhook's work -----------------------------------------------------------------


def stored_bench_events(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM stripe_events WHERE event_id LIKE 'evt_bench_%'")
        ).scalar()


def wait_until_settled(engine, seconds: float = 60, quiet_seconds: int = 3) -> int:
    """The stored count once the workers have finished the requests wrk left in flight: the
    count unchanged for `quiet_seconds` in a row (a webhook under full load can take well
    over a second, so one unchanged second is not enough)."""
    last, quiet, deadline = -1, 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = stored_bench_events(engine)
        quiet = quiet + 1 if now == last else 0
        if quiet >= quiet_seconds:
            return now
        last = now
        time.sleep(1.0)
    return last


def subject_of(event: dict) -> str:
    """The seeded row an event acts on ("gift:ID", "plan:ID"), or the event itself."""
    obj = event["data"]["object"]
    metadata = obj.get("metadata") or {}
    if metadata.get("donation"):
        return f"gift:{metadata['donation']}"
    if metadata.get("plan"):
        return f"plan:{metadata['plan']}"
    details = (obj.get("parent") or {}).get("subscription_details") or {}
    plan = (details.get("metadata") or {}).get("plan")
    return f"plan:{plan}" if plan else f"event:{event['id']}"


def group_by_subject(deliveries: list[dict]) -> dict[str, list[tuple[str, str]]]:
    """(event id, body) per seeded row, in make_events()'s shuffled order: one row's events
    (and their built-in repeats) travel together, so a run that stops part-way leaves most
    rows either complete or untouched, and both are checkable."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for event in deliveries:
        groups.setdefault(subject_of(event), []).append((event["id"], json.dumps(event)))
    return groups


def stored_event_ids(engine) -> set[str]:
    with engine.connect() as connection:
        return set(
            connection.execute(
                text("SELECT event_id FROM stripe_events WHERE event_id LIKE 'evt_bench_%'")
            ).scalars()
        )


def complete_partial_rows(
    engine, base_url: str, groups: dict[str, list[tuple[str, str]]]
) -> tuple[int, int, dict]:
    """Deliver (untimed) the rest of the events of every row that wrk reached part of (the
    run stops mid-row), so each seeded row ends either fully applied or untouched."""
    stored = stored_event_ids(engine)
    missing: dict[str, str] = {}
    partial = 0
    for events in groups.values():
        ids = {event_id for event_id, _ in events}
        if ids & stored and not ids <= stored:
            partial += 1
            missing.update((i, b) for i, b in events if i not in stored)
    parsed = urllib.parse.urlsplit(base_url)
    statuses: dict[int, int] = {}

    def send(body: str) -> int:
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        connection.request(
            "POST",
            "/stripe/webhook",
            body=body.encode(),
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
                    body, WEBHOOK_SECRET
                ),
            },
        )
        status = connection.getresponse().status
        connection.close()
        return status

    with ThreadPoolExecutor(4) as pool:
        for status in pool.map(send, missing.values()):
            statuses[status] = statuses.get(status, 0) + 1
    return partial, len(missing), statuses


def check_webhook_effects(
    engine, gifts: list, plans: list, groups: dict[str, list[tuple[str, str]]]
) -> dict:
    """Every event that arrived stored once and applied once, on the rows this benchmark
    seeded only (the demo data has gifts, plans and mail of its own): a gift whose events
    all arrived is paid, or refunded when make_events() refunded it (every fifth); a plan
    is active with exactly one instalment; a row none of whose events arrived is untouched."""
    stored = stored_event_ids(engine)
    with engine.connect() as connection:

        def scalar(sql: str, **params):
            return connection.execute(text(sql), params).scalar()

        stored_rows = scalar("SELECT count(*) FROM stripe_events WHERE event_id LIKE 'evt_bench_%'")
        gift_status = dict(
            connection.execute(
                text("SELECT public_id, status FROM donations WHERE public_id = ANY(:ids)"),
                {"ids": [public_id for public_id, _ in gifts]},
            ).all()
        )
        plan_state = {
            row[0]: (row[1], row[2])
            for row in connection.execute(
                text(
                    "SELECT p.public_id, p.status, (SELECT count(*) FROM donations d "
                    "WHERE d.plan_id = p.id) FROM recurring_plans p WHERE p.public_id = ANY(:ids)"
                ),
                {"ids": [public_id for public_id, _ in plans]},
            ).all()
        }
        receipts = scalar(
            "SELECT count(*) FROM receipts r JOIN donations d ON r.donation_id = d.id "
            "JOIN donors o ON d.donor_id = o.id WHERE o.email = 'bench@example.org'"
        )
        receipt_mails = scalar(
            "SELECT count(*) FROM outbox_messages WHERE recipient = "
            "'bench@example.org' AND template = 'donations/receipt'"
        )
        mails_twice = scalar(
            "SELECT count(*) FROM (SELECT subject FROM outbox_messages WHERE recipient = "
            "'bench@example.org' GROUP BY subject HAVING count(*) > 1) AS twice"
        )

    def arrived(subject: str) -> bool | None:
        ids = {event_id for event_id, _ in groups.get(subject, [])}
        return True if ids <= stored else False if not ids & stored else None

    unique = {event_id for events in groups.values() for event_id, _ in events}
    problems: list[str] = []
    if stored_rows != len(stored) or not stored <= unique:
        problems.append(
            f"{stored_rows} stored rows for {len(stored)} event ids, "
            f"{len(stored - unique)} not sent by this run"
        )
    done = {
        "gifts_paid": 0,
        "gifts_refunded": 0,
        "gifts_untouched": 0,
        "plans_active": 0,
        "plans_untouched": 0,
    }
    wrong: list[str] = []
    # make_events() refunds every fifth gift (index 0, 5, 10...) and completes the others.
    for index, (public_id, _) in enumerate(gifts):
        state, status = arrived(f"gift:{public_id}"), gift_status.get(public_id)
        final = "refunded" if index % 5 == 0 else "paid"
        if state is True and status == final:
            done[f"gifts_{final}"] += 1
        elif state is False and status == "pending":
            done["gifts_untouched"] += 1
        else:
            wrong.append(f"gift {index}: events arrived {state}, status {status}")
    for public_id, _ in plans:
        state, (status, instalments) = arrived(f"plan:{public_id}"), plan_state[public_id]
        if state is True and status == "active" and instalments == 1:
            done["plans_active"] += 1
        elif state is False and status == "pending" and instalments == 0:
            done["plans_untouched"] += 1
        else:
            wrong.append(
                f"plan: events arrived {state}, status {status}, {instalments} instalments"
            )
    if wrong:
        problems.append(
            f"{len(wrong)} rows not in the state their events lead to, e.g. " + "; ".join(wrong[:3])
        )
    if mails_twice or receipt_mails != receipts:
        problems.append(
            f"receipt mails {receipt_mails} for {receipts} receipts; "
            f"subjects sent twice: {mails_twice}"
        )
    if done["gifts_paid"] + done["gifts_refunded"] + done["plans_active"] == 0:
        problems.append("no seeded row was completed: the webhook did no real work")
    return {
        "events_stored": len(stored),
        "events_built": len(unique),
        **done,
        "receipts": receipts,
        "receipt_mails": receipt_mails,
        "mails_twice": mails_twice,
        "problems": problems,
    }


# Reporting -----------------------------------------------------------------------------------


def print_table(results: list[Result]) -> None:
    print(
        f"{'target':<26} {'path':<34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'req/s÷base':>10} {'p50÷base':>9} {'p99÷base':>9}"
    )
    for r in results:
        print(
            f"{r.name:<26} {r.path[:34]:<34} {r.requests_per_s:8.1f} {r.p50_ms:8.1f} "
            f"{r.p99_ms:8.1f} {r.errors:6d} {r.rps_ratio:10.3f} {r.p50_ratio:9.1f} "
            f"{r.p99_ratio:9.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of wrk per target")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c")
    parser.add_argument(
        "--timeout",
        type=int,
        default=60,
        help="wrk --timeout, seconds (a sign-in queues behind argon2)",
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--database-name", default="donorhub_bench_load")
    parser.add_argument(
        "--redis-db",
        type=int,
        default=14,
        help="Redis database for the limiter's counters (flushed)",
    )
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument(
        "--cheap-hashes",
        action="store_true",
        help="TestingConfig's argon2 parameters (smoke test only: the sign-in "
        "figures are then not production's)",
    )
    args = parser.parse_args()
    if not 1 <= args.duration <= MAX_DURATION:
        parser.error(
            f"--duration must be 1 to {MAX_DURATION} s: the webhook events are signed "
            "just before their run, and a signature is valid for 300 s"
        )
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (or make bench-tools)", file=sys.stderr)
        return 2

    started_at = datetime.now(UTC)
    work_dir = Path(tempfile.mkdtemp(prefix="donorhub-bench-load-"))
    hash_env = dict(CHEAP_ARGON2) if args.cheap_hashes else {}
    storage_uri, storage_text = limiter_storage(args.redis_db)
    argon2_params, verify_ms = argon2_verify_ms(hash_env)

    print(f"database {args.database_name}: migrating and seeding the demo data...", flush=True)
    url = fresh_database(args.database_name)
    engine = create_engine(url, poolclass=NullPool)
    server = None
    try:
        setup_started = time.monotonic()
        migrate(url)
        run_flask(url, "demo", "seed", quiet=True, **hash_env)
        # Built now, not after the runs: the app's modules are imported once, at the same
        # moment as gunicorn's, so the two cannot disagree in a tree that is being edited.
        seeding_app = webhook_bench.build_app(url)
        from donorhub.demo.cli import DEMO_DONORS, DEMO_PASSWORD, DEMO_STAFF

        server = start_gunicorn(
            url,
            work_dir / "logs",
            workers=2,
            name="web",
            RATELIMIT_SIGN_IN=RAISED_SIGN_IN_LIMIT,
            RATELIMIT_STORAGE_URI=storage_uri,
            **hash_env,
        )
        base_url = server.base_url
        pages = discover_pages(base_url)
        public_pages = [
            ("home", "/"),
            ("donate", "/donate"),
            ("campaign page", pages["campaign"]),
            ("sponsor list", "/sponsor"),
            ("child profile", pages["child"]),
            ("impact", "/impact"),
        ]
        for _, path in [("baseline", "/healthz"), *public_pages]:
            for _ in range(4):  # both workers compile the templates before anything is timed
                status, _, _ = http_get(base_url, path)
                if status != 200:
                    raise RuntimeError(f"{path} answered {status} before the runs")

        print(
            f"set up in {time.monotonic() - setup_started:.0f} s; "
            f"gunicorn 2 sync workers at {base_url}; wrk -t{args.threads} "
            f"-c{args.connections} --timeout {args.timeout}s, {args.duration} s per target"
        )
        print(
            f"the machine has {os.cpu_count()} cores, shared by wrk, gunicorn and "
            f"PostgreSQL (and anything else running; load average now "
            f"{os.getloadavg()[0]:.1f}): read the ratios, not the absolute figures"
        )
        print(
            f"rate limits: sign-in raised to {RAISED_SIGN_IN_LIMIT!r} per address for this "
            f"run (production: 10 per minute, 50 per hour), counters in {storage_text}, so "
            "the figures measure the app, not the limiter"
        )
        print(
            f"argon2id: time_cost={argon2_params['time_cost']}, memory_cost="
            f"{argon2_params['memory_cost'] // 1024} MiB, parallelism="
            f"{argon2_params['parallelism']}; one verify in this process: {verify_ms:.0f} ms"
            + (
                "  [--cheap-hashes: NOT the production parameters]"
                if args.cheap_hashes
                else "  (development and production use the same parameters)"
            ),
            flush=True,
        )

        results: list[Result] = []
        targets = [Target("baseline /healthz", "/healthz", lines=[line("GET", "/healthz")])]
        targets += [Target(name, path, lines=[line("GET", path)]) for name, path in public_pages]
        accounts = [email for email, *_ in DEMO_STAFF + DEMO_DONORS]
        targets.append(
            Target(
                "sign-in, wrong password",
                "/account/sign-in",
                "POST",
                lines=sign_in_lines(base_url, accounts, DEMO_PASSWORD),
                expect=(422,),
                must_contain=WRONG_PASSWORD_MESSAGE,
                note=f"{len(accounts)} known accounts; 422 with the wrong-password message is the "
                "right answer, anything else an error",
            )
        )
        for target in targets:
            warm_up(base_url, target.lines[:1] * 4, target.expect)
            print(f"  wrk {target.method} {target.path} ...", flush=True)
            results.append(run_wrk(base_url, target, args, work_dir))
        baseline = results[0]

        # The webhook: more events than wrk can send, sized from the baseline (with an idle
        # machine the webhook runs at about 0.16 of it; a busy one squeezes the baseline, so
        # the share is set well above that). Rows wrk does not reach stay untouched.
        gift_count = max(
            30,
            round(
                baseline.requests_per_s
                * WEBHOOK_SHARE_OF_BASELINE
                * args.duration
                / DELIVERIES_PER_GIFT
            ),
        )
        gifts, plans = seed_webhook_rows(seeding_app, gift_count)
        deliveries, expected = webhook_bench.make_events(gifts, plans)
        groups = group_by_subject(deliveries)
        warm_up(base_url, signed_webhook_lines(warm_up_events(4)), (200,))
        shares: list[list[str]] = [[] for _ in range(args.threads)]
        for index, events in enumerate(groups.values()):
            shares[index % args.threads].extend(body for _, body in events)
        hook = Target(
            "webhook",
            "/stripe/webhook",
            "POST",
            per_thread=[signed_webhook_lines(share) for share in shares],
            note=f"{len(deliveries)} signed deliveries ({expected['unique']} "
            f"unique events, {expected['duplicates']} repeats built in) for "
            f"{len(gifts)} gifts and {len(plans)} plans",
        )
        print(f"  wrk POST /stripe/webhook ({hook.note}) ...", flush=True)
        before = stored_bench_events(engine)
        hook_result = run_wrk(base_url, hook, args, work_dir)
        results.append(hook_result)
        applied_in_run = wait_until_settled(engine) - before
        answered = sum(hook_result.statuses.values())
        duplicates = max(0, answered - applied_in_run)
        partial, topped_up, top_up_statuses = complete_partial_rows(engine, base_url, groups)
        # A request still in flight when the count looked settled may land now and leave its
        # row part-way: settle once more and complete what it left.
        wait_until_settled(engine)
        more_partial, more_topped_up, more_statuses = complete_partial_rows(
            engine, base_url, groups
        )
        partial, topped_up = partial + more_partial, topped_up + more_topped_up
        for status, count in more_statuses.items():
            top_up_statuses[status] = top_up_statuses.get(status, 0) + count
        # The webhook only stores events; the event worker (the jobs process's thread, not
        # run here) applies them: drain the queue as it would before checking the effects.
        run_flask(url, "payments", "apply-events", "--once", quiet=True)
        check = check_webhook_effects(engine, gifts, plans, groups)
        if set(top_up_statuses) - {200}:
            check["problems"].append(f"untimed deliveries answered {top_up_statuses}")
        hook_result.note += (
            f"; under load: {answered} answered, {applied_in_run} events stored, "
            f"{duplicates} duplicates ({duplicates / max(1, answered):.0%}; the requests in "
            f"flight at the stop blur this by up to {args.connections}); afterwards, untimed: "
            f"{topped_up} events for the {partial} rows wrk had reached part of"
        )
    except BaseException:
        print(
            f"the run failed; gunicorn's log and the request files are in {work_dir}",
            file=sys.stderr,
        )
        raise
    finally:
        if server is not None:
            server.stop()
        engine.dispose()
        flush_redis(storage_uri)
        if not args.keep_database:
            drop_database(args.database_name)

    for r in results:
        r.rps_ratio = r.requests_per_s / baseline.requests_per_s if baseline.requests_per_s else 0.0
        r.p50_ratio = r.p50_ms / baseline.p50_ms if baseline.p50_ms else 0.0
        r.p99_ratio = r.p99_ms / baseline.p99_ms if baseline.p99_ms else 0.0
    print()
    print_table(results)
    print()
    for r in results:
        if r.note or r.errors:
            print(
                f"{r.name}: statuses {r.statuses}, socket errors {r.socket_errors}"
                + (f"; {r.note}" if r.note else "")
            )
    print(
        f"webhook check: {check['events_stored']} of the {check['events_built']} events "
        f"built arrived, each stored once; gifts paid {check['gifts_paid']}, refunded "
        f"{check['gifts_refunded']}, untouched {check['gifts_untouched']}; plans active with "
        f"one instalment {check['plans_active']}, untouched {check['plans_untouched']}; "
        f"{check['receipts']} receipts, {check['receipt_mails']} receipt mails, "
        f"sent twice: {check['mails_twice']}"
    )
    for problem in check["problems"]:
        print(f"WEBHOOK CHECK FAILED: {problem}")
    failed = [r.name for r in results if r.errors]
    if failed:
        print(f"ERRORS in: {', '.join(failed)}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "started_at": started_at.isoformat(timespec="seconds"),
                    "settings": {
                        "duration_s": args.duration,
                        "wrk_threads": args.threads,
                        "wrk_connections": args.connections,
                        "wrk_timeout_s": args.timeout,
                        "gunicorn_workers": 2,
                        "cores": os.cpu_count(),
                        "sign_in_limit": RAISED_SIGN_IN_LIMIT,
                        "limiter_storage": storage_text,
                        "argon2": argon2_params,
                        "argon2_verify_ms": round(verify_ms, 1),
                        "cheap_hashes": args.cheap_hashes,
                    },
                    "targets": [{**asdict(r), "errors": r.errors} for r in results],
                    "webhook": {
                        "answered_under_load": answered,
                        "applied_under_load": applied_in_run,
                        "duplicates_under_load": duplicates,
                        "rows_completed_afterwards": partial,
                        "posted_afterwards": topped_up,
                        **check,
                    },
                },
                indent=2,
            )
            + "\n"
        )
    shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if failed or check["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
