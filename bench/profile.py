"""Profile pages under load: gunicorn (2 sync workers, production settings) on a scratch
PostgreSQL database with the demo data, wrk on a page, and py-spy recording the workers.

    .venv/bin/python bench/profile.py /sponsor                # 20 s; make profile PAGE=/sponsor
    .venv/bin/python bench/profile.py / /donate /healthz webhook --seconds 15
    .venv/bin/python bench/profile.py campaign child          # a live campaign, a child's profile

A PATH is a page path, or one of `campaign` and `child` (the first live campaign and the first
waiting child the home and sponsor pages link to), or `webhook`: POSTs to /stripe/webhook of
distinct signed events completing seeded pending gifts and plans (bench/webhooks.py's events).

For each PATH, while wrk keeps both workers busy, py-spy samples each worker for --seconds
(--idle: time waiting on PostgreSQL counts, as it does for the visitor) and writes

    reports/profile-<name>.svg   the flame graph of one worker
    reports/profile-<name>.txt   the top functions of the other: own time, and the app's
                                 functions by time inclusive of what they call

py-spy reads another process's memory: run as root, or with ptrace allowed
(kernel.yama.ptrace_scope=0, or CAP_SYS_PTRACE).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    WEBHOOK_SECRET,
    get,
    gunicorn,
    request_line,
    scratch_database,
    warm,
    worker_pids,
)

#: Where a sync worker waits for the next connection (SyncWorker.wait, a select()): not time
#: spent on a request.
WAITING_FOR_REQUEST = "SyncWorker.wait (gunicorn/workers/sync.py)"
TOP = 20
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*)\)$")


def py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


def profile_name(path: str) -> str:
    if path == "/":
        return "home"
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "page"


# Reading py-spy's raw output (collapsed stacks: "frame;frame;...;leaf count") ----------------


def read_stacks(raw: str) -> list[tuple[list[str], int]]:
    stacks = []
    for row in raw.splitlines():
        stack, _, count = row.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def package_of(frame: str) -> str:
    """The top-level package or module a frame's file belongs to ("sqlalchemy", "donorhub",
    "<stdlib>" for a module without a package)."""
    match = FRAME.match(frame)
    file = match.group("file") if match else frame
    if file.startswith("<"):
        return file
    parts = file.split("/")
    return parts[0] if len(parts) > 1 else "<stdlib>"


def summarise(raw: str, top: int = TOP) -> str:
    """The text report of one worker's samples."""
    stacks = read_stacks(raw)
    total = sum(count for _, count in stacks)
    idle = sum(count for frames, count in stacks if WAITING_FOR_REQUEST in frames)
    busy = [(frames, count) for frames, count in stacks if WAITING_FOR_REQUEST not in frames]
    busy_total = sum(count for _, count in busy) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for frames, count in busy:
        own[frames[-1]] += count
        packages[package_of(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count

    def pct(n: int) -> str:
        return f"{100 * n / busy_total:5.1f}%"

    lines = [
        f"{total} samples; {idle} ({100 * idle / max(1, total):.0f}%) waiting for a request, "
        f"{busy_total} on requests (the percentages below are of these)",
        "",
        "own time by package (where the leaf frame is):",
    ]
    lines += [f"  {pct(n)}  {name}" for name, n in packages.most_common(12)]
    lines += ["", f"top {top} functions by own time:"]
    lines += [f"  {pct(n)}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", f"top {top} of DonorHub's functions, inclusive of what they call:"]
    app_frames = [(f, n) for f, n in inclusive.most_common() if package_of(f) == "donorhub"]
    lines += [f"  {pct(n)}  {frame}" for frame, n in app_frames[:top]]
    lines += ["", f"top {top} functions of any package, inclusive, below the WSGI app:"]
    framework = {"gunicorn", "<stdlib>"}
    deep = [
        (f, n)
        for f, n in inclusive.most_common()
        if package_of(f) not in framework
        and not package_of(f).startswith("<")
        and not f.startswith("<module>")
    ]
    lines += [f"  {pct(n)}  {frame}" for frame, n in deep[:top]]
    return "\n".join(lines) + "\n"


# Load for the webhook ------------------------------------------------------------------------


def webhook_lines(database_url: str, seconds: float, threads: int) -> list[list[str]]:
    """Distinct signed deliveries for `threads` wrk threads, one seeded row's events in one
    thread (in order), more than the run can send. Signed now: run within 300 s."""
    import stripe

    from bench import load
    from bench import webhooks as webhook_bench

    app = webhook_bench.build_app(database_url)
    gifts, plans = webhook_bench.seed(
        app, max(100, round(seconds * 40)), max(30, round(seconds * 13))
    )
    deliveries, _ = webhook_bench.make_events(gifts, plans)
    groups = load.group_by_subject(deliveries)
    shares: list[list[str]] = [[] for _ in range(threads)]
    for index, events in enumerate(groups.values()):
        for _, body in events:
            signature = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
            shares[index % threads].append(
                request_line(
                    "POST",
                    "/stripe/webhook",
                    body,
                    Content_Type="application/json",
                    Stripe_Signature=signature,
                )
            )
    return shares


def discover(base_url: str, which: str) -> str:
    from bench.load import discover_pages

    return discover_pages(base_url)[which]


# One profile ---------------------------------------------------------------------------------


def profile_one(
    base_url: str, pids: list[int], path: str, args, database_url: str
) -> tuple[Path, Path, str]:
    name = args.name if args.name and len(args.paths) == 1 else profile_name(path)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    svg, text = out / f"profile-{name}.svg", out / f"profile-{name}.txt"
    threads = 2
    per_thread = None
    lines = None
    if path == "webhook":
        per_thread = webhook_lines(database_url, args.seconds + 5, threads)
        target = "/stripe/webhook"
    else:
        if path in ("campaign", "child"):
            path = discover(base_url, path)
        target = path
        warm(base_url + target, times=6)
    work = args.out / f".profile-{name}"
    work.mkdir(exist_ok=True)
    requests_file = work / "requests.txt"
    if per_thread is not None:
        for index, share in enumerate(per_thread):
            Path(f"{requests_file}.{index}").write_text("\n".join(share) + "\n")
    else:
        lines = [request_line("GET", target)]
        requests_file.write_text("\n".join(lines) + "\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "LOAD_REQUESTS": str(requests_file),
        "LOAD_EXPECT": "200",
        "LOAD_DISTINCT": "1" if per_thread is not None else "0",
        "LOAD_MUST_CONTAIN": "",
    }
    load_seconds = args.seconds + 4
    wrk = subprocess.Popen(
        [
            "wrk",
            f"-t{threads}",
            f"-c{args.connections}",
            f"-d{load_seconds}s",
            "--timeout=60s",
            "-s",
            str(ROOT / "bench/load/requests.lua"),
            base_url,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        raw = work / "raw.txt"
        common = ["--duration", str(args.seconds), "--rate", str(args.rate), "--idle", "--nolineno"]
        spies = [
            subprocess.Popen(
                [args.py_spy, "record", "--pid", str(pids[0]), *common, "-o", str(svg)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            subprocess.Popen(
                [args.py_spy, "record", "--pid", str(pids[-1]), *common, "--format", "raw"]
                + ["-o", str(raw)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        ]
        for spy in spies:
            output, _ = spy.communicate(timeout=args.seconds + 60)
            if spy.returncode != 0:
                raise RuntimeError(f"py-spy failed ({spy.returncode}): {output[-2000:]}")
        stdout, stderr = wrk.communicate(timeout=load_seconds + 90)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    found = [row for row in stdout.splitlines() if row.startswith("LOAD_RESULT ")]
    if wrk.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed on {target}: {stdout[-2000:]} {stderr[-2000:]}")
    figures = json.loads(found[-1].removeprefix("LOAD_RESULT "))
    seconds = figures["duration_us"] / 1e6
    load_line = (
        f"{'POST' if per_thread else 'GET'} {target}: {figures['requests'] / seconds:,.1f} req/s "
        f"under py-spy (sampling slows the workers), statuses {figures['statuses']}, "
        f"p50 {figures['latency_us']['p50'] / 1000:.0f} ms"
    )
    status, _, body = get(base_url + target) if per_thread is None else (0, {}, b"")
    header = (
        f"profile of {target}: one gunicorn sync worker of 2, sampled at {args.rate} Hz for "
        f"{args.seconds} s with --idle, under wrk -t{threads} -c{args.connections}\n"
        f"{load_line}\n" + (f"page: {len(body):,} bytes\n" if status == 200 else "") + "\n"
    )
    text.write_text(header + summarise(raw.read_text()))
    shutil.rmtree(work, ignore_errors=True)
    wrong = {code: n for code, n in figures["statuses"].items() if code != "200"}
    if wrong:
        raise RuntimeError(f"{target} answered {wrong} under load (see {text})")
    return svg, text, load_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--seconds", type=int, default=20, help="py-spy's sampling time")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--connections", type=int, default=20, help="wrk -c")
    parser.add_argument("--name", help="the report's name (one PATH only)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    parser.add_argument("--database-name", default="donorhub_bench_profile")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)
    args.py_spy = py_spy()
    if args.py_spy is None:
        print("py-spy is missing: make bench-tools (pip install py-spy)", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk is missing: make bench-tools (apt-get install wrk)", file=sys.stderr)
        return 2
    if args.seconds * 3 > 240 and "webhook" in args.paths:
        parser.error("--seconds too long for webhook signatures (valid 300 s)")
    print(f"database {args.database_name}: migrating and seeding the demo data...", flush=True)
    with (
        scratch_database(args.database_name, seed="demo", keep=args.keep_database) as url,
        gunicorn(url) as web,
    ):
        pids = worker_pids(web)
        if len(pids) != 2:
            raise RuntimeError(f"expected 2 gunicorn workers, found {pids}")
        for path in args.paths:
            print(f"profiling {path} for {args.seconds} s ...", flush=True)
            svg, text, load_line = profile_one(web.base_url, pids, path, args, url)
            print(f"  {load_line}\n  {svg.relative_to(ROOT) if svg.is_relative_to(ROOT) else svg}")
            print(f"  {text.relative_to(ROOT) if text.is_relative_to(ROOT) else text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
