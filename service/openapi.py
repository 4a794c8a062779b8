"""The OpenAPI document: quart-schema's, completed with what it cannot see on its own.

quart-schema documents a route's request, query string and success answers. This adds
what the routes' contracts imply, so that a client (or a fuzzer) can rely on the
document for every answer:

- the error answers each operation can give, in our error shape (`ErrorOut`, and under
  /api the RealWorld `RealWorldErrorOut`): 404 for a path parameter, 400/413/415/422 for
  a body, 400 (422 under /api) for a query string, 401 for a token, plus whatever a
  route declares with `documents_errors`;
- the token security scheme (`Authorization: Token <jwt>`, RealWorld's form);
- answers that are not JSON models: a model with an `openapi_response` class attribute
  is documented by it (`NoContent` for 204, `SeeOther` for the page's redirects, files);
- paths where a typed parameter follows an untyped one (`<slug>/comments/<id:...>`),
  which quart-schema's pattern merges into one.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, TypeAdapter
from quart_schema import DataSource, OpenAPIProvider, security_scheme
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
)
from werkzeug.routing.rules import Rule

from service.errors import ErrorOut, RealWorldErrorOut

F = TypeVar("F", bound=Callable[..., Any])

TOKEN_SCHEME = "Token"  # noqa: S105 - the security scheme's name, not a secret
SECURITY_SCHEMES = {
    TOKEN_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Token <jwt>` (RealWorld's form) or `Bearer <jwt>`: the token from login",
    }
}
# The token is required / the token is optional (it personalises the answer).
token_required = security_scheme([{TOKEN_SCHEME: []}])
token_optional = security_scheme([{}, {TOKEN_SCHEME: []}])

DOCUMENTED_ERRORS_ATTRIBUTE = "_service_documented_errors"
# quart-schema's own pattern, `<(?:[^:]*:)?([^>]+)>`, lets `[^:]*` run across `>` into the
# next parameter, so `<slug>/comments/<id:comment_id>` became `{comment_id}`.
PATH_PARAMETER = re.compile(r"<(?:[^:<>]*:)?([^<>]+)>")
SCHEMA_REF = "#/components/schemas/{model}"

ERROR_DESCRIPTIONS = {
    400: "malformed JSON body, bad query parameters, or a refused form post",
    401: "missing, invalid, expired or logged-out token",
    403: "the token's user may not do this",
    404: "no such resource (or an id that is not a positive 32-bit integer)",
    409: "conflicts with the current state",
    412: "If-Match names a version the resource no longer has; nothing changed",
    413: "body larger than MAX_CONTENT_LENGTH",
    415: "body is not application/json",
    422: "the body (under /api: also the query string) fails validation",
    429: "too many attempts: Retry-After says when to try again",
}


class NoContent(BaseModel):
    """204: done, nothing to send back (`@document_response(NoContent, 204)`)."""

    openapi_response: ClassVar[dict[str, Any]] = {"description": "No Content"}


class SeeOther(BaseModel):
    """303 to the page, after an HTML form post."""

    openapi_response: ClassVar[dict[str, Any]] = {
        "description": "See Other: back to the page",
        "headers": {"Location": {"schema": {"type": "string"}}},
    }


def documents_errors(*statuses: int) -> Callable[[F], F]:
    """Error answers a route gives on purpose beyond the ones its contract implies
    (403 for another user's resource, 409 for a conflict, ...)."""

    def decorator(view: F) -> F:
        known = getattr(view, DOCUMENTED_ERRORS_ATTRIBUTE, frozenset())
        setattr(view, DOCUMENTED_ERRORS_ATTRIBUTE, known | frozenset(statuses))
        return view

    return decorator


def _component(model: type[BaseModel]) -> dict[str, Any]:
    """The model's schema and its nested models, all as named components."""
    schema = TypeAdapter(model).json_schema(ref_template=SCHEMA_REF, mode="serialization")
    definitions = schema.pop("$defs", {})
    return {**definitions, model.__name__: schema}


def _error_response(status: int, model: type[BaseModel]) -> dict[str, Any]:
    phrase = HTTPStatus(status).phrase
    return {
        "description": f"{phrase}: {ERROR_DESCRIPTIONS.get(status, phrase.lower())}",
        "content": {
            "application/json": {"schema": {"$ref": SCHEMA_REF.format(model=model.__name__)}}
        },
    }


def _is_realworld(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


class ServiceOpenAPIProvider(OpenAPIProvider):
    def schema(self) -> dict[str, Any]:
        document = super().schema()
        components = document["components"]
        components["schemas"].update(_component(ErrorOut))
        components["schemas"].update(_component(RealWorldErrorOut))
        components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
        return document

    def build_paths(self, rule: Rule) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        path = PATH_PARAMETER.sub(r"{\1}", rule.rule)
        view = self._app.view_functions[rule.endpoint]
        operations = {
            method: self._with_errors(path, rule, view, operation)
            for operations in paths.values()
            for method, operation in operations.items()
        }
        return {path: operations}, components

    def build_response_object(
        self, model: type[BaseModel], headers_model: type[BaseModel] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # Answers that are not a JSON model (no body, a redirect, a file) say what they are.
        response = getattr(model, "openapi_response", None)
        if response is not None:
            return copy.deepcopy(response), {}
        return super().build_response_object(model, headers_model)

    def _with_errors(
        self, path: str, rule: Rule, view: Callable[..., Any], operation: dict[str, Any]
    ) -> dict[str, Any]:
        realworld = _is_realworld(path)
        statuses = set(getattr(view, DOCUMENTED_ERRORS_ATTRIBUTE, ()))
        if rule.arguments:
            statuses.add(404)
        request_data = getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
        if request_data is not None:
            model, source = request_data
            statuses |= {400, 413, 422}
            if source == DataSource.JSON:
                statuses.add(415)
            # A JSON route refuses a request without a body (415), a form one when the form
            # has required fields (422): quart-schema leaves `required` out (false).
            if source == DataSource.JSON or any(
                field.is_required() for field in model.model_fields.values()
            ):
                operation = {
                    **operation,
                    "requestBody": {**operation["requestBody"], "required": True},
                }
        if getattr(view, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, None) is not None:
            statuses.add(422 if realworld else 400)
        if operation.get("security"):
            statuses.add(401)
        error_model = RealWorldErrorOut if realworld else ErrorOut
        # A copy: quart-schema shares one responses dict between a rule's methods.
        responses = dict(operation["responses"])
        for status in sorted(statuses):
            responses.setdefault(status, _error_response(status, error_model))
        return {**operation, "responses": dict(sorted(responses.items()))}
