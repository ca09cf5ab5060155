"""The benchmark harness (bench/harness.py) measures what it says: a scratch database that is
gone afterwards, gunicorn with production's settings and two workers, wrk's figures and
statuses read back, and A/B runs taken in alternation with their spread. The figures are
not asserted (1 s of wrk on a shared machine means nothing); that they are read right is."""

from __future__ import annotations

import os
import shutil

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.harness import (
    Alternation,
    alternate,
    get,
    gunicorn,
    parse_wrk_output,
    request_line,
    scratch_database,
    worker_pids,
    wrk,
)
from tests.helpers import require
from tests.system.stack import SERVER_PG, psycopg_url
from tests.system.test_load_smoke import postgres_answers


def redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def stack_tools():
    why = "the benchmark harness's smoke test"
    require(shutil.which("wrk"), "wrk (apt-get install wrk, or make bench-tools)", why)
    require(postgres_answers(), f"PostgreSQL at {SERVER_PG}", why)
    require(redis_answers(), "Redis at 127.0.0.1:6379 (production keeps limits there)", why)


def database_exists(name: str) -> bool:
    engine = create_engine(psycopg_url(f"{SERVER_PG}/postgres"), poolclass=NullPool)
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
    engine.dispose()
    return found is not None


def test_harness_serves_and_measures_a_production_like_stack(stack_tools):
    name = f"donorhub_bench_harness_smoke_{os.getpid()}"
    with scratch_database(name) as url, gunicorn(url) as web:
        assert database_exists(name)
        assert len(worker_pids(web)) == 2
        status, headers, body = get(web.base_url + "/healthz")
        assert status == 200
        # ProductionConfig is what answers: HSTS is on in production only.
        assert "max-age" in headers.get("strict-transport-security", "")

        missing = wrk(web.base_url + "/no-such-page", 1, connections=4, expect=(404,))
        assert missing.requests > 0 and missing.errors == 0
        assert set(missing.statuses) == {"404"}
        wrong = wrk(web.base_url + "/no-such-page", 1, connections=4)
        assert wrong.wrong_status == wrong.requests > 0 and wrong.errors >= wrong.requests

        posted = wrk(
            web.base_url,
            1,
            connections=4,
            lines=[request_line("POST", "/stripe/webhook", "{}", Content_Type="application/json")],
            expect=(400,),
        )
        assert posted.requests > 0 and posted.errors == 0, posted.statuses

        runs: list[str] = []

        def healthz():
            runs.append("a")
            return wrk(web.base_url + "/healthz", 1, connections=4)

        def robots():
            runs.append("b")
            return wrk(web.base_url + "/robots.txt", 1, connections=4)

        result = alternate(healthz, robots, sets=2, runs=2)
    assert not database_exists(name)

    assert runs == ["a", "b", "b", "a", "b", "a", "a", "b"]
    assert len(result.a_runs) == len(result.b_runs) == 4 and len(result.set_ratios) == 2
    assert all(r > 0 for r in result.a_runs + result.b_runs)
    assert result.ratio == pytest.approx(result.b / result.a)
    assert "vs" in result.detail() and "spread" in result.detail()


def test_alternation_reports_the_spread_of_the_runs():
    values = iter([100.0, 50.0, 52.0, 104.0, 51.0, 100.0, 102.0, 50.0])
    result = alternate(lambda: next(values), lambda: next(values), sets=2, runs=2)

    assert result.a_runs == [100.0, 104.0, 100.0, 102.0]
    assert result.b_runs == [50.0, 52.0, 51.0, 50.0]
    assert result.ratio == pytest.approx(50.75 / 101.5)
    assert result.spread_a == pytest.approx(4 / 101.5)
    assert result.spread_b == pytest.approx(2 / 50.75)
    assert result.steady
    noisy = Alternation([100.0, 80.0], [50.0, 50.0], [0.5])
    assert noisy.spread == pytest.approx(20 / 90) and not noisy.steady
    assert "NOISY" in noisy.detail()


def test_wrk_text_output_is_read_when_a_script_prints_no_result_line():
    output = """Running 10s test @ http://127.0.0.1:8000/
  2 threads and 20 connections
  Latency Distribution
     50%   12.50ms
     75%   20.00ms
     90%   30.00ms
     99%    1.20s
  12345 requests in 10.00s, 4.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   1234.50
"""
    result = parse_wrk_output("http://127.0.0.1:8000/", output)

    assert result.requests == 12345 and result.seconds == 10.0
    assert result.requests_per_s == pytest.approx(1234.5)
    assert result.p50_ms == pytest.approx(12.5) and result.p99_ms == pytest.approx(1200)
    assert result.socket_errors == 3 and result.wrong_status == 5 and result.errors == 8
