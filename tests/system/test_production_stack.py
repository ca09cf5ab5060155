"""The production stack of docs/deploy.md, started from environment variables only and used
over HTTPS through nginx: a donor registers, confirms the address from the mail, signs in,
gives through the Stripe simulator's checkout and receives the receipt over SMTP.

The settings come from the example blocks of docs/deploy.md (the environment, the secrets,
the gunicorn command, the nginx block), with only the deviations that page lists (its last
section): loopback addresses and ports, a self-signed certificate, the simulator in place of
Stripe through ALLOW_STRIPE_TEST_MODE, random secrets, file paths. No process gets anything
of this test's own environment but PATH.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import HANG_GUARD_SECONDS, require
from tests.metrics import METRICS
from tests.system import deploy_doc
from tests.system.stack import (
    ROOT,
    drop_database,
    free_port,
    fresh_database,
    spawn,
    wait_until_up,
)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl")
DATABASE = "donorhub_system_production"
REDIS_DB = 14  # this test's own Redis database; only it is flushed
MB = 1024 * 1024
PASSWORD = "a long production stack password 7"  # noqa: S105 - a test account


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _stack_tools():
    why = "the production stack test"
    require(os.path.exists(NGINX), "nginx (apt-get install nginx-light)", why)
    require(OPENSSL, "openssl", why)
    require(reachable(5432), "PostgreSQL on 127.0.0.1:5432", why)
    require(reachable(6379), "Redis on 127.0.0.1:6379", why)


def substitute(text: str, old: str, new: str, *, count: int | None = None) -> str:
    """Replace a deviation; fail when the page no longer says what the deviation replaces."""
    found = text.count(old)
    assert found and (count is None or found == count), f"docs/deploy.md: {old!r} ×{found}"
    return text.replace(old, new)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            OPENSSL,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def production_environment(
    *, database_url: str, https_port: int, smtp_port: int, simulator_url: str, webhook_secret: str
) -> dict[str, str]:
    env = deploy_doc.environment("environment")
    secret_names = deploy_doc.environment("secrets")
    assert env["DONORHUB_ENV"] == "production"
    # Deviations (docs/deploy.md, last section), each checked against what the page says.
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
    env["DATABASE_URL"] = database_url
    env["PUBLIC_BASE_URL"] = substitute(
        env["PUBLIC_BASE_URL"], "give.example.org", f"127.0.0.1:{https_port}"
    )
    env["RATELIMIT_STORAGE_URI"] = substitute(
        env["RATELIMIT_STORAGE_URI"], "redis.internal:6379/0", f"127.0.0.1:6379/{REDIS_DB}"
    )
    env["MAIL_SERVER"] = substitute(env["MAIL_SERVER"], "smtp.example.org", "127.0.0.1")
    env["MAIL_PORT"] = str(smtp_port)
    env["MAIL_USE_TLS"] = "false"
    del env["MAIL_USERNAME"]
    assert set(secret_names) == {
        "SECRET_KEY",
        "FEED_PSEUDONYM_KEY",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "MAIL_PASSWORD",
    }
    env["SECRET_KEY"] = secrets.token_urlsafe(48)
    env["FEED_PSEUDONYM_KEY"] = secrets.token_urlsafe(48)
    env["STRIPE_SECRET_KEY"] = "sk_test_" + secrets.token_urlsafe(24)
    env["STRIPE_WEBHOOK_SECRET"] = webhook_secret
    env["ALLOW_STRIPE_TEST_MODE"] = "true"
    env["STRIPE_API_BASE"] = simulator_url
    env["WEB_CONCURRENCY"] = "2"
    env["JOBS_MAIL_INTERVAL_SECONDS"] = "1"
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    return env


def nginx_configuration(
    directory: Path, *, http_port: int, https_port: int, web_port: int, cert: Path, key: Path
) -> Path:
    server = deploy_doc.nginx_block()
    server = re.sub(r"10\.0\.1\.\d+:8000", f"127.0.0.1:{web_port}", server)
    server = substitute(server, "listen 80;", f"listen 127.0.0.1:{http_port};", count=1)
    server = substitute(
        server, "listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", count=1
    )
    server = substitute(
        server, "/etc/letsencrypt/live/give.example.org/fullchain.pem", str(cert), count=1
    )
    server = substitute(
        server, "/etc/letsencrypt/live/give.example.org/privkey.pem", str(key), count=1
    )
    server = substitute(server, "proxy_set_header Host $host;", "proxy_set_header Host $http_host;")
    server = substitute(server, "allow 10.0.0.0/8;", "allow 127.0.0.1;", count=1)
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    conf.write_text(f"""{user}daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    types {{ text/html html; text/css css; image/svg+xml svg; application/javascript js; }}
    access_log {directory}/access.log;
    log_format ids '$request_id $request_method $uri $status';
    access_log {directory}/ids.log ids;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
{server}
}}
""")
    return conf


def wait_for_mail(mailbox, recipient: str, subject_contains: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in list(mailbox.messages):
            if recipient in mail.recipients and subject_contains in mail.subject:
                return mail
        time.sleep(0.2)
    raise AssertionError(
        f"no mail {subject_contains!r} to {recipient} within {timeout:.0f} s: "
        f"{[m.subject for m in mailbox.messages]}"
    )


def json_lines(output: str) -> list[dict]:
    records = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def form_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


def test_the_documented_production_stack_takes_a_gift_over_https(tmp_path, smtp_server):
    import redis

    mailbox, smtp_port = smtp_server
    mailbox.messages.clear()
    started = time.monotonic()
    services = []
    web_port, https_port, http_port, sim_port = (free_port() for _ in range(4))
    base = f"https://127.0.0.1:{https_port}"
    cert, key = self_signed_certificate(tmp_path)
    webhook_secret = "whsec_" + secrets.token_urlsafe(32)
    url = fresh_database(DATABASE)
    counters = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    counters.flushdb()
    env = production_environment(
        database_url=url,
        https_port=https_port,
        smtp_port=smtp_port,
        simulator_url=f"http://127.0.0.1:{sim_port}",
        webhook_secret=webhook_secret,
    )
    logs = tmp_path / "logs"
    try:
        # The Stripe simulator in place of Stripe, delivering its webhooks through nginx.
        services.append(
            spawn(
                "stripe-simulator",
                [
                    sys.executable,
                    "-m",
                    "stripe_simulator",
                    "--port",
                    str(sim_port),
                    "--webhook-secret",
                    webhook_secret,
                    "--db",
                    str(tmp_path / "sim.sqlite3"),
                    "--webhook-url",
                    f"{base}/stripe/webhook",
                ],
                {"PATH": env["PATH"], "SSL_CERT_FILE": str(cert), "PYTHONUNBUFFERED": "1"},
                logs,
            )
        )

        upgrade = subprocess.run(
            [sys.executable, "-m", "flask", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert upgrade.returncode == 0, upgrade.stderr[-3000:]

        command = deploy_doc.gunicorn_command()
        assert command[0] == "gunicorn"
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            *" ".join(command[1:]).replace("10.0.1.11:8000", f"127.0.0.1:{web_port}").split(),
        ]
        web = spawn("gunicorn", command, env, logs)
        services.append(web)
        try:
            wait_until_up(f"http://127.0.0.1:{web_port}/healthz", timeout=90)
        except RuntimeError:
            raise AssertionError(web.output()[-3000:]) from None
        jobs = spawn("jobs", [sys.executable, "-m", "flask", "jobs", "run"], env, logs)
        services.append(jobs)

        conf = nginx_configuration(
            tmp_path / "nginx",
            http_port=http_port,
            https_port=https_port,
            web_port=web_port,
            cert=cert,
            key=key,
        )
        check = subprocess.run(
            [
                NGINX,
                "-t",
                "-p",
                str(tmp_path / "nginx"),
                "-c",
                str(conf),
                "-e",
                str(tmp_path / "nginx" / "error.log"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert check.returncode == 0, check.stderr
        nginx = spawn(
            "nginx",
            [
                NGINX,
                "-p",
                str(tmp_path / "nginx"),
                "-c",
                str(conf),
                "-e",
                str(tmp_path / "nginx" / "error.log"),
            ],
            env,
            logs,
        )
        services.append(nginx)
        deadline = time.monotonic() + 30
        while not reachable(https_port):
            assert nginx.alive(), (tmp_path / "nginx" / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.1)

        http = requests.Session()
        http.trust_env = False
        http.verify = str(cert)

        # Plain HTTP is sent to HTTPS; the health check tells nothing about the deployment.
        redirect = http.get(f"http://127.0.0.1:{http_port}/donate", allow_redirects=False)
        assert redirect.status_code == 301
        assert redirect.headers["Location"].startswith("https://")
        health = http.get(f"{base}/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert "production" not in health.text

        # Register, confirm the address from the mail, sign in: over HTTPS through nginx.
        email = f"stack-donor-{secrets.token_hex(4)}@example.org"
        page = http.get(f"{base}/account/register")
        assert page.status_code == 200
        assert page.headers["Strict-Transport-Security"].startswith("max-age=63072000")
        assert "gunicorn" not in page.headers.get("Server", "").lower()
        assert page.headers.get("Server") == "nginx"
        referer = {"Referer": f"{base}/account/register"}
        registered = http.post(
            f"{base}/account/register",
            headers=referer,
            data={
                "csrf_token": form_token(page.text),
                "full_name": "Stack Donor",
                "email": email,
                "password": PASSWORD,
                "password_confirm": PASSWORD,
            },
            allow_redirects=False,
        )
        assert registered.status_code in (200, 302, 303), registered.text[:2000]
        verify = wait_for_mail(mailbox, email, "")
        link = next(link for link in verify.links() if "/verify/" in link)
        assert link.startswith(base + "/")
        assert http.get(link).status_code == 200

        page = http.get(f"{base}/account/sign-in")
        signed_in = http.post(
            f"{base}/account/sign-in",
            headers={"Referer": f"{base}/account/sign-in", "X-Request-ID": "chosen-by-the-visitor"},
            data={
                "csrf_token": form_token(page.text),
                "email": email,
                "password": PASSWORD,
                "remember": "on",
            },
            allow_redirects=False,
        )
        assert signed_in.status_code == 302, signed_in.text[:2000]
        cookies = signed_in.raw.headers.getlist("Set-Cookie")
        assert {c.split("=", 1)[0] for c in cookies} == {"__Host-session", "__Host-remember"}
        for cookie in cookies:
            flags = [part.strip().lower() for part in cookie.split(";")]
            assert "secure" in flags and "httponly" in flags and "path=/" in flags, cookie
            assert not any(flag.startswith("domain=") for flag in flags), cookie
        # The app's reference is its own; nginx's id for the request (not the visitor's)
        # reaches the app's log as upstream_request_id, so the two logs can be matched.
        ours = signed_in.headers["X-Request-ID"]
        logged = [
            record
            for record in json_lines(web.output())
            if record.get("message") == "sign_in_succeeded" and record.get("request_id") == ours
        ]
        assert len(logged) == 1, web.output()[-3000:]
        upstream = logged[0].get("upstream_request_id", "")
        assert re.fullmatch(r"[0-9a-f]{32}", upstream), logged[0]
        assert upstream != ours
        # nginx writes its access line once the response has gone, so it may trail the page.
        line, ids_log = f"{upstream} POST /account/sign-in 302", tmp_path / "nginx" / "ids.log"
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while line not in ids_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        ids = ids_log.read_text()
        assert line in ids, ids[-2000:]
        # The limiter counted this visitor's address (X-Forwarded-For from nginx) in Redis.
        keys = [k.decode() for k in counters.keys("*")]
        assert any("127.0.0.1" in k for k in keys), keys

        # Give £25 through the simulator's checkout page; the receipt arrives over SMTP.
        page = http.get(f"{base}/donate?frequency=once")
        to_checkout = http.post(
            f"{base}/donate",
            headers={"Referer": f"{base}/donate"},
            data={
                "csrf_token": form_token(page.text),
                "frequency": "once",
                "currency": "gbp",
                "amount_choice": "2500",
                "designation": "general",
                "full_name": "Stack Donor",
                "email": email,
            },
            allow_redirects=False,
        )
        assert to_checkout.status_code == 303, to_checkout.text[:2000]
        checkout = to_checkout.headers["Location"]
        assert checkout.startswith(f"http://127.0.0.1:{sim_port}/checkout/")
        session_id = checkout.rstrip("/").rsplit("/", 1)[1]
        checkout_page = http.get(checkout).text
        form = {"name": "Stack Donor", "outcome": "succeed"}
        if 'name="email"' in checkout_page:
            form["email"] = email
        paid = http.post(
            f"http://127.0.0.1:{sim_port}/checkout/{session_id}/pay",
            data=form,
            allow_redirects=False,
        )
        assert paid.status_code == 303
        back = http.get(paid.headers["Location"])
        assert back.status_code == 200 and back.url.startswith(base)
        receipt = wait_for_mail(mailbox, email, "your receipt")
        assert "25.00" in receipt.text
        # Stripe's (the simulator's) webhooks came in through nginx over TLS.
        access = (tmp_path / "nginx" / "access.log").read_text()
        assert re.search(r'"POST /stripe/webhook HTTP/1\.1" 200 ', access), access[-2000:]

        # Bodies over the limit are refused by nginx itself (no request id: never reached
        # gunicorn); static files are compressed, pages are not.
        too_big = http.post(
            f"{base}/stripe/webhook",
            data=b"a" * (3 * MB),
            headers={"Content-Type": "application/json"},
        )
        assert too_big.status_code == 413
        assert "X-Request-ID" not in too_big.headers
        css = http.get(f"{base}/static/css/site.css", headers={"Accept-Encoding": "gzip"})
        assert css.status_code == 200 and css.headers.get("Content-Encoding") == "gzip"
        home = http.get(f"{base}/", headers={"Accept-Encoding": "gzip"})
        assert home.status_code == 200 and "Content-Encoding" not in home.headers

        assert web.alive() and jobs.alive() and nginx.alive()
        seconds = time.monotonic() - started
        METRICS.report(
            "S.2 production stack from deploy.md (nginx TLS, gunicorn, jobs, Redis, "
            "SMTP): gift to receipt",
            f"1 receipt, 413 at nginx, {seconds:.0f} s",
        )
    finally:
        for service in reversed(services):
            service.stop()
        counters.flushdb()
        drop_database(DATABASE)
