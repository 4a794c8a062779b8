from __future__ import annotations

import pytest

from service.config import DEFAULT_DATABASE_URL, ConfigError, Settings, load_settings

SETTINGS_VARIABLES = (
    "DATABASE_URL",
    "APP_DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "APP_ENV",
    "LOG_LEVEL",
    "HOST",
    "PORT",
    "WEB_CONCURRENCY",
    "DB_POOL_SIZE",
    "DB_MAX_OVERFLOW",
    "DB_POOL_RECYCLE",
    "DB_POOL_PRE_PING",
    "CORS_ORIGINS",
    "MAX_CONTENT_LENGTH",
    "SLOW_ENDPOINT_DELAY",
    "SERVICE_NAME",
    "ALLOWED_HOSTS",
    "TRUSTED_PROXY_HOPS",
    "RATE_LIMIT_TRUSTED_PROXY_HOPS",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = load_settings()

    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.port == 8000 and settings.host == "127.0.0.1"
    assert settings.max_content_length == 1024 * 1024
    assert settings.slow_endpoint_delay == 5
    assert settings.redis_url is None
    assert settings.is_sqlite


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgresql://u:p@db/app", "postgresql+asyncpg://u:p@db/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("sqlite:///./local.db", "sqlite+aiosqlite:///./local.db"),
    ],
)
def test_database_urls_get_the_async_driver(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", given)

    assert load_settings().database_url == expected


def test_app_database_url_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", "postgresql://todo@db/todos")

    assert load_settings().database_url == "postgresql+asyncpg://todo@db/todos"


def test_environment_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("DB_POOL_PRE_PING", "false")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("LOG_LEVEL", "debug")

    settings = load_settings()

    assert (settings.port, settings.web_concurrency) == (9000, 3)
    assert settings.db_pool_pre_ping is False
    assert settings.cors_origin_list == ["https://a.example", "https://b.example"]
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("DB_POOL_SIZE", "-1"),
        ("SLOW_ENDPOINT_DELAY", "31"),
        ("RATE_LIMIT_LOGIN_PER_IP", "ten a minute"),
        ("RATE_LIMIT_LOGIN_PER_ACCOUNT", "0/minute"),
        ("RATE_LIMIT_REGISTER_PER_IP", "5/fortnight"),
        ("RATE_LIMIT_REGISTER_PER_ACCOUNT", "5/minute;x"),
        ("RATE_LIMIT_LOGIN_PER_ACCOUNT_AND_IP", "ten"),
        ("RATE_LIMIT_EMAIL_CHANGE_PER_IP", "0/minute"),
        ("RATE_LIMIT_EMAIL_CHANGE_PER_USER", "5/eon"),
        ("TRUSTED_PROXY_HOPS", "-1"),
        ("ALLOWED_HOSTS", "https://api.example.com"),
        ("ALLOWED_HOSTS", "api.example.com:443"),
        ("DATABASE_URL", "nonsense"),
        ("DATABASE_URL", "postgresql://app:pw@db:notaport/app"),
        ("DATABASE_URL", "postgresql://app:pw@db:99999/app"),
        ("DATABASE_URL", "mysql://app:pw@db/app"),
        ("DATABASE_URL", "sqlite+pysqlite:///local.db"),
        ("DATABASE_URL", ""),
    ],
)
def test_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError) as raised:
        load_settings()

    assert raised.value.message.startswith(f"{name}: ")
    assert "\n" not in raised.value.message


def test_production_refuses_the_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("ALLOWED_HOSTS", "api.example.com")

    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings()

    monkeypatch.setenv("SECRET_KEY", "a-real-secret-from-the-vault-0123456789")
    assert load_settings().app_env == "production"


def test_the_secret_is_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "x" * 40 not in repr(Settings(secret_key="x" * 40))
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    monkeypatch.setenv("PORT", "abc")

    with pytest.raises(ConfigError) as raised:
        load_settings()

    assert "x" * 40 not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pw-never-shown@db:notaport/app",
        # No host: the password where the port would be.
        "postgresql://app:pw-never-shown/app",
        "mysql://app:pw-never-shown@db/app",
    ],
)
def test_a_malformed_database_url_is_not_echoed(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)

    with pytest.raises(ConfigError) as raised:
        load_settings()

    assert raised.value.message.startswith("DATABASE_URL: ")
    assert "pw-never-shown" not in str(raised.value)


def test_a_short_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "too-short")

    with pytest.raises(ConfigError, match="SECRET_KEY: must be at least 32 bytes"):
        load_settings()
