"""Settings, all from the environment (django-environ).

The embedded default needs no variable at all: a SQLite file beside the project and the django-q2 ORM
broker. Production sets DEBUG=false, SECRET_KEY, ALLOWED_HOSTS and usually DATABASE_URL and REDIS_URL.
"""

from __future__ import annotations

import datetime as dt
import os
import string
from pathlib import Path

import environ
from csp import constants as csp_constants
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)

if DEBUG:
    # A fixed key is acceptable only for the embedded development mode.
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-key-not-for-production-0123456789-abcdefghijklmnop")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set in the environment when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "backoffice.apps.BackofficeConfig",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "django_q",
    "import_export",
    "anymail",
    "core.apps.CoreConfig",
    "loans.apps.LoansConfig",
    "notifications.apps.NotificationsConfig",
    "debt_collection.apps.DebtCollectionConfig",
    "strategy.apps.StrategyConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout raised during authentication into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out user name from a locked-out address before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "backoffice.urls"
WSGI_APPLICATION = "backoffice.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so the web process and the cluster's workers
    # queue on it instead of failing with "database is locked" when a read lock cannot be upgraded.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env.str("SQLITE_TEST_NAME", default="")
    if not DATABASES["default"]["TEST"]["NAME"]:
        del DATABASES["default"]["TEST"]["NAME"]
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True
# One date style per language on every page (core/formats/<language>/formats.py).
FORMAT_MODULE_PATH = ["core.formats"]

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = (
    [BASE_DIR / "backoffice" / "static"] if (BASE_DIR / "backoffice" / "static").is_dir() else []
)
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "var" / "media")
# Exports and placement files are written here; they hold personal data, so never under STATIC_ROOT.
EXPORT_ROOT = env.path("EXPORT_ROOT", default=BASE_DIR / "var" / "exports")
# Exports with more rows than this run as a background django-q2 task with a progress page.
EXPORT_BACKGROUND_THRESHOLD = env.int("EXPORT_BACKGROUND_THRESHOLD", default=20000)
AUDIT_VERIFY_BACKGROUND_THRESHOLD = env.int("AUDIT_VERIFY_BACKGROUND_THRESHOLD", default=20000)
# Uploads of background imports are kept here (personal data: never under STATIC_ROOT) so a worker can read
# them and a dry run can be confirmed without uploading again.
IMPORT_ROOT = env.path("IMPORT_ROOT", default=BASE_DIR / "var" / "imports")
# Export files and stored uploads are removed this many days after their job finished (the job rows stay).
EXPORT_FILE_RETENTION_DAYS = env.int("EXPORT_FILE_RETENTION_DAYS", default=30)
IMPORT_FILE_RETENTION_DAYS = env.int("IMPORT_FILE_RETENTION_DAYS", default=30)
# Admin imports of files with more data rows than this run as a background django-q2 task with a result page.
IMPORT_BACKGROUND_THRESHOLD = env.int("IMPORT_BACKGROUND_THRESHOLD", default=5000)
# SQLite: the page cache of an import's one write transaction, in MB; 0 leaves SQLite's own (2 MB). The cache is
# part of the import's memory: 64 MB took a 1,000,000-row XLSX import over its 300 MB (bench/RESULTS.md).
IMPORT_SQLITE_CACHE_MB = env.int("IMPORT_SQLITE_CACHE_MB", default=0)
# The audit chain head is written outside the database so a rewrite of the table can be detected.
AUDIT_ANCHOR_PATH = env.path("AUDIT_ANCHOR_PATH", default=BASE_DIR / "var" / "audit-anchor.jsonl")
# PostgreSQL: month partitions of the audit trail created ahead of time by the hourly housekeeping.
PARTITION_MONTHS_AHEAD = env.int("PARTITION_MONTHS_AHEAD", default=3)

LOGIN_URL = "admin:login"

# Log-in protection (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one user name from one address,
# that pair is locked out for LOGIN_COOLOFF_MINUTES (answer 429); failures and lockouts are in the audit trail.
# The address is REMOTE_ADDR only: a client-supplied X-Forwarded-For would let anyone change it at will.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "core.signals.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # successful log-ins are in the audit trail already
AXES_ENABLE_ACCESS_FAILURE_LOG = False  # so are failed ones
AXES_VERBOSE = False  # and lockouts: no banner on every start of a command
AXES_ENABLE_ADMIN = False  # backoffice.admin registers the attempts (lockouts) with audited deletion
# Admin sessions end after a working day, and when the browser closes.
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=9 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = env.bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", default=True)

CACHES = {
    "default": env.cache("CACHE_URL", default="locmemcache://backoffice")
    if not env.str("REDIS_URL", default="")
    else {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": env.str("REDIS_URL")}
}

# --- django-q2 ------------------------------------------------------------------------------------------
# Documented pitfalls: timeout must stay below retry (or a running task is handed out twice), max_attempts
# must be explicit (the default retries forever), and catch_up off so a stopped cluster does not replay every
# missed schedule at start.
REDIS_URL = env.str("REDIS_URL", default="")
q_workers = env.int("Q_WORKERS", default=2)
Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="backoffice"),
    "workers": q_workers,
    "recycle": 500,
    "timeout": env.int("Q_TIMEOUT", default=900),
    "retry": env.int("Q_RETRY", default=1200),
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=3),
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 5000,
    # Tasks a cluster takes off the broker ahead of its workers: one each. A cluster holding more keeps them
    # from a cluster that is free (the daily run's chunks end up unevenly shared), and loses them if killed.
    "queue_limit": env.int("Q_QUEUE_LIMIT", default=q_workers),
    "label": "Background jobs",
    "poll": 1,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- django-import-export ------------------------------------------------------------------------------
IMPORT_EXPORT_USE_TRANSACTIONS = True
IMPORT_EXPORT_SKIP_ADMIN_LOG = False
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "import"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "export"
# We escape every dangerous leading character ourselves (the library's option only strips "=").
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = False

# --- Content-Security-Policy (django-csp) --------------------------------------------------------------
# Scripts come from the site itself only (the inline scripts, the import progress poll and the frame's folding
# of the navigation sidebar in admin/base_site.html, carry the request's nonce); inline style attributes stay allowed (the admin's templates use them; they cannot run
# code). The hash lets django-import-export's "select all fields" checkbox keep its inline handler.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp_constants.SELF],
        "script-src": [
            csp_constants.SELF,
            csp_constants.NONCE,
            csp_constants.UNSAFE_HASHES,
            "'sha256-wid4zL8fR53ZYy1ljOepzR77Dn6vWUUxuNnnWWBP3I8='",  # onSelectToggleChange(event)
        ],
        "style-src": [csp_constants.SELF, csp_constants.UNSAFE_INLINE],
        "img-src": [csp_constants.SELF, "data:"],
        "font-src": [csp_constants.SELF],
        "connect-src": [csp_constants.SELF],
        "object-src": [csp_constants.NONE],
        "base-uri": [csp_constants.SELF],
        "form-action": [csp_constants.SELF],
        "frame-ancestors": [csp_constants.NONE],
    }
}

# --- Product settings ----------------------------------------------------------------------------------
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="CN")
DEFAULT_CURRENCY = env.str("DEFAULT_CURRENCY", default="CNY")
# A call task is to be worked within this many hours of falling due; the queue flags it as overdue after that.
CALL_TASK_SERVICE_LEVEL_HOURS = env.int("CALL_TASK_SERVICE_LEVEL_HOURS", default=4)
if not 1 <= CALL_TASK_SERVICE_LEVEL_HOURS <= 24 * 7:
    raise ImproperlyConfigured(
        f"CALL_TASK_SERVICE_LEVEL_HOURS must be a number of hours from 1 to 168; got {CALL_TASK_SERVICE_LEVEL_HOURS}."
    )
# One delivery backend per channel, by dotted path. The default writes to an outbox table in the database.
NOTIFICATION_BACKENDS = {
    "sms": env.str("SMS_BACKEND", default="notifications.channels.OutboxBackend"),
    "email": env.str("EMAIL_CHANNEL_BACKEND", default="notifications.channels.OutboxBackend"),
    "push": env.str("PUSH_BACKEND", default="notifications.channels.OutboxBackend"),
}
SMS_GATEWAY_URL = env.str("SMS_GATEWAY_URL", default="")
SMS_GATEWAY_TOKEN = env.str("SMS_GATEWAY_TOKEN", default="")
SMS_SENDER_ID = env.str("SMS_SENDER_ID", default="LENDER")
# The product's public address, e.g. https://backoffice.lender.example: what providers call back (Twilio's
# StatusCallback, ESP tracking webhooks) and where customers reach the signed unsubscribe link of every email.
# Without it (the production default) messages go out without a callback URL.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000" if DEBUG else "")
TWILIO_BASE_URL = env.str("TWILIO_BASE_URL", default="")
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
FCM_BASE_URL = env.str("FCM_BASE_URL", default="")
FCM_PROJECT_ID = env.str("FCM_PROJECT_ID", default="")
# A service-account JSON file of the Firebase project (google-auth mints and refreshes the OAuth token);
# FCM_ACCESS_TOKEN is a fixed token for a local test server only (real ones expire within the hour).
FCM_CREDENTIALS_FILE = env.str("FCM_CREDENTIALS_FILE", default="")
FCM_ACCESS_TOKEN = env.str("FCM_ACCESS_TOKEN", default="")
PROVIDER_TIMEOUT_SECONDS = env.float("PROVIDER_TIMEOUT_SECONDS", default=10.0)
# Per provider: how many requests one worker has in flight at once (over pooled keep-alive connections), and
# how many messages a second all workers of all clusters send together (0: no limit; shared through Redis when
# REDIS_URL is set). A 429's Retry-After is waited for within a batch up to PROVIDER_MAX_THROTTLE_WAIT_SECONDS.
SMS_GATEWAY_CONCURRENCY = env.int("SMS_GATEWAY_CONCURRENCY", default=16)
SMS_GATEWAY_RATE_PER_SECOND = env.float("SMS_GATEWAY_RATE_PER_SECOND", default=50.0)
TWILIO_CONCURRENCY = env.int("TWILIO_CONCURRENCY", default=8)
TWILIO_RATE_PER_SECOND = env.float("TWILIO_RATE_PER_SECOND", default=10.0)
FCM_CONCURRENCY = env.int("FCM_CONCURRENCY", default=16)
FCM_RATE_PER_SECOND = env.float("FCM_RATE_PER_SECOND", default=200.0)
EMAIL_CONCURRENCY = env.int("EMAIL_CONCURRENCY", default=4)
EMAIL_RATE_PER_SECOND = env.float("EMAIL_RATE_PER_SECOND", default=10.0)
PROVIDER_MAX_THROTTLE_WAIT_SECONDS = env.float("PROVIDER_MAX_THROTTLE_WAIT_SECONDS", default=30.0)
# Without a secret (production that did not set one) the delivery webhook refuses every request.
DELIVERY_WEBHOOK_SECRET = env.str("DELIVERY_WEBHOOK_SECRET", default="dev-webhook-secret" if DEBUG else "")
# Bounds of one delivery-receipt request (a larger one gets 400) and receipts applied per transaction.
DELIVERY_RECEIPTS_MAX_BYTES = env.int("DELIVERY_RECEIPTS_MAX_BYTES", default=1_048_576)
DELIVERY_RECEIPTS_MAX_PER_REQUEST = env.int("DELIVERY_RECEIPTS_MAX_PER_REQUEST", default=5000)
DELIVERY_RECEIPTS_CHUNK_SIZE = env.int("DELIVERY_RECEIPTS_CHUNK_SIZE", default=500)
# A receipt that names no contact yet (the send is not recorded) waits this long for it, then is dropped.
PARKED_RECEIPT_RETENTION_HOURS = env.int("PARKED_RECEIPT_RETENTION_HOURS", default=48)
PAYMENT_GATEWAY_BACKEND = env.str("PAYMENT_GATEWAY_BACKEND", default="loans.gateways.SimulatorGateway")
# Simulator failures, e.g. "insufficient_funds:0.1,card_expired:0.02" (reason:probability).
PAYMENT_SIMULATOR_FAILURES = env.str("PAYMENT_SIMULATOR_FAILURES", default="")
HOW_TO_PAY = env.str("HOW_TO_PAY", default="")
# The payment page of a loan, e.g. "https://pay.example/{loan_ref}": the {pay_link} placeholder. Empty: no link.
PAY_LINK_URL = env.str("PAY_LINK_URL", default="")


def _check_pay_link_url(pattern: str) -> None:
    """Refuse to start with a pattern the messages could not fill in (checked once here, not per message)."""
    try:
        fields = {
            field for _text, field, _spec, _conv in string.Formatter().parse(pattern) if field is not None
        }
    except ValueError as exc:
        fields = {f"malformed: {exc}"}
    if fields - {"loan_ref"} or (pattern and not pattern.startswith(("https://", "http://"))):
        raise ImproperlyConfigured(
            f"PAY_LINK_URL must be an http(s) URL whose only placeholder is {{loan_ref}}; got {pattern!r} "
            f"(placeholders: {', '.join('{' + f + '}' for f in sorted(fields)) or 'none'})."
        )


_check_pay_link_url(PAY_LINK_URL)
# Dispatch: rows claimed per batch, and how long a claim lasts before a dead worker's rows are taken over.
DISPATCH_BATCH_SIZE = env.int("DISPATCH_BATCH_SIZE", default=500)
DISPATCH_CLAIM_LEASE_SECONDS = env.int("DISPATCH_CLAIM_LEASE_SECONDS", default=600)
# The scheduled daily run is split into chunks of this many customer ids, each a django-q2 task any worker
# (of any cluster sharing the broker) can take.
DAILY_RUN_CHUNK_CUSTOMERS = env.int("DAILY_RUN_CHUNK_CUSTOMERS", default=20000)

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="127.0.0.1")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="reminders@lender.example")
# django-anymail (an ESP instead of SMTP: EMAIL_BACKEND=anymail.backends.mailgun.EmailBackend, ...): every
# ANYMAIL_<NAME> variable is its setting <NAME>, e.g. ANYMAIL_MAILGUN_API_KEY, ANYMAIL_MAILGUN_SENDER_DOMAIN,
# ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY, ANYMAIL_WEBHOOK_SECRET (user:password of the tracking webhooks).
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): value for name, value in os.environ.items() if name.startswith("ANYMAIL_")
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Production hardening (manage.py check --deploy is clean with DEBUG off) -----------------------------
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_HTTPONLY = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"
