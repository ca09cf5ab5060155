"""The staff second factor: lock-out after wrong codes, a limit per account from any address,
a code raced by two submissions, recovery codes, and a QR code an app can scan."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from xml.etree import ElementTree

import pyotp
import pytest
import time_machine
from sqlalchemy import select

from donorhub.accounts.models import User
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from tests.helpers import HANG_GUARD_SECONDS, PASSWORD, csrf_token, post_form, require
from tests.metrics import METRICS

WRONG = ["000000", "111111", "222222", "333333", "444444", "555555", "666666", "777777"]


def start_sign_in(app, email: str, address: str = "192.0.2.1"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    response = post_form(client, "/account/sign-in", {"email": email, "password": PASSWORD})
    assert response.headers["Location"] == "/account/two-factor", response.status_code
    return client


def give_code(client, code: str, address: str | None = None):
    if address:
        client.environ_base["REMOTE_ADDR"] = address
    token = csrf_token(client, "/account/two-factor")
    return client.post("/account/two-factor", data={"csrf_token": token, "code": code})


def outbox(app, template: str) -> list[OutboxMessage]:
    with app.app_context():
        return list(
            db.session.scalars(select(OutboxMessage).where(OutboxMessage.template == template))
        )


def test_five_wrong_codes_end_the_pending_sign_in_from_any_address(app_factory, make_user):
    app = app_factory(PROXY_COUNT=0)
    officer = make_user(roles=("safeguarding_officer",))
    client = start_sign_in(app, officer.email)
    cookie = client.get_cookie("donorhub_session") or client.get_cookie("session")
    statuses = []
    # The same pending cookie, handed to a new client address for each guess.
    for n, code in enumerate(WRONG[:5]):
        statuses.append(give_code(client, code, address=f"198.51.100.{n + 1}").status_code)
    assert statuses == [422, 422, 422, 422, 302]
    # The pending sign-in is over: even the right code, on the same cookie or a copy made
    # before the lock-out, leads back to the password.
    right = pyotp.TOTP(officer.totp_secret).now()
    copy = app.test_client()
    copy.set_cookie(cookie.key, cookie.value)
    for holder in (client, copy):
        token = csrf_token(holder, "/account/sign-in")
        response = holder.post("/account/two-factor", data={"csrf_token": token, "code": right})
        assert response.headers.get("Location") == "/account/sign-in"
        assert holder.get("/staff").status_code == 302
    alerts = outbox(app, "accounts/second_factor_locked")
    assert [m.recipient for m in alerts] == [officer.email]
    assert "5 wrong sign-in codes" in alerts[0].text_body
    # Starting again with the password works.
    fresh = start_sign_in(app, officer.email, "192.0.2.99")
    assert give_code(fresh, right).headers["Location"] == "/staff"


def test_second_factor_is_limited_per_account_whatever_the_address(app_factory, make_user):
    # Lock-outs off, to see the limit per account alone.
    app = app_factory(MFA_MAX_FAILURES=10_000)
    officer = make_user(roles=("admin",))
    client = start_sign_in(app, officer.email)
    statuses = [
        give_code(client, f"{100000 + n:06d}", address=f"203.0.113.{n + 1}").status_code
        for n in range(14)
    ]
    first_429 = statuses.index(429) + 1 if 429 in statuses else None
    assert first_429 == 11, statuses  # "10 per hour" per account, 14 different addresses
    # The same account signing in from yet another address is held back too...
    again = start_sign_in(app, officer.email, "203.0.113.200")
    assert give_code(again, "999999").status_code == 429
    # ...while another account is not touched.
    colleague = make_user(roles=("admin",))
    other = start_sign_in(app, colleague.email, "203.0.113.201")
    assert give_code(other, pyotp.TOTP(colleague.totp_secret).now()).status_code == 302
    METRICS.report(
        "6.3 second-factor attempts per account before 429 (14 addresses)", first_429 - 1
    )


def test_a_code_raced_by_two_submissions_signs_in_once(
    app_factory, make_user, monkeypatch, backend
):
    """Two pending sign-ins submit the same current code. A barrier holds both requests after
    each has read the account and before either checks the code, so both see the step
    unused: only the conditional UPDATE can decide, and it lets exactly one through."""
    from donorhub.accounts import services

    app = app_factory(RATELIMIT_ENABLED=False)
    officer = make_user(roles=("safeguarding_officer",))
    totp = pyotp.TOTP(officer.totp_secret)
    original = services.verify_totp
    barrier = threading.Barrier(2, timeout=HANG_GUARD_SECONDS)

    def verify_after_barrier(*args, **kwargs):
        barrier.wait(timeout=HANG_GUARD_SECONDS)
        return original(*args, **kwargs)

    monkeypatch.setattr(services, "verify_totp", verify_after_barrier)
    rounds = []
    with time_machine.travel(datetime(2026, 12, 4, 10, 0, 1, tzinfo=UTC), tick=False) as clock:
        for _ in range(3):
            clock.shift(30)
            clients = [start_sign_in(app, officer.email, f"192.0.2.{n}") for n in (1, 2)]
            tokens = [csrf_token(c, "/account/two-factor") for c in clients]
            code = totp.now()
            results: list[int] = [0, 0]
            threads = [
                threading.Thread(target=submit, args=(clients[i], tokens[i], code, results, i))
                for i in (0, 1)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            barrier.reset()
            rounds.append(sorted(results))
    assert rounds == [[302, 422]] * 3, rounds


def submit(client, token: str, code: str, results: list[int], index: int) -> None:
    response = client.post("/account/two-factor", data={"csrf_token": token, "code": code})
    results[index] = response.status_code


def enrol(app, user) -> tuple[object, str, list[str]]:
    client = app.test_client()
    post_form(client, "/account/sign-in", {"email": user.email, "password": PASSWORD})
    page = client.get("/account/two-factor/setup").get_data(as_text=True)
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
    response = client.post(
        "/account/two-factor/setup",
        data={
            "csrf_token": csrf_token(client, "/account/two-factor/setup"),
            "code": pyotp.TOTP(secret).now(),
        },
    )
    assert response.status_code == 200
    codes = re.findall(
        r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", response.get_data(as_text=True)
    )
    return client, secret, codes


def test_recovery_codes_work_once_each_and_tell_the_owner(app, make_user, log_guard):
    newcomer = make_user(roles=("fundraiser",), totp=False)
    _client, secret, codes = enrol(app, newcomer)
    log_guard.watch(secret, *codes)
    assert len(codes) == 10 and len(set(codes)) == 10
    with app.app_context():
        stored = db.session.execute(select(db.metadata.tables["recovery_codes"])).all()
    assert len(stored) == 10
    assert not any(
        code.replace("-", "") in str(row) or code in str(row) for code in codes for row in stored
    ), "a recovery code is stored in clear"

    first = start_sign_in(app, newcomer.email)
    assert give_code(first, codes[0].upper().replace("-", " ")).headers["Location"] == "/staff"
    used = outbox(app, "accounts/recovery_code_used")
    assert [m.recipient for m in used] == [newcomer.email]
    assert "9 unused recovery codes left" in used[0].text_body
    again = start_sign_in(app, newcomer.email)
    assert give_code(again, codes[0]).status_code == 422, "a recovery code worked twice"
    assert give_code(again, codes[1]).headers["Location"] == "/staff"


def test_new_recovery_codes_need_the_password_and_a_code(app, make_user, log_guard):
    newcomer = make_user(roles=("admin",), totp=False)
    client, secret, old_codes = enrol(app, newcomer)
    log_guard.watch(secret, *old_codes)
    totp = pyotp.TOTP(secret)
    page = client.get("/account/recovery-codes")
    assert "You have 10 unused recovery codes" in page.get_data(as_text=True)
    token = csrf_token(client, "/account/recovery-codes")
    wrong_password = client.post(
        "/account/recovery-codes",
        data={"csrf_token": token, "current_password": "not my password at all", "code": "123456"},
    )
    assert wrong_password.status_code == 422
    with time_machine.travel(datetime.now(UTC), tick=False) as clock:
        clock.shift(31)  # the enrolment used this step's code
        wrong_code = client.post(
            "/account/recovery-codes",
            data={
                "csrf_token": token,
                "current_password": PASSWORD,
                "code": "000000" if totp.now() != "000000" else "111111",
            },
        )
        assert wrong_code.status_code == 422
        response = client.post(
            "/account/recovery-codes",
            data={"csrf_token": token, "current_password": PASSWORD, "code": totp.now()},
        )
    assert response.status_code == 200
    new_codes = re.findall(
        r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", response.get_data(as_text=True)
    )
    log_guard.watch(*new_codes)
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    stale = start_sign_in(app, newcomer.email)
    assert give_code(stale, old_codes[0]).status_code == 422
    assert give_code(stale, new_codes[0]).headers["Location"] == "/staff"


def svg_modules(svg: str) -> tuple[ElementTree.Element, list[list[bool]]]:
    """The SVG's root and the dark modules it draws, read back from segno's path (horizontal
    runs: "M x y h n" / "m dx dy h n", each at y + 0.5 in module units)."""
    root = ElementTree.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    path = root.find(".//s:path[@class='qrline']", ns)
    size = int(float(root.get("viewBox").split()[2]) / 5)  # scale 5
    grid = [[False] * size for _ in range(size)]
    x = y = 0.0
    for command, a, b in re.findall(r"([MmHh])(-?[\d.]+)(?:\s+(-?[\d.]+))?", path.get("d")):
        if command == "M":
            x, y = float(a), float(b)
        elif command == "m":
            x, y = x + float(a), y + float(b)
        else:
            run = float(a) if command == "h" else float(a) - x
            row = int(y - 0.5)
            for column in range(int(x), int(x + run)):
                grid[row][column] = True
            x += run
    return root, grid


def test_enrolment_qr_code_scales_without_cropping_and_decodes(app, make_user):
    from donorhub.qr import qr_svg

    uri = pyotp.TOTP(pyotp.random_base32()).provisioning_uri(
        name="officer@example.org", issuer_name="DonorHub"
    )
    svg = str(qr_svg(uri))
    root, grid = svg_modules(svg)
    view_box = [float(v) for v in root.get("viewBox").split()]
    assert view_box[:2] == [0, 0] and view_box[2] == view_box[3]
    assert (float(root.get("width")), float(root.get("height"))) == tuple(view_box[2:])
    # The quiet zone (4 modules) is inside the drawing: nothing is cut at any box size.
    assert not any(grid[0]) and not any(grid[-1]) and any(grid[4])
    # The page shows it whole: the SVG scales to its CSS box through the viewBox.
    newcomer = make_user(roles=("fundraiser",), totp=False)
    client = app.test_client()
    post_form(client, "/account/sign-in", {"email": newcomer.email, "password": PASSWORD})
    page = client.get("/account/two-factor/setup").get_data(as_text=True)
    assert re.search(
        r'<figure class="qr"><svg width="\d+" height="\d+" '
        r'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 \d+ \d+"',
        page,
    )
    css = client.get("/static/css/site.css").get_data(as_text=True)
    rule = re.search(r"\.qr svg \{([^}]*)\}", css).group(1)
    assert "width" in rule and "height" in rule and "overflow" not in rule

    try:
        import zxingcpp
    except ImportError:
        zxingcpp = None
    require(zxingcpp, "zxing-cpp (pip install -e '.[test]')", "reading the QR code back")
    module = 6
    size = len(grid) * module
    pixels = bytearray(b"\xff" * size * size)
    for row, cells in enumerate(grid):
        for column, dark in enumerate(cells):
            if dark:
                for dy in range(module):
                    start = (row * module + dy) * size + column * module
                    pixels[start : start + module] = b"\x00" * module
    image = memoryview(bytes(pixels)).cast("B", (size, size))
    decoded = zxingcpp.read_barcodes(image)
    assert [barcode.text for barcode in decoded] == [uri]


def test_the_lock_out_and_owner_mail_need_no_request_context(app, make_user):
    """The counters live on the account row, so a lock-out holds across pending cookies."""
    from donorhub.accounts import services

    officer = make_user(roles=("admin",))
    with app.test_request_context():
        user = db.session.get(User, officer.id)
        for _ in range(4):
            services.record_second_factor_failure(user)
        assert user.totp_failures == 4
        with pytest.raises(services.SecondFactorLocked):
            services.record_second_factor_failure(user)
        assert (user.totp_failures, user.totp_lockouts) == (0, 1)
        db.session.rollback()


def test_successful_sign_ins_do_not_use_up_the_per_account_limit(app, make_user):
    officer = make_user(roles=("fundraiser",))
    totp = pyotp.TOTP(officer.totp_secret)
    with time_machine.travel(datetime(2026, 12, 4, 11, 0, 1, tzinfo=UTC), tick=False) as clock:
        for _ in range(12):  # more than the 10 an hour that failures may use
            clock.shift(30)
            client = start_sign_in(app, officer.email)
            assert give_code(client, totp.now()).headers["Location"] == "/staff"
