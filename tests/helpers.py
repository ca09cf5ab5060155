"""Small helpers shared by the tests: forms with CSRF tokens, signing in, mail."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

import pyotp
import pytest

CSRF_PATTERN = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "a perfectly long test password"  # noqa: S105

#: How long a test waits at a barrier, for an event or for a thread of its own before it
#: fails: a guard against a hang (a thread that failed before it got there), never a timing
#: a test relies on.
HANG_GUARD_SECONDS = 120


def barrier(parties: int) -> threading.Barrier:
    """A barrier that breaks (BrokenBarrierError in every waiter) after the hang guard."""
    return threading.Barrier(parties, timeout=HANG_GUARD_SECONDS)


def wait_for(event: threading.Event, what: str) -> None:
    if not event.wait(timeout=HANG_GUARD_SECONDS):
        raise AssertionError(f"hang guard: {what} did not happen in {HANG_GUARD_SECONDS} s")


def join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=HANG_GUARD_SECONDS)
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"hang guard: {stuck} still running after {HANG_GUARD_SECONDS} s"


def csrf_token(client, page: str = "/account/sign-in") -> str:
    response = client.get(page)
    match = CSRF_PATTERN.search(response.get_data(as_text=True))
    assert match, f"no CSRF token on {page} ({response.status_code})"
    return match.group(1)


def post_form(
    client, url: str, data: dict | None = None, *, token_page: str | None = None, **kwargs
):
    """POST like a browser: fetch a page for the CSRF token first, then submit."""
    token = csrf_token(client, token_page or "/account/sign-in")
    return client.post(url, data={**(data or {}), "csrf_token": token}, **kwargs)


def sign_in(
    client,
    email: str,
    password: str = PASSWORD,
    *,
    totp_secret: str | None = None,
    remember: bool = False,
):
    form = {"email": email, "password": password}
    if remember:
        form["remember"] = "on"
    response = post_form(client, "/account/sign-in", form)
    if totp_secret is not None:
        assert response.status_code == 302, response.status_code
        page = response.headers["Location"]
        token = csrf_token(client, page)
        response = client.post(page, data={"csrf_token": token, "code": current_totp(totp_secret)})
    return response


def current_totp(secret: str) -> str:
    """The code of the current 30-second step. No waiting for the clock: the app also takes
    the step before (once), so a code made at 29.9 s and checked at 30.1 s still works."""
    return pyotp.TOTP(secret).now()


def sign_out(client):
    return post_form(client, "/account/sign-out", token_page="/")


@dataclass
class ReceivedMail:
    envelope_from: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    def links(self) -> list[str]:
        return re.findall(r"https?://\S+", self.text)


@dataclass
class MailSink:
    messages: list[ReceivedMail] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's API
        self.messages.append(
            ReceivedMail(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message_from_bytes(
                    envelope.original_content or envelope.content, policy=policy.default
                ),
            )
        )
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[ReceivedMail]:
        return [m for m in self.messages if address in m.recipients]


def mentions(text: str, alias: str) -> bool:
    """Whether `alias` appears as a name in `text`: a whole word. No alias shares a word with
    the charity's name (tests/feed/test_aliases.py), so the name never matches."""
    return re.search(rf"(?<![\w-]){re.escape(alias)}(?![\w-])", text) is not None


# Tools and services the suite needs ------------------------------------------------------
# Locally a test whose tool or service is missing is skipped, loudly. In CI (CI=true, which
# .ci/run installs everything for) it fails instead: a green CI run has run every test.


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(available: object, what: str, why: str) -> None:
    """Skip (locally) or fail (CI=true) the running test unless `available` is true.
    `what` names the missing tool or service, `why` says what it is needed for."""
    if available:
        return
    if in_ci():
        pytest.fail(
            f"{what} is missing, so {why} cannot run; CI must run it "
            "(.ci/run installs and starts what the tests need)",
            pytrace=False,
        )
    pytest.skip(f"!!! {what} is missing: {why} is SKIPPED !!!")


def require_tool(name: str, why: str, *, path: str | None = None) -> str:
    """The path of a program the test needs, found on PATH (or at `path`)."""
    found = shutil.which(name) or (path if path and os.path.exists(path) else None)
    require(found, name, why)
    return found  # type: ignore[return-value]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now: the kernel's pick, so two test processes (xdist
    workers) never choose the same one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def input_schemas() -> list[type]:
    """Every marshmallow schema class DonorHub defines, after importing every module of the
    package (schemas live in views modules too): for tests that walk every input field."""
    import importlib
    import pkgutil

    from marshmallow import Schema

    import donorhub

    for module in pkgutil.walk_packages(donorhub.__path__, "donorhub."):
        importlib.import_module(module.name)
    found, todo = [], list(Schema.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("donorhub.") and cls not in found:
            found.append(cls)
    return found


def live_campaign(**fields):
    """A published campaign open for gifts since yesterday, with its own slug and appeal
    code, added to the session (the caller flushes or commits); `fields` override any column."""
    import uuid
    from datetime import timedelta

    from donorhub.campaigns.models import Campaign, CampaignStatus
    from donorhub.database import uk_today, utcnow
    from donorhub.extensions import db

    tag = uuid.uuid4().hex[:10]
    values = {
        "name": f"Campaign {tag}",
        "slug": f"campaign-{tag}",
        "summary": "A campaign",
        "body_md": "",
        "goal_minor": 100_000,
        "goal_currency": "gbp",
        "starts_on": uk_today() - timedelta(days=1),
        "ends_on": None,
        "appeal_code": f"C{tag.upper()}",
        "status": CampaignStatus.LIVE,
        "published_at": utcnow(),
    }
    campaign = Campaign(**{**values, **fields})
    db.session.add(campaign)
    return campaign
