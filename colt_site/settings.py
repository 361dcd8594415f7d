"""COLT settings, all from the environment.

Embedded default (nothing set): SQLite next to manage.py, no Redis. Production sets
DATABASE_URL (PostgreSQL), REDIS_URL, COLT_SECRET_KEY, COLT_DEBUG=0 and COLT_ALLOWED_HOSTS.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


#: Production-safe by default: development mode (debug pages, a fixed development key, static
#: files from static/) only when asked for with COLT_DEBUG=1, as scripts/run and scripts/test do.
DEBUG = env_bool("COLT_DEBUG", False)
SECRET_KEY = os.environ.get("COLT_SECRET_KEY", "")
#: True when production mode has no COLT_SECRET_KEY: commands that serve no page (`tune`, a
#: Celery worker) run with a throwaway key; the web server refuses to start (colt_site/asgi.py)
COLT_NO_SECRET_KEY = not SECRET_KEY and not DEBUG
if not SECRET_KEY:
    SECRET_KEY = "colt-development-only-key-not-for-production" if DEBUG else secrets.token_urlsafe(50)
ALLOWED_HOSTS = [h for h in os.environ.get("COLT_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "accounts",
    "search",
    "channels",
    "dashboard",
    "axes",  # login throttling
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.LoginRequired",  # every view needs a login unless marked otherwise
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: answers a locked-out login with 429
    "colt_site.middleware.content_security_policy",
]

#: Login throttling (django-axes): after COLT_LOGIN_FAILURE_LIMIT wrong passwords in a row for
#: one user name from one address, that pair is locked out for COLT_LOGIN_COOLOFF_MIN minutes
#: (429); a correct login resets the count. `manage.py axes_reset` lifts every lockout.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("COLT_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("COLT_LOGIN_COOLOFF_MIN", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "run-list"
LOGOUT_REDIRECT_URL = "login"

ROOT_URLCONF = "colt_site.urls"
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
            ]
        },
    }
]
WSGI_APPLICATION = "colt_site.wsgi.application"
ASGI_APPLICATION = "colt_site.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # a worker process (or a second `manage.py tune`) shares the file with the web process:
    # WAL lets readers go on during a write, IMMEDIATE transactions take the write lock at
    # BEGIN (a deferred one that reads, then writes, fails at once with "database is locked"
    # when another process wrote meanwhile), and a busy writer is waited for up to 30 s
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30,
        transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    )
    # tests that start worker processes need a test database those processes can open
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("COLT_TEST_SQLITE", str(BASE_DIR / "test-db.sqlite3"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

#: Optional: Celery broker and channel layer. Absent means the embedded in-process worker.
REDIS_URL = os.environ.get("REDIS_URL", "")

#: Channels: the Redis channel layer when REDIS_URL is set (workers in other processes publish
#: run events to the browsers), else the in-memory layer (the embedded, single-process default).
if REDIS_URL:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

#: The LLM fleet the launch form offers: a fleet JSON file, or (unset) the local models.
COLT_FLEET_FILE = os.environ.get("COLT_FLEET_FILE", "")

#: A measure-only host for this worker's runs: a TVM RPC server (host:port) or a tracker and a
#: device key (host:port/key). Unset: candidates are timed on this host.
COLT_RPC = os.environ.get("COLT_RPC", "")

#: Where CLI runs write their best schedules unless --out is given.
COLT_OUTPUT_DIR = Path(os.environ.get("COLT_OUTPUT_DIR", BASE_DIR / "colt-out"))

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("COLT_STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Production (COLT_DEBUG=0): behind a TLS-terminating proxy that sets X-Forwarded-Proto; static
# files (after `manage.py collectstatic`) served by WhiteNoise from the web process.
if not DEBUG:
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = env_bool("COLT_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("COLT_SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("COLT_SSL_REDIRECT", False)  # usually the proxy's job
    SECURE_HSTS_SECONDS = int(os.environ.get("COLT_HSTS_SECONDS", str(365 * 86400)))
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"
    SESSION_COOKIE_AGE = int(os.environ.get("COLT_SESSION_AGE_S", str(12 * 3600)))
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("COLT_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("COLT_LOG_LEVEL", "WARNING")},
}

# Celery: Redis as broker when REDIS_URL is set; runs go to the queue named for their target.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "llvm"
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("COLT_VISIBILITY_TIMEOUT", "3600"))}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
