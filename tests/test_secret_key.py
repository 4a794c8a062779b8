"""Production refuses signing keys anyone could know: the repository's examples,
whitespace, and keys that are obviously not random."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from service.config import (
    EXAMPLE_SECRET_KEYS,
    ConfigError,
    load_settings,
    weak_secret_key_problem,
)
from tests.processes import run_command

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# `SECRET_KEY=value` (env files, kustomize literals) and `SECRET_KEY: value` (YAML).
_ASSIGNED_KEY = re.compile(r"""SECRET_KEY\s*[=:]\s*["']?([^"'\s#]*)""")


def keys_in_repository() -> dict[str, str]:
    """Every SECRET_KEY value written in a tracked file that is not Python code, by value."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found: dict[str, str] = {}
    for name in tracked:
        path = PROJECT_ROOT / name
        if path.suffix == ".py" or not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            for value in _ASSIGNED_KEY.findall(line):
                # Commands that generate a key ("$(python3 -c ...)"), prose ("SECRET_KEY: see").
                if value and not value.startswith("$") and len(value) >= 8:
                    found.setdefault(value, name)
    return found


def production(**overrides: object) -> object:
    return load_settings(app_env="production", allowed_hosts="example.com", **overrides)


def test_the_scan_finds_the_known_examples() -> None:
    """So that the next test cannot pass by finding nothing."""
    found = keys_in_repository()
    assert found["local-compose-only-secret-key-0123456789abcdef"] == ".env.example"
    assert found["local-development-only-secret-key-not-for-production"].startswith(
        "deploy/k8s/overlays/local/"
    )


def test_every_key_in_the_repository_is_refused_in_production() -> None:
    for key, where in keys_in_repository().items():
        assert key in EXAMPLE_SECRET_KEYS, f"{where}: add its SECRET_KEY to EXAMPLE_SECRET_KEYS"
        with pytest.raises(ConfigError, match="SECRET_KEY"):
            production(secret_key=key)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        pytest.param(" " * 32, "whitespace", id="32 spaces"),
        pytest.param("\t \n" * 12, "whitespace", id="mixed whitespace"),
        pytest.param("ab" * 24, "distinct characters", id="two characters"),
        pytest.param("0123456789a" * 4, "distinct characters", id="eleven characters"),
        pytest.param(
            "  local-compose-only-secret-key-0123456789abcdef  ", "example", id="example, padded"
        ),
    ],
)
def test_weak_keys_are_refused_in_production(key: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        production(secret_key=key)
    message = raised.value.message
    assert "\n" not in message  # one line
    assert not key.strip() or key.strip() not in message  # the key is not echoed
    assert "secrets.token_urlsafe(48)" in message


def test_a_random_key_is_accepted_and_development_keeps_the_examples() -> None:
    assert weak_secret_key_problem(secrets.token_urlsafe(48)) is None
    assert weak_secret_key_problem("0123456789ab" * 3) is None  # 12 distinct: the bar
    for key in EXAMPLE_SECRET_KEYS - {"REPLACE_ME"}:  # too short anywhere
        assert load_settings(secret_key=key).app_env == "development"


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_the_service_refuses_to_start_with_the_example_key(command: str) -> None:
    environment = {
        **os.environ,
        "APP_ENV": "production",
        "ALLOWED_HOSTS": "example.com",
        "SECRET_KEY": "local-compose-only-secret-key-0123456789abcdef",
        "DATABASE_URL": "sqlite:///unused.db",
        "PORT": "1",  # never reached
    }
    result = run_command(command, environment)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: SECRET_KEY is an example key")
    assert "secrets.token_urlsafe(48)" in line
    assert "0123456789abcdef" not in line
