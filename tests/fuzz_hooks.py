"""Schemathesis hooks for the `st run` of tests/test_fuzz.py (SCHEMATHESIS_HOOKS=tests.fuzz_hooks).

- Every request carries a token of its own, minted with the server's SECRET_KEY for the
  user FUZZ_USER_ID: a fuzzed POST /api/logout then revokes only its own token, not the
  one every later request relies on. A fuzzed PUT /api/user that changes the password
  or email revokes every earlier token: its answer's token says the new version, and the
  tokens minted after it carry that version.
- Emails are generated among those our validator (email-validator, through pydantic's
  EmailStr) accepts: it refuses special-use domains (`.local`, `.test`, ...) that the
  `email` format allows, a rule the OpenAPI document cannot state.
- `error_shape`: every error answer (4xx, 5xx) is our JSON error, with its status and the
  answer's X-Request-ID inside; under /api the RealWorld `{"errors": {"body": [...]}}`.
  The documented schemas say much of this already; this also covers answers no operation
  documents (405 for an unsupported method) and checks the values, not just the types.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import jwt
import schemathesis
from hypothesis import strategies
from pydantic import EmailStr, TypeAdapter, ValidationError
from schemathesis import Case, CheckContext, HookContext, Response

from service.auth import create_token
from service.config import Settings, load_settings

ERROR_KEYS = {"status", "message", "request_id"}


_EMAIL = TypeAdapter(EmailStr)


def _accepted_email(value: str) -> bool:
    try:
        _EMAIL.validate_python(value)
    except ValidationError:
        return False
    return True


for email_format in ("email", "idn-email"):
    schemathesis.openapi.format(email_format, strategies.emails().filter(_accepted_email))


@cache
def _settings() -> Settings:
    return load_settings()  # the same environment as the server's: same SECRET_KEY


_token_version = 0  # the fuzz user's, as the last credential change left it


@schemathesis.hook
def after_call(context: HookContext, case: Case, response: Response) -> None:
    global _token_version
    if case.method.upper() == "PUT" and case.path == "/api/user" and response.status_code == 200:
        token = response.json()["user"]["token"]
        secret = _settings().secret_key.get_secret_value()
        _token_version = jwt.decode(token, secret, algorithms=["HS256"])["ver"]


@schemathesis.auth(refresh_interval=None)  # a new token for every request
class FreshToken:
    def get(self, case: Case, context: Any) -> str:
        return create_token(_settings(), int(os.environ["FUZZ_USER_ID"]), _token_version)

    def set(self, case: Case, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Token {data}"}


def _is_realworld(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


@schemathesis.check
def error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"error answered as {content_type!r}"
    body = response.json()
    if _is_realworld(case.operation.path):
        assert isinstance(body, dict) and set(body) == {"errors"}, f"not a RealWorld error: {body}"
        errors = body["errors"]
        assert isinstance(errors.get("body"), list) and errors["body"], f"no messages: {body}"
        for messages in errors.values():
            assert all(isinstance(message, str) for message in messages), body
        return True
    assert isinstance(body, dict) and set(body) == {"error"}, f"not our error shape: {body}"
    error = body["error"]
    assert ERROR_KEYS <= set(error) <= ERROR_KEYS | {"details", "details_omitted"}, (
        f"unexpected keys: {error}"
    )
    assert error["status"] == response.status_code, f"status {error['status']} in the body"
    request_id = response.headers.get("x-request-id", [None])[0]
    assert error["request_id"] == request_id, "the body's request_id is not X-Request-ID's"
    return True
