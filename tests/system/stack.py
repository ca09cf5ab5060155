"""The whole system as real processes, for system tests and benchmarks.

gunicorn web servers, the jobs process and the Stripe simulator run as subprocesses of the
test or benchmark, against a PostgreSQL database of its own: either a scratch database on
the machine's server, or a private PostgreSQL cluster (initdb in a temporary folder) that a
fault test may stop, restart or starve of disk without touching anyone else's database.

Used by tests/system/, tests/faults/ and bench/. Nothing here is imported by the app.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
WEBHOOK_SECRET = "whsec_system_tests_only"  # noqa: S105 - a test value, never a real secret
SERVER_PG = os.environ.get("SYSTEM_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def psycopg_url(url: str) -> str:
    return (
        url.replace("postgresql://", "postgresql+psycopg://", 1)
        if url.startswith("postgresql://")
        else url
    )


def fresh_database(name: str, server: str = SERVER_PG) -> str:
    """Drop and create database `name` on `server`; returns its SQLAlchemy URL."""
    admin = create_engine(
        psycopg_url(f"{server}/postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return psycopg_url(f"{server}/{name}")


def drop_database(name: str, server: str = SERVER_PG) -> None:
    admin = create_engine(
        psycopg_url(f"{server}/postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest migration (in a child process, so this
    process keeps no engine or app state)."""
    run_flask(url, "db", "upgrade", quiet=True)


def app_env(url: str, **extra: str) -> dict[str, str]:
    """The environment every DonorHub process of a system test gets."""
    env = {
        **os.environ,
        "DONORHUB_ENV": "development",
        "DATABASE_URL": url,
        "FLASK_APP": "wsgi",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "LOG_LEVEL": "WARNING",
        "MAIL_DELIVERY": "hold",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("STRIPE_SECRET_KEY", None)
    env.update(extra)
    return env


def run_flask(
    url: str, *args: str, quiet: bool = False, timeout: float = 600, **extra: str
) -> subprocess.CompletedProcess:
    """`flask ARGS` against `url`; raises with its output when it fails."""
    result = subprocess.run(
        [PYTHON, "-m", "flask", *args],
        cwd=ROOT,
        env=app_env(url, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"flask {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    if not quiet:
        print(result.stdout, end="")
    return result


def wait_until_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError) as error:
            last = error
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout:.0f} s: {last}")


@dataclass
class Service:
    """A subprocess with its output in a log file."""

    name: str
    process: subprocess.Popen
    log_path: Path
    base_url: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (gunicorn's workers too)."""
        if self.alive():
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 20) -> int | None:
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout=timeout)


def spawn(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> Service:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = log_path.open("ab")
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    return Service(name, process, log_path)


def start_gunicorn(
    url: str,
    log_dir: Path,
    *,
    port: int | None = None,
    workers: int = 2,
    name: str = "web",
    threads: int = 1,
    **env: str,
) -> Service:
    """gunicorn with `workers` sync workers serving wsgi:app on 127.0.0.1; waits for
    /healthz. Extra keyword arguments are environment variables for the app."""
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    env.setdefault("PUBLIC_BASE_URL", base_url)
    command = [
        PYTHON,
        "-m",
        "gunicorn",
        "-w",
        str(workers),
        "--threads",
        str(threads),
        "-b",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "5",
        "--timeout",
        "60",
        "wsgi:app",
    ]
    service = spawn(name, command, app_env(url, **env), log_dir)
    service.base_url = base_url
    try:
        wait_until_up(base_url + "/healthz")
    except RuntimeError as error:
        service.stop()
        raise RuntimeError(f"{error}\n{service.output()[-3000:]}") from None
    return service


def start_jobs(url: str, log_dir: Path, *, name: str = "jobs", **env: str) -> Service:
    """`flask jobs run`: the one scheduler process."""
    return spawn(name, [PYTHON, "-m", "flask", "jobs", "run"], app_env(url, **env), log_dir)


def start_simulator(
    log_dir: Path,
    webhook_url: str | None,
    *,
    port: int | None = None,
    secret: str = WEBHOOK_SECRET,
    name: str = "stripe-simulator",
) -> Service:
    """The local Stripe simulator as its own process, delivering signed webhooks to
    `webhook_url` (None: it only stores events, for /v1/events)."""
    port = port or free_port()
    command = [
        PYTHON,
        "-m",
        "stripe_simulator",
        "--port",
        str(port),
        "--webhook-secret",
        secret,
        "--db",
        str(log_dir / f"{name}.sqlite3"),
    ]
    command += ["--webhook-url", webhook_url] if webhook_url else ["--no-webhooks"]
    service = spawn(name, command, {**os.environ, "PYTHONUNBUFFERED": "1"}, log_dir)
    service.base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return service
        except OSError:
            if not service.alive():
                break
            time.sleep(0.1)
    service.stop()
    raise RuntimeError(f"the Stripe simulator did not start:\n{service.output()[-3000:]}")


# A private PostgreSQL cluster ---------------------------------------------------------------


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster in a folder of its own, on a port of its own.

    As root the server runs as the `postgres` user (PostgreSQL refuses root). `stop()`,
    `start()` and `restart()` act on this cluster only, never on the machine's server.
    """

    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def server_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def url(self, database: str = "postgres") -> str:
        return psycopg_url(f"{self.server_url}/{database}")

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        binary = postgres_bin()
        if binary is None:
            raise RuntimeError(
                "PostgreSQL's server programs are not installed (apt-get install postgresql)"
            )
        argv = [str(binary / command[0]), *command[1:]]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{command[0]} exited {result.returncode}: "
                f"{result.stdout[-2000:]} {result.stderr[-2000:]}"
            )
        return result

    def init(self) -> PrivatePostgres:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # the postgres user must reach the folder and own the cluster
            for parent in [self.directory, *self.directory.parents]:
                if parent.stat().st_mode & 0o005 != 0o005:
                    parent.chmod(parent.stat().st_mode | 0o755)
            shutil.chown(self.directory, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """`mode`: smart, fast (disconnects clients) or immediate (like a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, mode: str = "fast", down_for: float = 0.0) -> None:
        self.stop(mode)
        time.sleep(down_for)
        self.start()

    def createdb(self, name: str) -> str:
        return fresh_database(name, self.server_url)

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def private_postgres(directory: Path | None = None) -> Iterator[PrivatePostgres]:
    """A started private cluster, stopped and removed afterwards."""
    owned = directory is None
    directory = directory or Path(tempfile.mkdtemp(prefix="donorhub-pg-"))
    cluster = PrivatePostgres(directory / "cluster").init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        if owned:
            shutil.rmtree(directory, ignore_errors=True)
