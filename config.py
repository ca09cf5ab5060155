"""Settings for DonorHub: one class per environment, every value overridable from the environment.

`DONORHUB_ENV` picks the class (development, testing, production). Production refuses to start
with unsafe values; see `ProductionConfig.check`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("DONORHUB_INSTANCE_DIR", BASE_DIR / "instance"))

#: Published in the repository, so never acceptable outside development. These are string
#: constants on purpose: a value read from the environment must never land in the list of
#: published keys (the operator's real key would then be refused as "published").
DEVELOPMENT_SECRET_KEY = "dev-only-not-secret-0123456789abcdef0123456789abcdef"  # noqa: S105
TESTING_SECRET_KEY = "testing-secret-key-0123456789abcdef0123456789"  # noqa: S105
DEVELOPMENT_PSEUDONYM_KEY = "development-only-pseudonym-key-not-secret"
TESTING_PSEUDONYM_KEY = "testing-pseudonym-key-0123456789abcdef"
DEVELOPMENT_WEBHOOK_SECRET = "whsec_development_only"  # noqa: S105
TESTING_WEBHOOK_SECRET = "whsec_testing_only"  # noqa: S105
MIN_SECRET_KEY_LENGTH = 32
#: A secret made of fewer distinct characters than this is not random ('a' * 32, 'abab…').
MIN_SECRET_DISTINCT_CHARACTERS = 10
#: Stripe's signing secrets are "whsec_" and 32 or more random characters; fewer than this
#: after the prefix is not one Stripe issued.
MIN_WEBHOOK_SECRET_LENGTH = 24
#: Requests larger than this are refused (413) before their body is read.
DEFAULT_MAX_CONTENT_LENGTH = 2 * 1024 * 1024
#: The larger allowance of the named staff upload routes (`donorhub.security.staff_upload`).
DEFAULT_MAX_UPLOAD_LENGTH = 20 * 1024 * 1024


class UnsafeConfiguration(RuntimeError):
    """The configuration must not be used for this environment; the message says what to set."""


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def parse_homes(text: str) -> dict[str, str]:
    homes = {}
    for item in env_list_of(text):
        code, _, region = item.partition("=")
        if not code.strip() or not region.strip():
            raise UnsafeConfiguration(
                "FEED_HOMES must look like 'MH-01=Maharashtra,WB-01=West Bengal'."
            )
        homes[code.strip()] = region.strip()
    return homes


def env_list_of(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def normalise_database_url(url: str) -> str:
    """Send bare PostgreSQL URLs to psycopg 3, which is the driver this project installs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def default_sqlite_url() -> str:
    return f"sqlite:///{INSTANCE_DIR / 'donorhub.sqlite3'}"


class Config:
    ENV_NAME = "base"
    DEBUG = False
    TESTING = False

    SECRET_KEY = os.environ.get("SECRET_KEY", "")
    #: Earlier secret keys, comma-separated, still accepted after a rotation (Flask's session
    #: cookie, staff recovery codes); new values are always made with SECRET_KEY.
    SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS")
    SQLALCHEMY_DATABASE_URI = normalise_database_url(
        os.environ.get("DATABASE_URL", "") or default_sqlite_url()
    )
    #: hide_parameters: a database error message must not carry names, e-mails or texts
    #: from the statement into the logs.
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True, "hide_parameters": True}
    #: The address that links in e-mails point at; never taken from the request's Host header.
    PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    PREFERRED_URL_SCHEME = "https"
    #: Number of reverse proxies in front of the app whose X-Forwarded-* headers are trusted.
    PROXY_COUNT = env_int("PROXY_COUNT", 0)

    CHARITY_NAME = os.environ.get("CHARITY_NAME", "Safe Harbour Children's Trust")
    CHARITY_REGISTRATION = os.environ.get("CHARITY_REGISTRATION", "Registered charity 1234567")

    # Sessions: the cookie carries a per-user version, so the server can end every session.
    SESSION_COOKIE_NAME = "__Host-session"
    SESSION_COOKIE_SECURE = True
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_NAME = "__Host-remember"
    REMEMBER_COOKIE_SECURE = True
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_DURATION = timedelta(days=env_int("REMEMBER_DAYS", 30))
    PERMANENT_SESSION_LIFETIME = timedelta(hours=12)
    SESSION_IDLE_MINUTES = env_int("SESSION_IDLE_MINUTES", 60)
    STAFF_SESSION_IDLE_MINUTES = env_int("STAFF_SESSION_IDLE_MINUTES", 30)
    SESSION_ABSOLUTE_HOURS = env_int("SESSION_ABSOLUTE_HOURS", 12)

    WTF_CSRF_TIME_LIMIT = 3600
    WTF_CSRF_SSL_STRICT = True

    PASSWORD_MIN_LENGTH = env_int("PASSWORD_MIN_LENGTH", 12)
    PASSWORD_MAX_LENGTH = 256
    #: argon2id parameters (RFC 9106 low-memory profile; OWASP minimum is m=19 MiB, t=2).
    ARGON2_TIME_COST = env_int("ARGON2_TIME_COST", 3)
    ARGON2_MEMORY_COST = env_int("ARGON2_MEMORY_COST", 65536)
    ARGON2_PARALLELISM = env_int("ARGON2_PARALLELISM", 4)
    RESET_TOKEN_MAX_AGE = timedelta(hours=1)
    VERIFY_TOKEN_MAX_AGE = timedelta(days=7)
    TOTP_ISSUER = os.environ.get("TOTP_ISSUER", "DonorHub")

    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_HEADERS_ENABLED = True
    RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
    RATELIMIT_SIGN_IN = os.environ.get("RATELIMIT_SIGN_IN", "10 per minute;50 per hour")
    RATELIMIT_REGISTER = os.environ.get("RATELIMIT_REGISTER", "5 per minute;30 per hour")
    RATELIMIT_RESET = os.environ.get("RATELIMIT_RESET", "5 per minute;30 per hour")
    RATELIMIT_TOTP = os.environ.get("RATELIMIT_TOTP", "6 per minute")
    #: Second-factor attempts per ACCOUNT, whatever the client address (docs/security.md).
    RATELIMIT_TOTP_ACCOUNT = os.environ.get("RATELIMIT_TOTP_ACCOUNT", "10 per hour;20 per day")
    #: Re-entering the current password (change e-mail or password, delete the account,
    #: new recovery codes): per client address and per account.
    RATELIMIT_REAUTH = os.environ.get("RATELIMIT_REAUTH", "5 per minute;20 per hour")
    #: Wrong codes in a row that end every pending staff sign-in (password again).
    MFA_MAX_FAILURES = env_int("MFA_MAX_FAILURES", 5)
    #: Wrong current passwords in a row that end every session of the account.
    REAUTH_MAX_FAILURES = env_int("REAUTH_MAX_FAILURES", 5)
    #: Reset and "already registered" mails to one address, per kind, per hour (from any
    #: number of client addresses); more requests are answered the same and send nothing.
    MAIL_PER_RECIPIENT_PER_HOUR = env_int("MAIL_PER_RECIPIENT_PER_HOUR", 3)
    #: Choosing a child to sponsor (each choice holds a place): per client address, and
    #: per account.
    RATELIMIT_CHOOSE = os.environ.get("RATELIMIT_CHOOSE", "10 per minute;30 per hour")
    RATELIMIT_CHOOSE_ACCOUNT = os.environ.get(
        "RATELIMIT_CHOOSE_ACCOUNT", "5 per minute;20 per hour"
    )

    #: "smtp" delivers; "hold" keeps mail in the outbox (development: nothing leaves the machine).
    MAIL_DELIVERY = os.environ.get("MAIL_DELIVERY", "smtp")
    MAIL_SERVER = os.environ.get("MAIL_SERVER", "127.0.0.1")
    MAIL_PORT = env_int("MAIL_PORT", 25)
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME", "")
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD", "")
    MAIL_USE_TLS = env_bool("MAIL_USE_TLS", False)
    MAIL_FROM = os.environ.get("MAIL_FROM", "DonorHub <hello@donorhub.invalid>")
    MAIL_TIMEOUT_SECONDS = env_int("MAIL_TIMEOUT_SECONDS", 20)
    MAIL_MAX_ATTEMPTS = env_int("MAIL_MAX_ATTEMPTS", 8)
    MAIL_BATCH_SIZE = env_int("MAIL_BATCH_SIZE", 50)
    DATA_PROTECTION_EMAIL = os.environ.get("DATA_PROTECTION_EMAIL", "privacy@donorhub.invalid")

    #: Requests with a larger body are answered 413 before the body is read; the staff
    #: upload routes (`donorhub.security.staff_upload`) get MAX_UPLOAD_LENGTH instead.
    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH)
    MAX_UPLOAD_LENGTH = env_int("MAX_UPLOAD_LENGTH", DEFAULT_MAX_UPLOAD_LENGTH)

    STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
    #: Production refuses Stripe test keys (sk_test_, rk_test_) and STRIPE_API_BASE unless
    #: this is on: a staging site taking test payments, or the production stack test.
    ALLOW_STRIPE_TEST_MODE = env_bool("ALLOW_STRIPE_TEST_MODE", False)

    # --- Donations and payments (issue 3) ------------------------------------------------
    # Every value is documented in docs/configuration.md. Money is in minor units.
    #: Where API calls go instead of Stripe: the local Stripe simulator. Used without
    #: STRIPE_SECRET_KEY (development's default below), or with a test key when
    #: ALLOW_STRIPE_TEST_MODE is on. Empty: Stripe itself.
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "").rstrip("/")
    STRIPE_SIMULATOR_PORT = env_int("STRIPE_SIMULATOR_PORT", 12111)
    #: Seconds per HTTP call to Stripe, and the library's own retries on top (same key).
    STRIPE_TIMEOUT_SECONDS = env_int("STRIPE_TIMEOUT_SECONDS", 10)
    STRIPE_MAX_NETWORK_RETRIES = env_int("STRIPE_MAX_NETWORK_RETRIES", 2)
    #: A webhook signed further than this from now (past or future) is refused.
    STRIPE_WEBHOOK_TOLERANCE_SECONDS = env_int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300)
    #: How long a Checkout Session stays open (Stripe allows 30 minutes to 24 hours).
    CHECKOUT_EXPIRY_MINUTES = env_int("CHECKOUT_EXPIRY_MINUTES", 60)
    #: Smallest and largest total per payment (gift plus any fee cover) per currency, and the
    #: preset amounts the form offers. Stripe charges at most 99,999,999 minor units in one
    #: payment (₹9,99,999.99), so the rupee maximum is ₹9,99,999.
    DONATION_LIMITS: dict = {
        "gbp": (200, 2_500_000),
        "usd": (200, 3_000_000),
        "eur": (200, 3_000_000),
        "inr": (10_000, 99_999_900),
    }
    DONATION_PRESETS: dict = {
        "gbp": (1000, 2500, 5000, 10000),
        "usd": (1000, 2500, 5000, 10000),
        "eur": (1000, 2500, 5000, 10000),
        "inr": (50_000, 100_000, 250_000, 500_000),
    }
    DONATION_DEFAULT_CURRENCY = os.environ.get("DONATION_DEFAULT_CURRENCY", "gbp")
    #: Reports and converted campaign totals are in this currency (staff set the rates).
    REPORTING_CURRENCY = os.environ.get("REPORTING_CURRENCY", "gbp")
    #: Access-Control-Allow-Origin of the public campaign totals API (GET only, no cookies).
    CAMPAIGN_API_ALLOWED_ORIGINS = os.environ.get("CAMPAIGN_API_ALLOWED_ORIGINS", "*")
    #: "Cover the fees": (percent in basis points, fixed fee in minor units) per currency.
    DONATION_FEE_COVER: dict = {
        "gbp": (150, 20),
        "eur": (150, 25),
        "usd": (290, 30),
        "inr": (300, 0),
    }
    #: The Gift Aid declaration wording in force (texts live in donorhub/donations/giftaid.py).
    GIFT_AID_DECLARATION_VERSION = os.environ.get("GIFT_AID_DECLARATION_VERSION", "2026-01")
    #: How long the pause/cancel link in a receipt works.
    PLAN_MANAGE_LINK_MAX_AGE = timedelta(days=env_int("PLAN_MANAGE_LINK_DAYS", 400))
    #: Reconciliation: how often the job runs, and how far back it looks the first time.
    STRIPE_RECONCILE_INTERVAL_MINUTES = env_int("STRIPE_RECONCILE_INTERVAL_MINUTES", 15)
    STRIPE_RECONCILE_LOOKBACK_HOURS = env_int("STRIPE_RECONCILE_LOOKBACK_HOURS", 72)
    #: The webhook stores each event and answers; a worker applies it (docs/architecture.md).
    #: A failing event is tried again after BASE seconds, doubled per try up to MAX, and
    #: after MAX_ATTEMPTS tries it is a dead letter for staff (docs/operations.md).
    WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 10)
    WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 30)
    WEBHOOK_RETRY_MAX_SECONDS = env_int("WEBHOOK_RETRY_MAX_SECONDS", 3600)
    #: Events the worker applies per commit (each in a savepoint of its own).
    WEBHOOK_BATCH_SIZE = env_int("WEBHOOK_BATCH_SIZE", 50)
    #: How often the worker looks for due events without being woken: SQLite has no
    #: LISTEN/NOTIFY, and on PostgreSQL it is the safety net (and retries come due).
    WEBHOOK_WORKER_POLL_SECONDS = float(os.environ.get("WEBHOOK_WORKER_POLL_SECONDS") or 1.0)
    # --- end of donations and payments ----------------------------------------------------

    # --- Sponsorship (issue 5; docs/sponsorship.md) ---------------------------------------
    #: How many sponsors one child may have at once; the database enforces it (places).
    SPONSORS_PER_CHILD = env_int("SPONSORS_PER_CHILD", 1)
    #: How long choosing a child holds the place while the sponsor completes Checkout.
    SPONSORSHIP_HOLD_MINUTES = env_int("SPONSORSHIP_HOLD_MINUTES", 15)
    #: Holds an account may let run out unpaid in 24 hours before it must wait.
    SPONSORSHIP_HOLD_TIMEOUTS_PER_DAY = env_int("SPONSORSHIP_HOLD_TIMEOUTS_PER_DAY", 3)
    #: Days a sponsorship may stay past due before it lapses and the child is listed again.
    SPONSORSHIP_GRACE_DAYS = env_int("SPONSORSHIP_GRACE_DAYS", 14)
    #: The monthly sponsorship, in minor units per currency (fixed: sponsors do not choose it).
    SPONSORSHIP_MONTHLY_AMOUNTS: dict = {"gbp": 2500, "usd": 3000, "eur": 3000, "inr": 150_000}
    SPONSORSHIP_JOBS_INTERVAL_MINUTES = env_int("SPONSORSHIP_JOBS_INTERVAL_MINUTES", 5)
    # --- end of sponsorship ---------------------------------------------------------------

    JOBS_LOCK_ID = 7_400_417  # PostgreSQL advisory lock key; any constant unique to this app
    JOBS_MAIL_INTERVAL_SECONDS = env_int("JOBS_MAIL_INTERVAL_SECONDS", 30)

    # The partner feed (docs/feed-contract.md) and the release checks ------------------------
    FEED_PARTNER = os.environ.get("FEED_PARTNER", "mumbai-safe-homes")
    #: Home code -> the state or union territory it is in: "MH-01=Maharashtra,WB-01=...".
    FEED_HOMES = parse_homes(
        os.environ.get(
            "FEED_HOMES", "MH-01=Maharashtra,MH-02=Maharashtra,WB-01=West Bengal,DL-01=Delhi"
        )
    )
    FEED_DIR = os.environ.get("FEED_DIR", "")
    FEED_URL = os.environ.get("FEED_URL", "")
    FEED_TOKEN = os.environ.get("FEED_TOKEN", "")
    FEED_TIMEOUT_SECONDS = env_int("FEED_TIMEOUT_SECONDS", 30)
    FEED_MAX_BYTES = env_int("FEED_MAX_BYTES", 50 * 1024 * 1024)
    #: Keys the HMAC of the partner's references; losing it orphans every child record.
    FEED_PSEUDONYM_KEY = os.environ.get("FEED_PSEUDONYM_KEY", "")
    FEED_IMPORT_MINUTES = env_int("FEED_IMPORT_MINUTES", 60)
    #: K of the k-anonymity release check and of small-cell suppression.
    RELEASE_K = env_int("RELEASE_K", 5)
    #: The fixed public schedule of releases (docs/safeguarding.md): what the public sees of
    #: the children changes only then. Weekday 0 is Monday.
    RELEASE_PUBLISH_WEEKDAY = env_int("RELEASE_PUBLISH_WEEKDAY", 0)
    RELEASE_PUBLISH_HOUR = env_int("RELEASE_PUBLISH_HOUR", 4)
    RELEASE_PUBLISH_TIMEZONE = os.environ.get("RELEASE_PUBLISH_TIMEZONE", "Europe/London")
    EXIT_NOTICE_MIN_DAYS = env_int("EXIT_NOTICE_MIN_DAYS", 7)
    EXIT_NOTICE_MAX_DAYS = env_int("EXIT_NOTICE_MAX_DAYS", 21)
    #: Approved updates are released together: "quarterly" (on this day of January, April,
    #: July and October) or "monthly" (on this day of every month).
    UPDATES_PUBLICATION_CADENCE = os.environ.get("UPDATES_PUBLICATION_CADENCE", "quarterly")
    UPDATES_PUBLICATION_DAY = env_int("UPDATES_PUBLICATION_DAY", 15)
    #: Updates made only of milestone codes (DonorHub's own sentences) skip the officer.
    UPDATES_AUTO_APPROVE_CODED = env_bool("UPDATES_AUTO_APPROVE_CODED", False)

    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
    #: Extra origins that forms may submit to or be redirected to (Stripe Checkout).
    CSP_FORM_ACTION = env_list("CSP_FORM_ACTION", "https://checkout.stripe.com")
    HSTS = False

    @staticmethod
    def check(config: Mapping[str, Any]) -> None:
        """Raise UnsafeConfiguration when a value makes this environment unsafe."""


class DevelopmentConfig(Config):
    ENV_NAME = "development"
    SECRET_KEY = os.environ.get("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
    # Plain-HTTP on 127.0.0.1: a Secure cookie or __Host- name would not survive there.
    SESSION_COOKIE_NAME = "donorhub_session"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_NAME = "donorhub_remember"
    REMEMBER_COOKIE_SECURE = False
    WTF_CSRF_SSL_STRICT = False
    PREFERRED_URL_SCHEME = "http"
    MAIL_DELIVERY = os.environ.get("MAIL_DELIVERY", "hold")
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", DEVELOPMENT_WEBHOOK_SECRET)
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111").rstrip("/")
    FEED_PSEUDONYM_KEY = os.environ.get("FEED_PSEUDONYM_KEY", DEVELOPMENT_PSEUDONYM_KEY)
    FEED_DIR = os.environ.get("FEED_DIR", str(INSTANCE_DIR / "feed-drop"))
    # The donate form redirects to the local Stripe simulator's checkout page.
    CSP_FORM_ACTION = env_list(
        "CSP_FORM_ACTION", "https://checkout.stripe.com,http://127.0.0.1:12111"
    )


class TestingConfig(DevelopmentConfig):
    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = TESTING_SECRET_KEY
    SECRET_KEY_FALLBACKS: list[str] = []
    SQLALCHEMY_DATABASE_URI = "sqlite://"
    MAIL_DELIVERY = "smtp"
    MAIL_PORT = 0
    # Cheap hashes keep the suite fast; the production parameters have their own test.
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_COST = 8192
    ARGON2_PARALLELISM = 1
    RATELIMIT_STORAGE_URI = "memory://"
    # Property tests choose children dozens of times from one account; the limit on
    # choosing has its own test, with its own low limits.
    RATELIMIT_CHOOSE = RATELIMIT_CHOOSE_ACCOUNT = "1000 per minute"
    STRIPE_WEBHOOK_SECRET = TESTING_WEBHOOK_SECRET
    PUBLIC_BASE_URL = "http://donorhub.test"
    FEED_PSEUDONYM_KEY = TESTING_PSEUDONYM_KEY
    FEED_DIR = ""


def too_little_variety(value: str) -> bool:
    """True for a value that is plainly not random: one character repeated, 'abab…'."""
    return len(set(value)) < MIN_SECRET_DISTINCT_CHARACTERS


def is_stripe_test_key(key: str) -> bool:
    return key.startswith(("sk_test_", "rk_test_"))


def check_secret_key(name: str, key: str) -> None:
    """Refuse a published, short or low-variety secret key, naming the setting."""
    if key in KNOWN_TEST_KEYS or "changeme" in key.lower().replace("-", "").replace("_", ""):
        raise UnsafeConfiguration(
            f"{name} is a published default: set it to a new random "
            "value of at least 32 characters."
        )
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise UnsafeConfiguration(
            f"{name} is too short: set it to a random value of at "
            f"least {MIN_SECRET_KEY_LENGTH} characters."
        )
    if too_little_variety(key):
        raise UnsafeConfiguration(
            f"{name} is not random (too few distinct characters): "
            "set it to a value from secrets.token_urlsafe(48)."
        )


class ProductionConfig(Config):
    ENV_NAME = "production"
    HSTS = True

    @staticmethod
    def check(config: Mapping[str, Any]) -> None:
        """Refuse to start, with one sentence naming the setting, when a value is unsafe."""
        if os.environ.get("DONORHUB_TEST_PARK_AT", "").strip():
            raise UnsafeConfiguration(
                "DONORHUB_TEST_PARK_AT is set: it parks processes for the "
                "fault tests to kill; unset every DONORHUB_TEST_PARK_* "
                "variable in production."
            )
        key = config.get("SECRET_KEY") or ""
        if not key:
            raise UnsafeConfiguration(
                "SECRET_KEY is not set: set it to a random value of at "
                "least 32 characters, e.g. from `python -c 'import "
                "secrets; print(secrets.token_urlsafe(48))'`."
            )
        check_secret_key("SECRET_KEY", key)
        for fallback in config.get("SECRET_KEY_FALLBACKS") or []:
            # An old key accepted still signs in: it must be as strong as the current one.
            check_secret_key("SECRET_KEY_FALLBACKS", str(fallback))
        if config.get("DEBUG") or env_bool("FLASK_DEBUG", False):
            raise UnsafeConfiguration(
                "DEBUG is on: unset FLASK_DEBUG in production, because the "
                "debugger runs any code a visitor sends."
            )
        if str(config.get("SQLALCHEMY_DATABASE_URI", "")).startswith("sqlite"):
            raise UnsafeConfiguration(
                "DATABASE_URL points at SQLite: set it to a PostgreSQL URL "
                "(postgresql+psycopg://user:password@host/dbname)."
            )
        base_url = str(config.get("PUBLIC_BASE_URL") or "")
        if not base_url.startswith("https://") or len(base_url) <= len("https://"):
            raise UnsafeConfiguration(
                "PUBLIC_BASE_URL must be the site's https:// address "
                "(e.g. https://give.example.org): links in e-mails use it."
            )
        webhook_secret = config.get("STRIPE_WEBHOOK_SECRET") or ""
        if not webhook_secret:
            raise UnsafeConfiguration(
                "STRIPE_WEBHOOK_SECRET is not set: copy the signing secret "
                "(whsec_...) of your Stripe webhook endpoint into it."
            )
        if webhook_secret in KNOWN_TEST_KEYS:
            raise UnsafeConfiguration(
                "STRIPE_WEBHOOK_SECRET is a value published in this "
                "repository: copy your endpoint's signing secret into it."
            )
        random_part = webhook_secret.removeprefix("whsec_")
        if (
            not webhook_secret.startswith("whsec_")
            or len(random_part) < MIN_WEBHOOK_SECRET_LENGTH
            or too_little_variety(random_part)
        ):
            raise UnsafeConfiguration(
                f"STRIPE_WEBHOOK_SECRET is not a Stripe signing secret "
                f"(whsec_ and at least {MIN_WEBHOOK_SECRET_LENGTH} random "
                f"characters): copy your endpoint's secret into it."
            )
        stripe_key = config.get("STRIPE_SECRET_KEY") or ""
        if not stripe_key:
            raise UnsafeConfiguration(
                "STRIPE_SECRET_KEY is not set: copy your Stripe secret "
                "key (sk_live_... or rk_live_...) into it."
            )
        test_mode = bool(config.get("ALLOW_STRIPE_TEST_MODE"))
        if is_stripe_test_key(stripe_key) and not test_mode:
            raise UnsafeConfiguration(
                "STRIPE_SECRET_KEY is a test key: use the live key "
                "(sk_live_... or rk_live_...), or set "
                "ALLOW_STRIPE_TEST_MODE=true on a test site."
            )
        if not stripe_key.startswith(("sk_live_", "rk_live_")) and not is_stripe_test_key(
            stripe_key
        ):
            raise UnsafeConfiguration(
                "STRIPE_SECRET_KEY is not a Stripe secret key: copy your "
                "key (sk_live_... or rk_live_...) into it."
            )
        if config.get("STRIPE_API_BASE") and not (test_mode and is_stripe_test_key(stripe_key)):
            raise UnsafeConfiguration(
                "STRIPE_API_BASE is set: unset it, because live payments "
                "go to Stripe itself (it is for ALLOW_STRIPE_TEST_MODE "
                "with a test key only)."
            )
        pseudonym_key = config.get("FEED_PSEUDONYM_KEY") or ""
        if (
            len(pseudonym_key) < MIN_SECRET_KEY_LENGTH
            or pseudonym_key in KNOWN_TEST_KEYS
            or too_little_variety(pseudonym_key)
        ):
            raise UnsafeConfiguration(
                "FEED_PSEUDONYM_KEY is missing, short or published: set "
                "it to a random value of at least 32 characters and "
                "keep it with the database backups."
            )
        feed_url = config.get("FEED_URL") or ""
        if feed_url and not feed_url.startswith("https://"):
            raise UnsafeConfiguration("FEED_URL must start with https:// in production.")
        if not config.get("RATELIMIT_ENABLED", True):
            raise UnsafeConfiguration(
                "RATELIMIT_ENABLED is off: unset it in production, "
                "because sign-in and reset limits stop password guessing."
            )
        if str(config.get("RATELIMIT_STORAGE_URI", "")).startswith("memory"):
            raise UnsafeConfiguration(
                "RATELIMIT_STORAGE_URI is in-process memory: set it to "
                "Redis (redis://host:6379/0) so limits hold across workers."
            )
        if config.get("MAIL_DELIVERY") != "smtp":
            raise UnsafeConfiguration(
                "MAIL_DELIVERY must be smtp in production (hold keeps "
                "every message, reset links included, in the outbox)."
            )
        if not config.get("MAX_CONTENT_LENGTH"):
            raise UnsafeConfiguration(
                "MAX_CONTENT_LENGTH is not set: unset the variable to "
                "keep the 2 MB limit on request bodies."
            )


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_for_environment() -> type[Config]:
    name = os.environ.get("DONORHUB_ENV", "development").strip().lower()
    try:
        return CONFIGS[name]
    except KeyError:
        raise UnsafeConfiguration(
            f"DONORHUB_ENV must be one of {', '.join(CONFIGS)}, not {name!r}."
        ) from None


#: Keys that appear in this repository, and so can never protect a real deployment. Built
#: from the string constants above only, never from a class attribute (those read the
#: environment). tests/security/test_production_environment.py finds every secret-looking
#: literal in the repository and proves production refuses each.
KNOWN_TEST_KEYS = frozenset(
    {
        DEVELOPMENT_SECRET_KEY,
        TESTING_SECRET_KEY,
        DEVELOPMENT_PSEUDONYM_KEY,
        TESTING_PSEUDONYM_KEY,
        DEVELOPMENT_WEBHOOK_SECRET,
        TESTING_WEBHOOK_SECRET,
    }
)
