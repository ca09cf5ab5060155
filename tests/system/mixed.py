"""A mixed load of simulated people over real HTTP, and the accounting that follows it.

Used by tests/system/test_scale_out.py, tests/system/test_postgres_restart.py and
bench/mixed.py. Each simulated person is a thread with its own cookie jar, sending every
request to the next of `base_urls` in turn, so one person's session (sign-in, CSRF token,
hold) is started on one server and continued on another. The kinds of people:

- browsers read public pages: /, /donate, campaign pages, /sponsor, a profile, /impact;
- donors give once or monthly through the real flow: GET /donate for the CSRF token and
  cookie, POST the form, follow the 303 to the Stripe simulator's checkout page, press
  "Succeed" there as a browser would (sometimes "Decline" first), follow the redirect back
  to the thank-you page. The simulator then delivers signed webhooks to the app;
- sponsors (verified accounts that accepted the code of conduct, from `prepare_database`)
  sign in, pick a child from /sponsor, hold her place and pay through checkout; some leave
  at the checkout page, and their holds are left to expire; two may race for one child;
- replayers make duplicate deliveries: the simulator resends stored events, or a stored
  event from /v1/events is signed again and posted to the app.

`settle` then lets the simulator deliver everything, lets the abandoned holds run out (the
clock of those rows is moved past their end, then the real job releases them), and has the
jobs publish one piece of home news and notify sponsors, twice. `account` reads the app's
database and the simulator's state and lists every discrepancy: money missing or counted
twice, amounts that differ, receipts not queued exactly once, holds neither converted nor
released, notifications not queued exactly once, Stripe events stored twice or never.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import random
import re
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.system.stack import WEBHOOK_SECRET

LOAD_DOMAIN = "load.donorhub.invalid"
SPONSOR_PASSWORD = "mixed-load-sponsor-password"  # noqa: S105 - a test value
SIM_KEY = "sk_test_mixed_load"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PROFILE_LINK = re.compile(r'href="/sponsor/([A-Za-z0-9_-]{16,64})"')
CAMPAIGN_LINK = re.compile(r'href="/campaigns/([a-z0-9-]+)"')
CHECKOUT_PATH = re.compile(r"/checkout/(cs_[A-Za-z0-9_]+)")
#: Cheap password hashes for the seeded sponsors (the production cost has its own test);
#: give the same values to the web servers so sign-in does not re-hash every password.
CHEAP_ARGON2 = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "8192", "ARGON2_PARALLELISM": "1"}
HANDOFFS = [
    ("donate_form", "donate_post", "CSRF token from one server, gift posted to another"),
    ("sign_in", "sponsor_choose", "signed in on one server, chose a child on another"),
    ("sponsor_choose", "portal", "held on one server, portal on another"),
]
#: How often each kind of person comes, out of the total.
DEFAULT_MIX = {"browse": 40, "give_once": 20, "give_monthly": 12, "sponsor": 14, "replay": 6}


# What happened ------------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    started: float
    seconds: float
    status: int  # 0: no HTTP answer (refused, reset, timed out)
    server: str


@dataclass
class Failure:
    kind: str
    started: float
    status: int
    server: str
    detail: str
    ended: float = 0.0


@dataclass
class LoadResult:
    started: float = 0.0
    finished: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    #: Checkout sessions the load paid ("Succeed"), and sponsorship sessions it left open.
    paid_sessions: list[str] = field(default_factory=list)
    abandoned_sessions: list[str] = field(default_factory=list)
    #: Flows that finished, and those of them whose requests reached more than one server.
    flows: Counter = field(default_factory=Counter)
    crossed_flows: Counter = field(default_factory=Counter)
    #: Finished flows whose session crossed servers at the step that needs it: the CSRF
    #: token from one server, the form posted to the other; signed in on one, chose on the
    #: other. Proof that the web tier keeps nothing in process memory.
    handoffs: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def elapsed(self) -> float:
        return max(self.finished - self.started, 1e-9)

    def by_kind(self) -> dict[str, list[Sample]]:
        grouped: dict[str, list[Sample]] = defaultdict(list)
        for sample in self.samples:
            grouped[sample.kind].append(sample)
        return dict(sorted(grouped.items()))

    def served_by(self) -> Counter:
        """Answered requests (any HTTP status below 500) per app server."""
        return Counter(
            s.server for s in self.samples if 0 < s.status < 500 and not s.kind.startswith("sim:")
        )

    def table(self) -> str:
        lines = [f"{'kind':<22}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"]
        for kind, samples in self.by_kind().items():
            times = sorted(s.seconds for s in samples)
            lines.append(
                f"{kind:<22}{len(samples):>9}{len(samples) / self.elapsed:>8.1f}"
                f"{percentile(times, 50) * 1000:>9.0f}"
                f"{percentile(times, 99) * 1000:>9.0f}"
            )
        total = len(self.samples)
        lines.append(f"{'all':<22}{total:>9}{total / self.elapsed:>8.1f}")
        return "\n".join(lines)


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


class FlowAborted(Exception):
    """The person saw something other than what the step expects, and leaves."""


# The load -----------------------------------------------------------------------------------


@dataclass
class MixedLoad:
    """Concurrent simulated people against `base_urls` (app servers, or one proxy).

    `public_base_url`: the app's PUBLIC_BASE_URL, where checkout sends people back; any
    redirect to it, or to one of `base_urls`, goes to the next server in turn.
    `forwarded_for`: send each person's own X-Forwarded-For (the servers trust one proxy,
    PROXY_COUNT=1, and the driver stands in for it), so rate limits count people, not the
    driver. `sponsors`: e-mail addresses from `prepare_database`, each used once.
    """

    base_urls: list[str]
    simulator_url: str
    sponsors: list[str] = field(default_factory=list)
    public_base_url: str = ""
    people: int = 8
    mix: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIX))
    forwarded_for: bool = True
    abandon_share: float = 0.25
    decline_share: float = 0.1
    webhook_secret: str = WEBHOOK_SECRET
    timeout: float = 15.0
    seed: int = 8

    def __post_init__(self) -> None:
        self._servers = itertools.cycle(self.base_urls)
        self._server_lock = threading.Lock()
        self._sponsor_lock = threading.Lock()
        self._sponsors = list(self.sponsors)
        self._person_numbers = itertools.count(1)
        self._hold_numbers = itertools.count()
        self._stop = threading.Event()
        self.result = LoadResult()
        self._own_prefixes = [u.rstrip("/") for u in self.base_urls + [self.public_base_url] if u]

    # -- running --

    def run(self, duration: float) -> LoadResult:
        """Run for `duration` seconds (bounded: every person stops by itself) and return."""
        self.result.started = time.monotonic()
        deadline = self.result.started + duration
        threads = [
            threading.Thread(
                target=self._person_loop, args=(i, deadline), daemon=True, name=f"person-{i}"
            )
            for i in range(self.people)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(duration + self.timeout * 4 + 30)
        self.result.finished = time.monotonic()
        return self.result

    def stop(self) -> None:
        self._stop.set()

    def _person_loop(self, index: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + index)
        kinds = list(self.mix)
        weights = [self.mix[k] for k in kinds]
        while time.monotonic() < deadline and not self._stop.is_set():
            kind = rng.choices(kinds, weights)[0]
            person = Person(self, rng, next(self._person_numbers))
            try:
                getattr(person, kind)()
            except FlowAborted:
                self.result.outcomes[f"{kind}: left after an error"] += 1
                continue
            except Exception:  # a bug in the driver must show, not hang the load
                self._fail(kind, 0, "", "driver error: " + traceback.format_exc()[-800:])
                continue
            finally:
                person.close()
            with self.result.lock:
                self.result.flows[kind] += 1
                if len(person.servers) > 1:
                    self.result.crossed_flows[kind] += 1
                for first, second, label in HANDOFFS:
                    one, other = person.server_of(first), person.server_of(second)
                    if one and other and one != other:
                        self.result.handoffs[label] += 1

    # -- shared helpers --

    def next_server(self) -> str:
        with self._server_lock:
            return next(self._servers)

    def abandons_next_hold(self) -> bool:
        """Every n-th hold (the first, then one in 1/abandon_share) is left to expire: by
        count, not chance, so a short run has one too."""
        every = max(1, round(1 / self.abandon_share)) if self.abandon_share else 0
        return bool(every) and next(self._hold_numbers) % every == 0

    def take_sponsor(self) -> str | None:
        with self._sponsor_lock:
            return self._sponsors.pop() if self._sponsors else None

    def own_path(self, url: str) -> str | None:
        """The path of a URL of the app (a server, the proxy or PUBLIC_BASE_URL), else None."""
        for prefix in self._own_prefixes:
            if url.startswith(prefix + "/") or url == prefix:
                return url[len(prefix) :] or "/"
        return None

    def _record(self, sample: Sample) -> None:
        with self.result.lock:
            self.result.samples.append(sample)

    def _fail(
        self, kind: str, status: int, server: str, detail: str, started: float | None = None
    ) -> None:
        now = time.monotonic()
        with self.result.lock:
            self.result.failures.append(
                Failure(kind, started or now, status, server, detail[:1000], ended=now)
            )


class Person:
    """One visitor: a cookie jar, an address, and the steps of one flow."""

    def __init__(self, load: MixedLoad, rng: random.Random, number: int) -> None:
        self.load = load
        self.rng = rng
        self.number = number
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only: never a proxy from the environment
        if load.forwarded_for:
            self.http.headers["X-Forwarded-For"] = (
                f"203.0.{113 + number // 250 % 2}.{number % 250 + 1}"
            )
        self.http.headers["User-Agent"] = "DonorHub mixed load (tests/system/mixed.py)"
        self.servers: set[str] = set()
        #: (kind, server) of each request to the app, in order.
        self.steps: list[tuple[str, str]] = []

    def server_of(self, kind: str) -> str | None:
        return next((server for k, server in self.steps if k == kind), None)

    def close(self) -> None:
        self.http.close()

    # -- one request --

    def request(
        self,
        kind: str,
        method: str,
        path_or_url: str,
        *,
        expect: tuple[int, ...],
        data: dict | None = None,
        body: bytes | None = None,
        headers: dict | None = None,
    ) -> requests.Response:
        """Send to the next app server (a path) or to an absolute URL (the simulator);
        record the sample; raise FlowAborted when the status is not one of `expect`."""
        if path_or_url.startswith("/"):
            server = self.load.next_server()
            url = server + path_or_url
            self.servers.add(server)
            self.steps.append((kind, server))
        else:
            server, url = "simulator", path_or_url
            kind = "sim:" + kind
        started = time.monotonic()
        try:
            response = self.http.request(
                method,
                url,
                data=data if body is None else body,
                headers=headers,
                allow_redirects=False,
                timeout=self.load.timeout,
            )
        except requests.RequestException as error:
            seconds = time.monotonic() - started
            self.load._record(Sample(kind, started, seconds, 0, server))
            self.load._fail(kind, 0, server, f"{method} {url}: {type(error).__name__}", started)
            raise FlowAborted from None
        seconds = time.monotonic() - started
        self.load._record(Sample(kind, started, seconds, response.status_code, server))
        if response.status_code not in expect:
            self.load._fail(
                kind,
                response.status_code,
                server,
                f"{method} {urlsplit(url).path}: {response.status_code} {response.text[:600]}",
                started,
            )
            raise FlowAborted
        return response

    def follow(self, kind: str, response: requests.Response, *, expect=(200,)):
        """Follow a redirect as a browser would: the app's own URLs go to the next server."""
        location = urljoin(response.url, response.headers["Location"])
        return self.request(kind, "GET", self.load.own_path(location) or location, expect=expect)

    def form_token(self, kind: str, path: str) -> tuple[str, str]:
        page = self.request(kind, "GET", path, expect=(200,)).text
        match = CSRF.search(page)
        if not match:
            self.load._fail(kind, 200, "", f"GET {path}: no CSRF token on the page")
            raise FlowAborted
        return match.group(1), page

    # -- the kinds of people --

    def browse(self) -> None:
        home = self.request("home", "GET", "/", expect=(200,)).text
        pages = ["/donate", "/sponsor", "/impact"]
        pages += [f"/campaigns/{slug}" for slug in set(CAMPAIGN_LINK.findall(home))]
        for path in self.rng.sample(pages, k=min(3, len(pages))):
            kind = path.split("/")[1] or "home"
            page = self.request(kind, "GET", path, expect=(200,)).text
            if path == "/sponsor":
                tokens = PROFILE_LINK.findall(page)
                if tokens:  # a profile can be taken meanwhile: 404 is a fair answer
                    self.request(
                        "profile", "GET", f"/sponsor/{self.rng.choice(tokens)}", expect=(200, 404)
                    )

    def give_once(self) -> None:
        self._give("once")

    def give_monthly(self) -> None:
        self._give("monthly")

    def _give(self, frequency: str) -> None:
        path = f"/donate?frequency={frequency}"
        token, _page = self.form_token("donate_form", path)
        form = {
            "csrf_token": token,
            "frequency": frequency,
            "currency": "gbp",
            "designation": "general",
            "full_name": f"Load Donor {self.number}",
            "email": f"donor-{self.number}-{self.rng.randrange(10**6)}@{LOAD_DOMAIN}",
        }
        if self.rng.random() < 0.5:
            form["amount_choice"] = str(self.rng.choice((1000, 2500, 5000, 10000)))
        else:
            form.update(amount_choice="custom", custom_amount=str(self.rng.randrange(3, 300)))
        if self.rng.random() < 0.2:
            form["cover_fees"] = "on"
        response = self.request("donate_post", "POST", "/donate", data=form, expect=(303,))
        session_id = self._pay(response, "donate")
        self.load.result.paid_sessions.append(session_id)
        self.load.result.outcomes[f"gave {frequency}"] += 1

    def _pay(self, to_checkout: requests.Response, back_kind: str) -> str:
        """On the simulator's page: maybe Decline once, then Succeed; follow back."""
        location = to_checkout.headers["Location"]
        match = CHECKOUT_PATH.search(location)
        if not match:
            self.load._fail(
                "checkout",
                to_checkout.status_code,
                "",
                f"not sent to a checkout page: {location[:200]}",
            )
            raise FlowAborted
        session_id = match.group(1)
        page = self.follow("checkout_page", to_checkout).text
        pay_url = urljoin(location, f"/checkout/{session_id}/pay")
        form = {"name": "Load Person"}
        if 'name="email"' in page:
            form["email"] = f"payer-{self.number}@{LOAD_DOMAIN}"
        if self.rng.random() < self.load.decline_share:  # the card is declined; try again
            declined = self.request(
                "checkout_decline",
                "POST",
                pay_url,
                expect=(303,),
                data={**form, "outcome": "decline"},
            )
            self.follow("checkout_page", declined)
        done = self.request(
            "checkout_pay", "POST", pay_url, expect=(303,), data={**form, "outcome": "succeed"}
        )
        self.follow(back_kind + "_back", done)
        return session_id

    def sponsor(self) -> None:
        email = self.load.take_sponsor()
        if email is None:
            return self.browse()
        token, _ = self.form_token("sign_in_form", "/account/sign-in")
        self.request(
            "sign_in",
            "POST",
            "/account/sign-in",
            expect=(302,),
            data={"csrf_token": token, "email": email, "password": SPONSOR_PASSWORD},
        )
        listing = self.request("sponsor", "GET", "/sponsor", expect=(200,)).text
        tokens = PROFILE_LINK.findall(listing)
        if not tokens:
            self.load.result.outcomes["sponsor: no child waiting"] += 1
            return None
        # The first few cards: people choose near the top, so two may race for one child.
        child = self.rng.choice(tokens[:4])
        profile = self.request("profile", "GET", f"/sponsor/{child}", expect=(200, 404))
        if profile.status_code == 404:
            self.load.result.outcomes["sponsor: child taken before choosing"] += 1
            return None
        match = CSRF.search(profile.text)
        if not match:
            self.load._fail("profile", 200, "", "no CSRF token on the profile page")
            raise FlowAborted
        chosen = self.request(
            "sponsor_choose",
            "POST",
            f"/sponsor/{child}/choose",
            expect=(303, 404, 409),
            data={"csrf_token": match.group(1), "currency": "gbp"},
        )
        if chosen.status_code != 303:
            self.load.result.outcomes["sponsor: someone else chose first"] += 1
            return None
        if self.load.abandons_next_hold():
            session = CHECKOUT_PATH.search(chosen.headers["Location"])
            self.follow("checkout_page", chosen)  # looks at the price, and leaves
            if session:
                self.load.result.abandoned_sessions.append(session.group(1))
            self.load.result.outcomes["sponsor: left at checkout (hold expires)"] += 1
            return None
        session_id = self._pay(chosen, "portal")
        self.load.result.paid_sessions.append(session_id)
        self.request("portal", "GET", "/my/sponsorships", expect=(200,))
        self.load.result.outcomes["sponsor: paid"] += 1
        return None

    def replay(self) -> None:
        """A duplicate delivery: the simulator resends an event, or we post one again."""
        listing = self.request(
            "events_list",
            "GET",
            self.load.simulator_url + "/v1/events?limit=50",
            expect=(200,),
            headers={"Authorization": f"Bearer {SIM_KEY}"},
        )
        events = listing.json()["data"]
        if not events:
            return
        event = self.rng.choice(events)
        if self.rng.random() < 0.5:
            self.request(
                "resend",
                "POST",
                f"{self.load.simulator_url}/_sim/events/{event['id']}/resend",
                expect=(200,),
            )
            self.load.result.outcomes["replay: simulator resent"] += 1
            return
        payload = json.dumps(event, indent=2).encode()
        self.request(
            "webhook_duplicate",
            "POST",
            "/stripe/webhook",
            body=payload,
            expect=(200,),
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": sign(payload, self.load.webhook_secret),
            },
        )
        self.load.result.outcomes["replay: posted again"] += 1


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's webhook signature header (v1: HMAC-SHA256 over "timestamp.payload")."""
    timestamp = timestamp or int(time.time())
    digest = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


class Phases:
    """Wall-clock seconds per phase of a system test, printed at the end (where time goes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._name: str | None = None
        self._started = 0.0

    def __call__(self, name: str) -> None:
        """Start phase `name`, ending the one before."""
        now = time.monotonic()
        if self._name is not None:
            self.seconds[self._name] = now - self._started
        self._name, self._started = name, now

    def report(self) -> str:
        self("")
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())


# Seeding ------------------------------------------------------------------------------------


def prepare_database(url: str, sponsors: int, prefix: str = "sponsor") -> list[str]:
    """Migrate the empty database at `url`, add the demo data (`flask demo seed`: campaigns,
    about 60 children from the demo feed, published updates) and `sponsors` verified
    accounts that accepted the current code of conduct, with SPONSOR_PASSWORD hashed at
    CHEAP_ARGON2 cost. One process: the test's own, through the app's own code."""
    from flask_migrate import upgrade

    from config import DevelopmentConfig
    from donorhub import create_app
    from donorhub.accounts import passwords
    from donorhub.accounts.models import User
    from donorhub.database import utcnow
    from donorhub.extensions import db
    from donorhub.sponsorship import conduct
    from donorhub.sponsorship import services as sponsorship

    app = create_app(
        DevelopmentConfig,
        SQLALCHEMY_DATABASE_URI=url,
        LOG_LEVEL="WARNING",
        **{k: int(v) for k, v in CHEAP_ARGON2.items()},
    )
    emails = [f"{prefix}-{n}@{LOAD_DOMAIN}" for n in range(sponsors)]
    with app.app_context():
        upgrade()
        outcome = app.test_cli_runner().invoke(args=["demo", "seed"])
        if outcome.exit_code != 0:
            raise RuntimeError(f"flask demo seed failed: {outcome.output[-2000:]}")
        password_hash = passwords.hash_password(SPONSOR_PASSWORD)
        for n, email in enumerate(emails):
            user = User(
                email=email,
                full_name=f"Load Sponsor {n}",
                password_hash=password_hash,
                email_verified_at=utcnow(),
            )
            db.session.add(user)
            db.session.flush()
            sponsorship.accept_conduct(user, conduct.CURRENT_VERSION)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return emails


# Settling -----------------------------------------------------------------------------------


def wait_for_output(service, words: str, timeout: float = 300) -> None:
    """Until a started process (stack.Service) has printed `words`; fails if it exits.
    `timeout` only bounds a process that hangs."""
    deadline = time.monotonic() + timeout
    while words not in service.output():
        if not service.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} never said {words!r}:\n{service.output()[-2000:]}")
        time.sleep(0.2)


def sim_get(simulator_url: str, path: str) -> dict:
    response = requests.get(
        simulator_url + path, timeout=30, headers={"Authorization": f"Bearer {SIM_KEY}"}
    )
    response.raise_for_status()
    return response.json()


def wait_for_deliveries(simulator_url: str, timeout: float = 300) -> list[dict]:
    """Until the simulator has no event left to deliver (delivered, or given up); `timeout`
    only bounds deliveries that never end (they end in seconds; a busy machine is slower)."""
    deadline = time.monotonic() + timeout
    while True:
        deliveries = sim_get(simulator_url, "/_sim/deliveries")["deliveries"]
        if not any(d["delivery"] == "pending" for d in deliveries) or time.monotonic() > deadline:
            return deliveries
        time.sleep(0.3)


def settle(url: str, simulator_url: str, *, notify: bool = True) -> None:
    """After the load: deliver everything, let the abandoned holds run out and be released
    by the real job, then publish home news and run the notification job twice.

    The jobs run here through `donorhub.jobs.registry.run_job`, as `flask jobs run-once`
    does (without a process start per job)."""
    from config import DevelopmentConfig
    from donorhub import create_app
    from donorhub.extensions import db
    from donorhub.jobs.registry import find_job, run_job

    wait_for_deliveries(simulator_url)
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        # The clock jump: holds still pending are moved past their end, as if
        # SPONSORSHIP_HOLD_MINUTES had passed; the job below does the releasing.
        connection.execute(
            text(
                "UPDATE sponsorships SET hold_expires_at = :past WHERE status = 'pending' "
                "AND hold_expires_at IS NOT NULL"
            ),
            {"past": datetime.now(UTC) - timedelta(seconds=1)},
        )
    app = create_app(
        DevelopmentConfig,
        SQLALCHEMY_DATABASE_URI=url,
        LOG_LEVEL="WARNING",
        STRIPE_API_BASE=simulator_url,
        MAIL_DELIVERY="hold",
    )

    def job(name: str) -> None:
        with app.app_context():
            spec = find_job(name)
        if not run_job(app, spec):
            raise RuntimeError(f"job {name} failed")

    try:
        job("release_sponsorship_holds")
        wait_for_deliveries(simulator_url)
        if notify:
            add_home_news(engine)
            job("publish_updates")
            for _ in range(2):  # the second run must notify nobody again
                job("send_update_notifications")
    finally:
        with app.app_context():
            db.engine.dispose()
        engine.dispose()


def add_home_news(engine) -> None:
    """One approved piece of news per home, as a safeguarding officer would leave it for the
    next publication (the partner's feed is not what is under test here)."""
    stamp = datetime.now(UTC)
    with engine.begin() as connection:
        homes = (
            connection.execute(
                text("SELECT DISTINCT home_code FROM children WHERE status = 'active'")
            )
            .scalars()
            .all()
        )
        for home in homes:
            words = "The home held a sports day, and everyone took part."
            connection.execute(
                text(
                    "INSERT INTO child_updates (source_hash, child_id, home_code, period, category,"
                    " milestones, original_text, approved_text, status, findings, content_hash,"
                    " received_at, reviewed_at) VALUES (:source, NULL, :home, :period, 'programme',"
                    " '[]', :words, :words, 'approved', '[]', :content, :now, :now)"
                ),
                {
                    "source": hashlib.sha256(f"mixed-load-{home}-{stamp}".encode()).hexdigest(),
                    "home": home,
                    "period": f"{stamp.year}-Q{(stamp.month - 1) // 3 + 1}",
                    "words": words,
                    "content": hashlib.sha256(words.encode()).hexdigest(),
                    "now": stamp,
                },
            )


# The accounting -----------------------------------------------------------------------------


@dataclass
class Accounting:
    problems: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.problems.append(message)

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        verdict = (
            ("every gift, plan, hold, receipt, notification and event accounted for exactly once")
            if not self.problems
            else f"{len(self.problems)} discrepancies"
        )
        return f"{counts}\n{verdict}"


def _rows(connection, sql: str, **params) -> list[dict]:
    return [dict(r._mapping) for r in connection.execute(text(sql), params)]


def account(
    url: str, simulator_url: str, load: LoadResult | None = None, *, notified: bool = True
) -> Accounting:
    """Compare the app's database with the simulator's state (see the module docstring)."""
    acc = Accounting()
    sessions = sim_get(simulator_url, "/_sim/objects?type=checkout.session")["objects"]
    invoices = sim_get(simulator_url, "/_sim/objects?type=invoice")["objects"]
    deliveries = sim_get(simulator_url, "/_sim/deliveries")["deliveries"]
    complete = [s for s in sessions if s["status"] == "complete"]
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        gifts = _rows(
            connection,
            "SELECT d.id, d.public_id, d.plan_id, d.status, d.amount_minor,"
            " d.stripe_checkout_session_id AS session, d.stripe_invoice_id AS invoice"
            " FROM donations d JOIN donors o ON o.id = d.donor_id"
            " WHERE o.email LIKE :domain",
            domain=f"%@{LOAD_DOMAIN}",
        )
        plans = {
            r["public_id"]: r
            for r in _rows(
                connection,
                "SELECT p.id, p.public_id, p.status, p.amount_minor, p.designation"
                " FROM recurring_plans p JOIN donors o ON o.id = p.donor_id"
                " WHERE o.email LIKE :domain",
                domain=f"%@{LOAD_DOMAIN}",
            )
        }
        sponsorships = {
            r["public_id"]: r
            for r in _rows(
                connection,
                "SELECT s.id, s.public_id, s.status, s.amount_minor, s.child_id,"
                " s.stripe_checkout_session_id AS session, s.ended_at, p.status AS plan_status,"
                " p.public_id AS plan_public_id, (SELECT count(*) FROM sponsorship_places sp"
                " WHERE sp.sponsorship_id = s.id) AS places FROM sponsorships s"
                " JOIN users u ON u.id = s.user_id LEFT JOIN recurring_plans p ON p.id = s.plan_id"
                " WHERE u.email LIKE :domain",
                domain=f"%@{LOAD_DOMAIN}",
            )
        }
        receipts = Counter(
            r["donation_id"] for r in _rows(connection, "SELECT donation_id FROM receipts")
        )
        receipt_mail = Counter(
            r["subject"]
            for r in _rows(
                connection,
                "SELECT subject FROM outbox_messages WHERE template = 'donations/receipt'"
                " AND recipient LIKE :domain",
                domain=f"%@{LOAD_DOMAIN}",
            )
        )
        numbers = {
            r["donation_id"]: r["number"]
            for r in _rows(connection, "SELECT donation_id, number FROM receipts")
        }
        events = Counter(
            r["event_id"] for r in _rows(connection, "SELECT event_id FROM stripe_events")
        )
        places_per_child = _rows(
            connection,
            "SELECT child_id, count(*) AS n FROM"
            " sponsorship_places GROUP BY child_id HAVING count(*) > 1",
        )
        news_mail = Counter(
            r["recipient"]
            for r in _rows(
                connection,
                "SELECT recipient FROM outbox_messages WHERE template = 'updates/new_update'",
            )
        )
        notifications = Counter(
            (r["user_id"], r["publication_id"])
            for r in _rows(connection, "SELECT user_id, publication_id FROM update_notifications")
        )
        expected_news = {
            r["email"]
            for r in _rows(
                connection,
                "SELECT DISTINCT u.email FROM sponsorships s JOIN users u"
                " ON u.id = s.user_id JOIN child_releases r ON r.child_id = s.child_id"
                " WHERE s.status IN ('active', 'past_due') AND r.updates_allowed",
            )
        }
        half_applied = _rows(
            connection, "SELECT event_id FROM stripe_events WHERE processed_at IS NULL"
        )
    engine.dispose()

    by_session: dict[str, list[dict]] = defaultdict(list)
    for gift in gifts:
        if gift["session"]:
            by_session[gift["session"]].append(gift)
    by_invoice: dict[str, list[dict]] = defaultdict(list)
    for gift in gifts:
        if gift["invoice"]:
            by_invoice[gift["invoice"]].append(gift)
    paid_invoices = {i["id"]: i for i in invoices if i["status"] == "paid"}
    completed_ids = {s["id"] for s in complete}
    sponsorship_sessions: dict[str, list[str]] = defaultdict(list)

    # Every completed checkout: exactly one effect in the app, with the same amount.
    for session in complete:
        meta = session.get("metadata") or {}
        if "donation" in meta:
            found = [g for g in by_session.get(session["id"], []) if g["plan_id"] is None]
            acc.check(len(found) == 1, f"checkout {session['id']}: {len(found)} gifts")
            if found:
                gift = found[0]
                acc.check(
                    gift["public_id"] == meta["donation"],
                    f"checkout {session['id']}: paid gift is not the one it was for",
                )
                acc.check(
                    gift["status"] == "paid",
                    f"gift {gift['public_id']}: {gift['status']}, checkout complete",
                )
                acc.check(
                    gift["amount_minor"] == session["amount_total"],
                    f"gift {gift['public_id']}: {gift['amount_minor']} in the app, "
                    f"{session['amount_total']} charged",
                )
            acc.counts["one-off gifts paid"] += 1
        elif "plan" in meta:
            plan = plans.get(meta["plan"])
            acc.check(plan is not None, f"checkout {session['id']}: no plan {meta['plan']}")
            if plan:
                acc.check(
                    plan["status"] == "active",
                    f"plan {plan['public_id']}: {plan['status']}, checkout complete",
                )
                acc.check(
                    plan["amount_minor"] == session["amount_total"],
                    f"plan {plan['public_id']}: amount differs from the checkout",
                )
            acc.counts["monthly plans started"] += 1
        elif "sponsorship" in meta:
            sponsorship_sessions[meta["sponsorship"]].append(session["id"])
            row = sponsorships.get(meta["sponsorship"])
            acc.check(row is not None, f"checkout {session['id']}: no sponsorship")
            if row:
                acc.check(
                    row["status"] == "active" and row["plan_status"] == "active",
                    f"sponsorship {row['public_id']}: {row['status']}/"
                    f"{row['plan_status']}, checkout complete",
                )
                acc.check(
                    row["places"] == 1, f"sponsorship {row['public_id']}: {row['places']} places"
                )
                acc.check(
                    row["amount_minor"] == session["amount_total"],
                    f"sponsorship {row['public_id']}: amount differs from checkout",
                )
            acc.counts["sponsorships paid"] += 1
        else:
            acc.problems.append(f"checkout {session['id']}: metadata names nothing of ours")

    # Every first invoice of a plan: exactly one instalment gift, the same amount.
    for invoice in paid_invoices.values():
        found = by_invoice.get(invoice["id"], [])
        acc.check(len(found) == 1, f"invoice {invoice['id']}: {len(found)} instalment gifts")
        if found:
            acc.check(
                found[0]["status"] == "paid" and found[0]["amount_minor"] == invoice["amount_paid"],
                f"instalment {found[0]['public_id']}: {found[0]['status']} "
                f"{found[0]['amount_minor']} vs {invoice['amount_paid']} paid",
            )
        acc.counts["instalments paid"] += 1

    # Every gift the app calls paid: one completed payment at the simulator.
    for gift in gifts:
        if gift["status"] != "paid":
            acc.check(
                receipts.get(gift["id"], 0) == 0,
                f"gift {gift['public_id']} is {gift['status']} but has a receipt",
            )
            continue
        if gift["plan_id"] is None:
            acc.check(
                gift["session"] in completed_ids,
                f"gift {gift['public_id']} paid without a completed checkout",
            )
        else:
            acc.check(
                gift["invoice"] in paid_invoices,
                f"instalment {gift['public_id']} paid without a paid invoice",
            )
        acc.check(
            receipts.get(gift["id"], 0) == 1,
            f"gift {gift['public_id']}: {receipts.get(gift['id'], 0)} receipts",
        )
        number = numbers.get(gift["id"])
        mails = receipt_mail.get(f"Thank you: your receipt {number}", 0) if number else 0
        acc.check(mails == 1, f"gift {gift['public_id']}: receipt e-mail queued {mails} times")
        acc.counts["receipts queued once"] += int(mails == 1)

    # Every hold: converted once (active, one place, one paid checkout) or released once.
    for public_id, row in sponsorships.items():
        paid = sponsorship_sessions.get(public_id, [])
        if row["status"] == "active":
            acc.check(len(paid) == 1, f"sponsorship {public_id}: active, {len(paid)} payments")
            acc.counts["holds converted"] += 1
        elif row["status"] == "expired":
            acc.check(
                not paid and row["places"] == 0 and row["ended_at"] is not None,
                f"sponsorship {public_id}: expired with {len(paid)} payments, "
                f"{row['places']} places",
            )
            acc.counts["holds released"] += 1
        else:
            acc.problems.append(f"sponsorship {public_id}: left {row['status']}")
    acc.check(
        not places_per_child, f"children with more places than sponsors allowed: {places_per_child}"
    )

    # Stripe events: every event the simulator made is stored exactly once.
    sim_events = {d["id"] for d in deliveries}
    undelivered = [d for d in deliveries if d["delivery"] != "delivered"]
    acc.check(
        not undelivered,
        f"{len(undelivered)} events never delivered: "
        f"{[(d['id'], d['delivery'], d['last_error']) for d in undelivered[:5]]}",
    )
    missing = sim_events - set(events)
    acc.check(not missing, f"{len(missing)} simulator events not stored: {sorted(missing)[:5]}")
    twice = [e for e, n in events.items() if n > 1]
    acc.check(not twice, f"events stored twice: {twice[:5]}")
    acc.check(not half_applied, f"events stored but not processed: {half_applied[:5]}")
    acc.counts["events stored once"] = len(sim_events & set(events))
    acc.counts["deliveries (with redeliveries)"] = sum(d["attempts"] for d in deliveries)

    if notified:
        for email in expected_news:
            acc.check(
                news_mail.get(email, 0) == 1,
                f"news notification queued {news_mail.get(email, 0)} times for a sponsor",
            )
        strays = set(news_mail) - expected_news
        acc.check(not strays, f"{len(strays)} people notified who sponsor nobody")
        acc.check(
            all(n == 1 for n in notifications.values()),
            "a notification was recorded twice for one person and publication",
        )
        acc.counts["sponsors notified once"] = sum(
            1 for e in expected_news if news_mail.get(e) == 1
        )

    if load is not None:
        unpaid = set(load.paid_sessions) - completed_ids
        acc.check(
            not unpaid, f"{len(unpaid)} checkouts the people paid are not complete at the simulator"
        )
    return acc
