"""Benchmark: DonorHub's per-request overhead against a bare Flask app doing the same work
(bench/bare_app.py), both under gunicorn (2 sync workers) on PostgreSQL, in the same run.

    .venv/bin/python bench/overhead.py             # full: 10 s per wrk run
    .venv/bin/python bench/overhead.py --quick     # 3 s per wrk run, for `make bench`

One run: a scratch database on the machine's PostgreSQL (`donorhub_bench_overhead_run`,
dropped first and afterwards), migrated and filled with the demo data; DonorHub under
gunicorn in a production-like environment (DONORHUB_ENV=production, PROXY_COUNT=1, LOG_LEVEL
INFO, the rate limiter on Redis, secrets made for the run, gunicorn.conf.py with its access
log), and the bare app under the same gunicorn settings on the same database. Then
`wrk -t2 -c20` on /healthz and on /donate, DonorHub and the bare app alternating (A B, then
B A, so drift on a shared machine falls on both), two sets of two runs each; the ratio of
each page is DonorHub's median requests/s over the bare app's. Every answer must be a 200
with the page's own text in it, or the run is wrong.

It also weighs DonorHub's donate page: the bytes of the HTML as sent (pages are sent
uncompressed, docs/deploy.md, "gzip") and gzip-compressed at nginx's default level, for
the goal of under 16 KB on the wire.
"""

from __future__ import annotations

import argparse
import gzip
import os
import secrets
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import Target, limiter_storage, run_wrk  # noqa: E402
from bench.ratios import Ratio  # noqa: E402
from tests.system.stack import (  # noqa: E402
    PYTHON,
    Service,
    app_env,
    drop_database,
    free_port,
    fresh_database,
    migrate,
    run_flask,
    spawn,
    start_gunicorn,
    wait_until_up,
)

DATABASE = "donorhub_bench_overhead_run"
#: This benchmark's own Redis database number, for the rate limiter's counters.
REDIS_DB = 3
GOAL_RATIO = 0.8
#: The donate page on the wire, in bytes (the goal is "under 16 KB").
GOAL_PAGE_BYTES = 16 * 1024
#: nginx's gzip_comp_level default.
NGINX_GZIP_LEVEL = 1
PAGES = {
    "/healthz": ('"status"', "trivial endpoint (one SELECT 1)"),
    "/donate": ("Continue to payment", "donate page"),
}


def production_like_env(redis_uri: str) -> dict[str, str]:
    """DonorHub's production configuration with secrets made for this run (docs/deploy.md's
    environment block, with the local database, Redis and no mail server)."""
    return {
        "DONORHUB_ENV": "production",
        "PUBLIC_BASE_URL": "https://give.example.org",
        "PROXY_COUNT": "1",
        "RATELIMIT_STORAGE_URI": redis_uri,
        "MAIL_DELIVERY": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "LOG_LEVEL": "INFO",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "FEED_PSEUDONYM_KEY": secrets.token_urlsafe(48),
        "STRIPE_SECRET_KEY": "sk_test_" + secrets.token_urlsafe(24),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(32),
        "ALLOW_STRIPE_TEST_MODE": "true",
    }


def start_bare_app(url: str, log_dir: Path, env: dict[str, str]) -> Service:
    """bench/bare_app.py under the same gunicorn command as DonorHub's (start_gunicorn):
    2 sync workers, gunicorn.conf.py read from the checkout."""
    port = free_port()
    command = [
        PYTHON,
        "-m",
        "gunicorn",
        "-w",
        "2",
        "--threads",
        "1",
        "-b",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "5",
        "--timeout",
        "60",
        "bench.bare_app:app",
    ]
    service = spawn("bare", command, app_env(url, **env), log_dir)
    service.base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(service.base_url + "/healthz")
    except RuntimeError as error:
        service.stop()
        raise RuntimeError(f"{error}\n{service.output()[-3000:]}") from None
    return service


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
        return response.read()


def warm_up(base_url: str, rounds: int = 40) -> None:
    """Untimed requests, so that neither worker's first-use costs (template compilation,
    the pool's first connections) fall inside a timed run."""
    for _ in range(rounds):
        for path in PAGES:
            fetch(base_url + path)


def worker_cpu_seconds(master_pid: int) -> float:
    """User and system CPU time of a gunicorn master's workers so far (from /proc)."""
    ticks = 0
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    for pid in children:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def run_pair(
    servers: dict[str, Service],
    path: str,
    order: list[str],
    wrk_args,
    work_dir: Path,
    cpu: dict[str, list[float]],
) -> dict[str, float]:
    """One wrk run on `path` for each server in `order`; requests/s by server, and each
    server's worker CPU time per request appended to `cpu` (microseconds)."""
    must_contain, name = PAGES[path]
    figures = {}
    for which in order:
        target = Target(
            name=f"{which} {name}",
            path=path,
            lines=[f"GET\t{path}\t"],
            must_contain=must_contain,
        )
        before = worker_cpu_seconds(servers[which].pid)
        result = run_wrk(servers[which].base_url, target, wrk_args, work_dir)
        used = worker_cpu_seconds(servers[which].pid) - before
        cpu[which].append(used / max(result.requests, 1) * 1e6)
        if result.errors:
            raise RuntimeError(
                f"{which} {path}: {result.socket_errors} socket errors, "
                f"{result.wrong_status} wrong statuses {result.statuses}, "
                f"{result.wrong_body} wrong bodies"
            )
        figures[which] = result.requests_per_s
    return figures


def page_weight(base_url: str) -> tuple[int, int]:
    body = fetch(base_url + "/donate")
    return len(body), len(gzip.compress(body, compresslevel=NGINX_GZIP_LEVEL))


def measure_servers(
    servers: dict[str, Service], *, duration: int, sets: int = 2, runs: int = 2
) -> list[Ratio]:
    wrk_args = SimpleNamespace(threads=2, connections=20, duration=duration, timeout=10)
    rps: dict[str, dict[str, list[float]]] = {p: {"donorhub": [], "bare": []} for p in PAGES}
    cpu: dict[str, dict[str, list[float]]] = {p: {"donorhub": [], "bare": []} for p in PAGES}
    with tempfile.TemporaryDirectory(prefix="donorhub-overhead-") as work:
        for set_number in range(sets):
            for run in range(runs):
                # A B, then B A: whatever the shared machine does falls on both alike.
                order = (
                    ["donorhub", "bare"] if (set_number + run) % 2 == 0 else ["bare", "donorhub"]
                )
                for path in PAGES:
                    figures = run_pair(servers, path, order, wrk_args, Path(work), cpu[path])
                    for which, value in figures.items():
                        rps[path][which].append(value)
                    print(
                        f"set {set_number + 1} run {run + 1} {path}: "
                        f"DonorHub {figures['donorhub']:.0f} req/s, "
                        f"bare {figures['bare']:.0f} req/s",
                        flush=True,
                    )
    ratios = []
    for path, (_, name) in PAGES.items():
        ours = statistics.median(rps[path]["donorhub"])
        bare = statistics.median(rps[path]["bare"])
        spread = max(rps[path]["donorhub"]) / min(rps[path]["donorhub"]) - 1
        cpu_ours = statistics.median(cpu[path]["donorhub"])
        cpu_bare = statistics.median(cpu[path]["bare"])
        ratios.append(
            Ratio(
                name=f"{name} {path}: DonorHub / bare Flask",
                value=ours / bare,
                goal=GOAL_RATIO,
                detail=(
                    f"{ours:.0f} req/s vs {bare:.0f} req/s (medians of {len(rps[path]['bare'])}"
                    f" runs of {duration} s, wrk -t2 -c20; DonorHub's spread {spread:.0%}); "
                    f"worker CPU per request {cpu_ours:.0f} µs vs {cpu_bare:.0f} µs "
                    f"(bare / DonorHub {cpu_bare / cpu_ours:.2f}, a cross-check that other "
                    "processes on the machine do not move)"
                ),
            )
        )
    raw, compressed = page_weight(servers["donorhub"].base_url)
    ratios.append(
        Ratio(
            name="donate page on the wire / 16 KB",
            value=raw / GOAL_PAGE_BYTES,
            goal=1.0,
            at_least=False,
            detail=(
                f"{raw:,} bytes of HTML as sent (pages are not compressed: BREACH); "
                f"{compressed:,} bytes gzip level {NGINX_GZIP_LEVEL}"
            ),
        )
    )
    return ratios


def measure(quick: bool) -> list[Ratio]:
    return run(duration=3 if quick else 10, keep=False)


def run(*, duration: int, keep: bool, database: str = DATABASE) -> list[Ratio]:
    url = fresh_database(database)
    redis_uri, _ = limiter_storage(REDIS_DB)
    if not redis_uri.startswith("redis://"):
        raise RuntimeError("Redis is not reachable: production refuses a memory limiter")
    services: list[Service] = []
    try:
        migrate(url)
        run_flask(url, "demo", "seed", quiet=True)
        env = production_like_env(redis_uri)
        with tempfile.TemporaryDirectory(prefix="donorhub-overhead-logs-") as logs:
            log_dir = Path(logs)
            donorhub = start_gunicorn(url, log_dir, workers=2, name="donorhub", **env)
            services.append(donorhub)
            bare = start_bare_app(url, log_dir, env)
            services.append(bare)
            servers = {"donorhub": donorhub, "bare": bare}
            for service in servers.values():
                warm_up(service.base_url)
            return measure_servers(servers, duration=duration)
    finally:
        for service in services:
            service.stop()
        if not keep:
            drop_database(database)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per wrk run instead of 10 s")
    parser.add_argument("--duration", type=int, help="seconds per wrk run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    duration = args.duration or (3 if args.quick else 10)
    ratios = run(duration=duration, keep=args.keep)
    print()
    for ratio in ratios:
        bound = "≥" if ratio.at_least else "≤"
        verdict = "pass" if ratio.passed else "FAIL"
        print(f"{ratio.name}: {ratio.value:.2f} (goal {bound} {ratio.goal}) {verdict}")
        print(f"    {ratio.detail}")
    with open("/proc/loadavg") as load:
        print(f"load average: {load.read().strip()}")
    return 0 if all(r.passed for r in ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
