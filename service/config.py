"""Settings from environment variables (pydantic-settings).

Every variable is listed with its default in the README. A bad value stops
start-up with one line that names the variable (`ConfigError`).
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

from limits import RateLimitItem, parse_many
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me-in-production"  # noqa: S105 - refused in production
MIN_SECRET_KEY_BYTES = 32  # HS256 wants a key at least as long as its hash (RFC 7518)
# Every key printed in this repository (the default, .env.example, the Kubernetes local
# overlay, the Secret template): public, so anyone could sign tokens with them. Refused in
# production; tests/test_config.py finds every SECRET_KEY value in the repository's files
# and fails when one is missing here.
EXAMPLE_SECRET_KEYS = frozenset(
    {
        DEFAULT_SECRET_KEY,
        "local-compose-only-secret-key-0123456789abcdef",  # .env.example
        "local-development-only-secret-key-not-for-production",  # k8s overlays/local
        "REPLACE_ME",  # k8s base/secret.template.yaml
    }
)
# A random key of 32+ bytes has far more; `aaaa...` or `abab...` is a typo or a placeholder.
MIN_SECRET_KEY_DISTINCT_CHARACTERS = 12
GENERATE_SECRET_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'  # noqa: S105 - a command, not a key
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./service.db"
# An ALLOWED_HOSTS entry: a name or IPv4 address, a bracketed IPv6 address, or "*".
ALLOWED_HOST = re.compile(r"\*|[a-z0-9_.-]+|\[[0-9a-f:.]+\]", re.IGNORECASE)
PRODUCTION_METRICS_PORT = 9100  # the API's /metrics listener when METRICS_PORT is unset


def parse_rate_limits(value: str) -> list[RateLimitItem]:
    """`10/minute;100/hour` -> the `limits` items; empty -> none. ValueError when invalid."""
    if not value.strip():
        return []
    items = parse_many(value)
    if any(item.amount < 1 for item in items):
        raise ValueError("a limit must allow at least 1 attempt")
    return items


class ConfigError(SystemExit):
    """A configuration problem, reported as one line and a non-zero exit."""

    def __init__(self, message: str) -> None:
        super().__init__(f"configuration error: {message}")
        self.message = message


def to_async_database_url(url: str) -> str:
    """Turn the URLs people write (postgres://, postgresql://, sqlite://) into async driver URLs."""
    for prefix in (
        "postgres://",
        "postgresql://",
        "postgresql+psycopg2://",
        "postgresql+psycopg://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


# The drivers the service is built and tested with (requirements.txt); to_async_database_url
# turns the usual spellings into these.
SUPPORTED_DATABASE_DRIVERS = ("postgresql+asyncpg", "sqlite+aiosqlite")
DATABASE_URL_FORMS = "postgresql://user:password@host:5432/name or sqlite:///path/to/file.db"


def check_database_url(url: str) -> str:
    """`url` if SQLAlchemy can parse it and it names a supported driver; else ValueError.

    Checked here, so that a typo is the one-line configuration error at start-up instead
    of a traceback from the first connection. The messages never quote the URL: a
    malformed one may hold the password where a host or a port was expected.
    """
    try:
        parsed = make_url(url)
        port = parsed.port  # int() of the text after the host's ":"
    except ArgumentError:
        raise ValueError(f"not a database URL; expected {DATABASE_URL_FORMS}") from None
    except ValueError:
        raise ValueError("the port is not a number") from None
    if parsed.drivername not in SUPPORTED_DATABASE_DRIVERS:
        raise ValueError(
            f"unsupported database {parsed.drivername!r}; expected {DATABASE_URL_FORMS}"
        )
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("the port must be between 1 and 65535")
    return url


class Settings(BaseSettings):
    # `.env` in the working directory too (as compose reads it); a variable set in the
    # environment wins over the file.
    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        env_file=".env",
        env_file_encoding="utf-8",
    )

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "APP_DATABASE_URL"),
    )
    redis_url: str | None = None  # unset: background jobs run in the API process
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    jwt_expires_seconds: int = Field(default=24 * 3600, ge=60, le=90 * 24 * 3600)
    app_env: Literal["development", "test", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    service_name: str = Field(default="quart-service", min_length=1, max_length=100)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    web_concurrency: int = Field(default=1, ge=1, le=64)
    graceful_timeout: float = Field(default=25.0, ge=0, le=600)
    keep_alive_timeout: float = Field(default=75.0, gt=0, le=3600)
    # The longest a client may take to send a request's head (slowloris) and, once the
    # handler reads it, its body; see service/http_edge.py.
    http_read_timeout: float = Field(default=20.0, gt=0, le=300)
    # Cleartext HTTP/2 (`Upgrade: h2c`, prior knowledge): off, as nothing here needs it.
    h2c_enabled: bool = False

    # Kept open: an async worker runs many requests at once, and connections beyond the
    # pool are opened and closed per burst (a fork and an authentication on the server each).
    db_pool_size: int = Field(default=20, ge=1, le=1000)
    db_max_overflow: int = Field(default=10, ge=0, le=1000)
    db_pool_recycle: int = Field(default=3600, ge=-1)
    # Off: a round trip per checkout; closed connections are caught for free (db.py).
    db_pool_pre_ping: bool = False
    db_pool_timeout: float = Field(default=5.0, gt=0, le=300)
    db_connect_timeout: float = Field(default=2.0, gt=0, le=60)
    # A statement's longest wait for PostgreSQL's answer (asyncpg then spends as long again
    # on its cancel request): a partition that leaves the connection open (no reset) is a
    # 503, not a request hanging until TCP gives up.
    db_command_timeout: float = Field(default=5.0, gt=0, le=3600)

    tracing_enabled: bool = True
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)  # 0: no metrics server
    # The API's /metrics on a listener of its own (`serve` starts it), so that the public
    # port never shows it. Unset: 9100 in production; in development and test /metrics
    # stays on PORT. 0: no /metrics at all.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    # Comma-separated origins. Unset: "*" in development and test, none in production.
    cors_origins: str = ""
    # Access-Control-Allow-Credentials, only for the origins CORS_ORIGINS lists (never "*").
    cors_allow_credentials: bool = False
    max_content_length: int = Field(default=1024 * 1024, ge=1024)
    # Values one body may hold: form fields, and keys plus items of a JSON body (413 above);
    # see service/request_limits.py.
    max_form_fields: int = Field(default=1000, ge=10, le=100_000)
    max_json_values: int = Field(default=1000, ge=10, le=100_000)
    slow_endpoint_delay: float = Field(default=5.0, ge=0, le=30)
    # /error and /slow make 5xx answers and ERROR logs on demand (alert drills); the docs
    # (/docs, /redocs, /scalar) and /openapi.json map the API. Unset: on, but off in production.
    fault_endpoints_enabled: bool | None = None
    api_docs_enabled: bool | None = None

    export_retention_hours: float = Field(default=24, gt=0, le=24 * 365)
    export_job_timeout: int = Field(default=600, ge=1, le=24 * 3600)
    export_max_tries: int = Field(default=5, ge=1, le=50)
    export_batch_size: int = Field(default=1000, ge=1, le=100_000)
    # Queued or running exports one client (its user, else its IP) may have; 429 beyond.
    export_max_pending: int = Field(default=2, ge=1, le=1000)
    # Without Redis, exports run on the API's event loop: this many at a time, the rest wait.
    export_in_process_concurrency: int = Field(default=1, ge=1, le=64)
    # A download streams however long it takes while the client reads; it is abandoned
    # when the client takes nothing for this long (service/exports/download.py).
    download_idle_timeout: float = Field(default=60.0, gt=0, le=3600)
    worker_health_check_interval: int = Field(default=10, ge=1, le=3600)
    worker_job_completion_wait: int = Field(default=25, ge=0, le=3600)

    # Attempts per moving window, in the `limits` notation ("10/minute;100/hour"; "" for
    # none), per client IP and per account (the email, and the username on registration).
    rate_limit_enabled: bool = True
    rate_limit_login_per_ip: str = "30/minute"
    # Logins per (email, client IP), and per email from all addresses: the looser ceiling,
    # so one address alone cannot lock a user out (service/ratelimit.py).
    rate_limit_login_per_account_and_ip: str = "10/minute"
    rate_limit_login_per_account: str = "50/minute"
    rate_limit_register_per_ip: str = "10/minute"
    rate_limit_register_per_account: str = "5/minute"
    # Changes of a user's email through PUT /api/user ("already taken" tells whether an
    # address has an account, like registering does).
    rate_limit_email_change_per_ip: str = "10/minute"
    rate_limit_email_change_per_user: str = "5/minute"
    # Proxies in front that append to X-Forwarded-For and set X-Forwarded-Proto/-Host (1
    # behind Caddy or an Ingress): the client address, scheme and Host of logs, metrics,
    # rate limits and the CSRF cookie are what the outermost one saw (service/proxy.py).
    # 0: the socket's peer and scheme, and the headers are ignored. The old name
    # RATE_LIMIT_TRUSTED_PROXY_HOPS still works, so existing deployments keep their value.
    trusted_proxy_hops: int = Field(
        default=0,
        ge=0,
        le=10,
        validation_alias=AliasChoices("TRUSTED_PROXY_HOPS", "RATE_LIMIT_TRUSTED_PROXY_HOPS"),
    )
    # Comma-separated host names (no port) the service answers to, case-insensitive; any
    # other Host header is a 400. Unset or "*": any host, refused in production.
    allowed_hosts: str = ""

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return check_database_url(to_async_database_url(value.strip()))

    @field_validator(
        "redis_url", "metrics_port", "fault_endpoints_enabled", "api_docs_enabled", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "rate_limit_login_per_ip",
        "rate_limit_login_per_account_and_ip",
        "rate_limit_login_per_account",
        "rate_limit_register_per_ip",
        "rate_limit_register_per_account",
        "rate_limit_email_change_per_ip",
        "rate_limit_email_change_per_user",
    )
    @classmethod
    def _rate_limits_parse(cls, value: str) -> str:
        parse_rate_limits(value)
        return value

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_SECRET_KEY_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_KEY_BYTES} bytes long")
        return value

    @model_validator(mode="after")
    def _no_placeholder_secret_in_production(self) -> Settings:
        if self.app_env == "production":
            problem = weak_secret_key_problem(self.secret_key.get_secret_value())
            if problem is not None:
                raise ValueError(
                    f"SECRET_KEY {problem}, refused when APP_ENV=production; "
                    f"make a real one with: {GENERATE_SECRET_KEY}"
                )
        return self

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: str) -> str:
        for host in value.split(","):
            if host.strip() and not ALLOWED_HOST.fullmatch(host.strip()):
                raise ValueError(
                    f"{host.strip()!r} is not a host name: list names without scheme or port"
                    " (api.example.com,localhost), or '*'"
                )
        return value

    @model_validator(mode="after")
    def _allowed_hosts_in_production(self) -> Settings:
        if self.app_env == "production" and self.allowed_host_set is None:
            raise ValueError(
                "ALLOWED_HOSTS must list the host names clients use (api.example.com,...)"
                " when APP_ENV=production"
            )
        return self

    @model_validator(mode="after")
    def _credentials_only_for_listed_origins(self) -> Settings:
        if self.cors_allow_credentials and (
            not self.cors_origin_list or "*" in self.cors_origin_list
        ):
            raise ValueError(
                "CORS_ALLOW_CREDENTIALS needs CORS_ORIGINS to list the origins (never '*')"
            )
        return self

    @model_validator(mode="after")
    def _metrics_port_is_not_the_api_port(self) -> Settings:
        if self.metrics_port and self.metrics_port == self.port:
            raise ValueError("METRICS_PORT must differ from PORT (it keeps /metrics off it)")
        return self

    @property
    def metrics_listener_port(self) -> int | None:
        """The port of the API's own /metrics listener; None: no such listener."""
        if self.metrics_port is None:
            return PRODUCTION_METRICS_PORT if self.app_env == "production" else None
        return self.metrics_port or None

    @property
    def metrics_on_main_port(self) -> bool:
        return self.metrics_port is None and self.app_env != "production"

    @property
    def fault_endpoints(self) -> bool:
        if self.fault_endpoints_enabled is None:
            return self.app_env != "production"
        return self.fault_endpoints_enabled

    @property
    def api_docs(self) -> bool:
        if self.api_docs_enabled is None:
            return self.app_env != "production"
        return self.api_docs_enabled

    @cached_property
    def allowed_host_set(self) -> frozenset[str] | None:
        """ALLOWED_HOSTS lower-cased; None: any host (unset or "*")."""
        hosts = frozenset(
            host.strip().lower() for host in self.allowed_hosts.split(",") if host.strip()
        )
        return None if not hosts or "*" in hosts else hosts

    @cached_property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def cors_allowed_origins(self) -> list[str]:
        """CORS_ORIGINS; unset, any origin while developing and none in production."""
        if self.cors_origin_list:
            return self.cors_origin_list
        return [] if self.app_env == "production" else ["*"]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def weak_secret_key_problem(key: str) -> str | None:
    """Why `key` must not sign production tokens, or None when it may."""
    if not key.strip():
        return "is only whitespace"
    if key.strip() in EXAMPLE_SECRET_KEYS:
        return "is an example key published in this repository"
    if len(set(key)) < MIN_SECRET_KEY_DISTINCT_CHARACTERS:
        return (
            f"has fewer than {MIN_SECRET_KEY_DISTINCT_CHARACTERS} distinct characters "
            "(not a random key)"
        )
    return None


# Settings whose value may hold a secret: a problem names the variable, never the value.
_NEVER_ECHOED = ("SECRET_KEY", "DATABASE_URL")


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        name = "/".join(str(part) for part in item["loc"]).upper() or "settings"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] in ("missing", "value_error") and not item["loc"]:
            problems.append(message)
        elif name in _NEVER_ECHOED:
            problems.append(f"{name}: {message}")
        else:
            problems.append(f"{name}: {message} (got {item.get('input')!r})")
    return "; ".join(problems)


def load_settings(**overrides: object) -> Settings:
    """Read the environment; raise ConfigError (one clear line) on a bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
