"""What the benchmarks share: a scratch PostgreSQL database, gunicorn run as in production,
wrk with its figures parsed, A/B runs taken in alternation, and the machine's facts.

    from bench.harness import scratch_database, gunicorn, wrk, alternate

    with scratch_database("donorhub_bench_pages", seed="demo") as url, gunicorn(url) as web:
        result = alternate(
            lambda: wrk(web.base_url + "/healthz", 10),
            lambda: wrk(web.base_url + "/", 10),
        )
        print(result.ratio, result.spread)

The process pieces (subprocesses, logs, `flask` commands) are tests/system/stack.py's; this
module adds what a benchmark needs on top. Nothing here is imported by the app.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.system.stack import (  # noqa: E402
    SERVER_PG,
    Service,
    app_env,
    drop_database,
    free_port,
    fresh_database,
    migrate,
    run_flask,
    spawn,
    wait_until_up,
)

#: The wrk script that replays prepared requests and reports statuses and percentiles.
LUA_SCRIPT = ROOT / "bench/load/requests.lua"
#: Redis database for the rate limiter's counters under gunicorn (flushed by gunicorn()).
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "14"))
#: The Stripe signing secret of the production-like gunicorn: made per process, so it is
#: never a published value (production refuses those); sign benchmark events with it.
WEBHOOK_SECRET = "whsec_" + secrets.token_urlsafe(32)
#: "Spread under 5%" (the issue's run conditions): above this a ratio is marked noisy.
STEADY_SPREAD = 0.05


# A scratch database --------------------------------------------------------------------------


@contextmanager
def scratch_database(
    name: str, *, seed: str | None = None, keep: bool = False, server: str = SERVER_PG
) -> Iterator[str]:
    """A fresh PostgreSQL database `name` (dropped first), migrated; with seed="demo" also
    `flask demo seed`. Yields its SQLAlchemy URL; dropped afterwards unless `keep`."""
    if not name.startswith("donorhub_bench"):
        raise ValueError(f"benchmark databases are named donorhub_bench_*, not {name!r}")
    url = fresh_database(name, server)
    try:
        migrate(url)
        if seed == "demo":
            run_flask(url, "demo", "seed", quiet=True)
        elif seed is not None:
            raise ValueError(f"unknown seed {seed!r}")
        yield url
    finally:
        if not keep:
            drop_database(name, server)


# gunicorn as in production -------------------------------------------------------------------


def production_env(redis_db: int = REDIS_DB, **extra: str) -> dict[str, str]:
    """The settings ProductionConfig accepts, with values made for this run: the production
    code paths (Secure cookies, HSTS, Redis-backed limits, SMTP mail) on 127.0.0.1 over plain
    HTTP (no TLS: nginx's part, measured elsewhere).

    Stripe is a test key at a local port nothing listens on, without retries: a call the app
    makes to Stripe (e.g. listing a charge's refunds) fails at once, as the app allows, and
    nothing leaves the machine. A benchmark that needs Stripe's answers starts the simulator
    (tests/system/stack.py start_simulator) and passes STRIPE_API_BASE=its base_url."""
    env = {
        "DONORHUB_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "FEED_PSEUDONYM_KEY": secrets.token_urlsafe(48),
        "PUBLIC_BASE_URL": "https://bench.donorhub.invalid",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_SECRET_KEY": "sk_test_" + secrets.token_urlsafe(24),
        "ALLOW_STRIPE_TEST_MODE": "true",
        "STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}",
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:6379/{redis_db}",
        "MAIL_DELIVERY": "smtp",
        "LOG_LEVEL": "WARNING",
    }
    env.update(extra)
    return env


def flush_redis(redis_db: int) -> None:
    import redis

    redis.Redis(host="127.0.0.1", port=6379, db=redis_db, socket_timeout=2).flushdb()


@contextmanager
def gunicorn(
    url: str,
    *,
    workers: int = 2,
    production: bool = True,
    log_dir: Path | None = None,
    redis_db: int = REDIS_DB,
    access_log: bool = False,
    **env: str,
) -> Iterator[Service]:
    """gunicorn with gunicorn.conf.py (sync workers) and `workers` of them serving wsgi:app
    on 127.0.0.1, waiting for /healthz; stopped afterwards. `production` runs the app with
    ProductionConfig (production_env(); the limiter's Redis database is flushed before and
    after); otherwise the development settings of tests/system/stack.py. The access log is
    off unless `access_log` (in production nginx keeps one). Extra keywords are environment
    variables for the app. The Service's `base_url` is where it listens."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = production_env(redis_db, **env) if production else dict(env)
    if production:
        flush_redis(redis_db)
    else:
        settings.setdefault("PUBLIC_BASE_URL", base_url)
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(ROOT / "gunicorn.conf.py"),
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--access-logfile",
        "-" if access_log else "/dev/null",
        "wsgi:app",
    ]
    own_dir = log_dir is None
    logs = Path(tempfile.mkdtemp(prefix="donorhub-bench-gunicorn-")) if own_dir else log_dir
    service = spawn("gunicorn", command, app_env(url, **settings), logs)
    service.base_url = base_url
    try:
        try:
            wait_until_up(base_url + "/healthz")
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n{service.output()[-3000:]}") from None
        yield service
    finally:
        service.stop()
        if production:
            flush_redis(redis_db)
        if own_dir:
            shutil.rmtree(logs, ignore_errors=True)


def worker_pids(service: Service) -> list[int]:
    """The pids of gunicorn's workers (the master's children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == service.pid:
            pids.append(int(entry.name))
    return sorted(pids)


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """One GET (no redirects followed): status, headers (lower-case names), body."""
    import http.client

    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    target = parsed.path or "/"
    if parsed.query:
        target += "?" + parsed.query
    connection.request("GET", target, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def warm(url: str, times: int = 4, expect: Sequence[int] = (200,)) -> None:
    """A few untimed GETs, so both workers compile templates and fill their pools first."""
    for _ in range(times):
        status, _, _ = get(url)
        if status not in expect:
            raise RuntimeError(f"warm-up GET {url} answered {status}")


# wrk -----------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    url: str
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    #: Answers by status code ("200": 1234).
    statuses: dict[str, int]
    socket_errors: int
    bytes: int = 0
    expect: tuple[int, ...] = (200,)

    @property
    def wrong_status(self) -> int:
        return sum(n for code, n in self.statuses.items() if int(code) not in self.expect)

    @property
    def errors(self) -> int:
        """Socket errors, unexpected statuses, and a run that completed nothing."""
        return self.socket_errors + self.wrong_status + (1 if self.requests == 0 else 0)

    def summary(self) -> str:
        text = (
            f"{self.requests_per_s:,.1f} req/s, p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms"
        )
        if self.errors:
            text += f", {self.errors} errors {self.statuses}"
        return text


def request_line(method: str, path: str, body: str = "", **headers: str) -> str:
    """One line of the requests file bench/load/requests.lua replays."""
    fields = [method, path, body]
    for name, value in headers.items():
        fields += [name.replace("_", "-"), value]
    if any("\t" in f or "\n" in f for f in fields):
        raise ValueError("a request field holds a tab or a newline")
    return "\t".join(fields)


def wrk(
    url: str,
    seconds: float,
    threads: int = 2,
    connections: int = 20,
    lua: Path | None = None,
    *,
    lines: Sequence[str] | None = None,
    per_thread: Sequence[Sequence[str]] | None = None,
    expect: Sequence[int] = (200,),
    timeout: int = 60,
) -> WrkResult:
    """wrk -t`threads` -c`connections` -d`seconds` on `url`.

    Without `lua`, bench/load/requests.lua replays `lines` (request_line(); default: GET of
    the url's path) or, with `per_thread`, each thread its own lines (so no two threads send
    the same webhook event), and reports statuses and percentiles. A `lua` script of your own
    may print the same LOAD_RESULT line; otherwise wrk's text output is read (--latency)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk (or make bench-tools)")
    parsed = urllib.parse.urlsplit(url)
    base = f"{parsed.scheme}://{parsed.netloc}"
    path = parsed.path or "/"
    if parsed.query:
        path += "?" + parsed.query
    work_dir = Path(tempfile.mkdtemp(prefix="donorhub-wrk-"))
    env = dict(os.environ)
    script = lua
    if lua is None:
        script = LUA_SCRIPT
        requests_file = work_dir / "requests.txt"
        if per_thread is not None:
            if len(per_thread) != threads:
                raise ValueError("one list of lines per wrk thread")
            for index, share in enumerate(per_thread):
                Path(f"{requests_file}.{index}").write_text("\n".join(share) + "\n")
        else:
            chosen = list(lines) if lines else [request_line("GET", path)]
            requests_file.write_text("\n".join(chosen) + "\n")
        env.update(
            LOAD_REQUESTS=str(requests_file),
            LOAD_EXPECT=",".join(map(str, expect)),
            LOAD_DISTINCT="1" if per_thread is not None else "0",
            LOAD_MUST_CONTAIN="",
        )
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout}s",
        "--latency",
    ]
    if script is not None:
        command += ["-s", str(script)]
    command.append(base + path if lua is not None else base)
    try:
        completed = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + timeout + 60,
            check=False,
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if completed.returncode != 0:
        raise RuntimeError(
            f"wrk failed on {url} ({completed.returncode}):\n"
            f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
        )
    return parse_wrk_output(url, completed.stdout, tuple(expect))


def parse_wrk_output(url: str, output: str, expect: tuple[int, ...] = (200,)) -> WrkResult:
    found = [row for row in output.splitlines() if row.startswith("LOAD_RESULT ")]
    if found:
        data = json.loads(found[-1].removeprefix("LOAD_RESULT "))
        seconds = data["duration_us"] / 1e6
        errors = data["errors"]
        return WrkResult(
            url=url,
            requests=data["requests"],
            seconds=seconds,
            requests_per_s=data["requests"] / seconds if seconds else 0.0,
            p50_ms=data["latency_us"]["p50"] / 1000,
            p99_ms=data["latency_us"]["p99"] / 1000,
            statuses=data["statuses"],
            socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
            bytes=data.get("bytes", 0),
            expect=expect,
        )
    # wrk's own summary: "N requests in 10.00s, X MB read", "Requests/sec: ...", --latency.
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if not done:
        raise RuntimeError(f"wrk printed no summary for {url}:\n{output[-2000:]}")
    requests = int(done.group(1))
    seconds = _duration_s(float(done.group(2)), done.group(3))
    latency = {
        m.group(1): _duration_s(float(m.group(2)), m.group(3)) * 1000
        for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    }
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    bad = int(non_2xx.group(1)) if non_2xx else 0
    statuses = {"200": requests - bad}
    if bad:
        statuses["500"] = bad  # wrk's text gives no codes: counted as a wrong status
    return WrkResult(
        url=url,
        requests=requests,
        seconds=seconds,
        requests_per_s=requests / seconds if seconds else 0.0,
        p50_ms=latency.get("50", 0.0),
        p99_ms=latency.get("99", 0.0),
        statuses=statuses,
        socket_errors=sum(int(n) for n in socket.groups()) if socket else 0,
        expect=expect,
    )


def _duration_s(value: float, unit: str) -> float:
    return value * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


# A against B, in alternation -----------------------------------------------------------------


@dataclass
class Alternation:
    """Runs of A (the baseline) and B taken in alternation; `ratio` is B / A."""

    a_runs: list[float]
    b_runs: list[float]
    #: B / A of each set, from that set's means.
    set_ratios: list[float]
    a_results: list = field(default_factory=list, repr=False)
    b_results: list = field(default_factory=list, repr=False)

    @property
    def a(self) -> float:
        return statistics.fmean(self.a_runs)

    @property
    def b(self) -> float:
        return statistics.fmean(self.b_runs)

    @property
    def ratio(self) -> float:
        return self.b / self.a if self.a else 0.0

    @staticmethod
    def _spread(values: list[float]) -> float:
        mean = statistics.fmean(values)
        return (max(values) - min(values)) / mean if mean else 0.0

    @property
    def spread_a(self) -> float:
        return self._spread(self.a_runs)

    @property
    def spread_b(self) -> float:
        return self._spread(self.b_runs)

    @property
    def spread(self) -> float:
        """The larger of A's and B's spread: (max - min) / mean of their runs."""
        return max(self.spread_a, self.spread_b)

    @property
    def steady(self) -> bool:
        return self.spread < STEADY_SPREAD

    def detail(self, unit: str = "req/s") -> str:
        note = "" if self.steady else " NOISY"
        return (
            f"{self.b:,.1f} vs {self.a:,.1f} {unit} (spread {self.spread:.0%}{note}, "
            f"{len(self.set_ratios)}x{len(self.a_runs) // max(1, len(self.set_ratios))} runs)"
        )

    def as_json(self) -> dict:
        data = asdict(self)
        data.pop("a_results")
        data.pop("b_results")
        return {**data, "ratio": self.ratio, "spread": self.spread, "steady": self.steady}


def _figure(result: object) -> float:
    if isinstance(result, WrkResult):
        if result.errors:
            raise RuntimeError(f"{result.url}: {result.summary()}")
        return result.requests_per_s
    return float(result)  # type: ignore[arg-type]


def alternate(
    a: Callable[[], object], b: Callable[[], object], sets: int = 2, runs: int = 2
) -> Alternation:
    """Measure A (the baseline) and B in `sets` sets of `runs` runs each, alternating (the
    order flips every set: A B B A, then B A A B, so a drift of the machine falls on both).
    Each callable returns a WrkResult (its req/s is taken; any error raises) or a number
    (larger is better: a rate). The issue's run conditions: sets=2, runs=2, spread < 5%."""
    a_runs: list[float] = []
    b_runs: list[float] = []
    a_results: list = []
    b_results: list = []
    set_ratios = []
    for index in range(sets):
        # Pairs alternate AB, BA, ...; each set starts with the other order: with runs=2 the
        # sets are A B B A and B A A B.
        order = [
            side
            for run in range(runs)
            for side in (("a", "b") if (run + index) % 2 == 0 else ("b", "a"))
        ]
        set_a: list[float] = []
        set_b: list[float] = []
        for side in order:
            result = a() if side == "a" else b()
            value = _figure(result)
            (set_a if side == "a" else set_b).append(value)
            (a_results if side == "a" else b_results).append(result)
        a_runs += set_a
        b_runs += set_b
        mean_a = statistics.fmean(set_a)
        set_ratios.append(statistics.fmean(set_b) / mean_a if mean_a else 0.0)
    return Alternation(a_runs, b_runs, set_ratios, a_results, b_results)


# The machine ---------------------------------------------------------------------------------


def machine_facts(database_url: str | None = None) -> dict:
    """Cores, load average, versions, the git commit and the date, for a report."""
    facts: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        facts["git_commit"] = commit + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        facts["git_commit"] = None
    facts["postgresql"] = postgres_version(database_url or f"{SERVER_PG}/postgres")
    facts["wrk"] = shutil.which("wrk")
    return facts


def postgres_version(url: str) -> str | None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from tests.system.stack import psycopg_url

    try:
        engine = create_engine(psycopg_url(url), poolclass=NullPool)
        with engine.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar()
        engine.dispose()
        return str(version)
    except Exception as error:  # noqa: BLE001 - a report says why, it does not fail
        return f"unavailable ({type(error).__name__})"


def elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.0f} s"
