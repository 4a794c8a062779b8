"""The application factory. Nothing here does I/O at import time."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import orjson
from quart import Quart, Request, Response, current_app, request
from quart.json.provider import DefaultJSONProvider
from quart.sessions import SessionInterface
from quart_cors import cors
from quart_schema import DataSource, Info, QuartSchema
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter, ValidationError

from service import __version__
from service.config import Settings, load_settings
from service.db import init_database
from service.errors import BadRequest, UnsupportedMediaType, register_error_handlers
from service.exports.job import abandon_export, export_todos
from service.exports.life import JOB_NAME
from service.fields import PathSegmentConverter
from service.health.readiness import init_database_probe
from service.http_edge import HTTPEdgeMiddleware
from service.logs import configure_logging, mask_url_passwords
from service.metrics import UNMATCHED_ROUTE, process_exited, publish_process_metrics_forever
from service.middleware import ROUTE_TEMPLATE_KEY, RequestContextMiddleware
from service.openapi import ServiceOpenAPIProvider
from service.proxy import require_allowed_host, trust_forwarded_headers
from service.queue import init_queue, register_job
from service.ratelimit import init_rate_limits
from service.request_limits import LimitedFormDataParser, check_json_values
from service.telemetry import (
    name_server_span,
    route_template,
    setup_telemetry,
    shutdown_telemetry,
    wrap_asgi,
)

logger = logging.getLogger(__name__)


class IdConverter(IntegerConverter):
    """`<id:name>`: a positive id that fits PostgreSQL's INTEGER; anything else is a 404."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, min=1, max=2_147_483_647)

    def to_python(self, value: str) -> int:
        try:
            return super().to_python(value)
        except ValidationError:
            # A 404 for every method: left a ValidationError, werkzeug answers 405 when
            # another rule of the path allows some other method (PUT /items/0).
            raise NotFound() from None


class ServiceJSONProvider(DefaultJSONProvider):
    """Responses encoded by orjson (several times faster than the json module); request
    bodies still parsed by the json module, whose errors the handlers already report."""

    sort_keys = False
    ensure_ascii = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self._encode(obj).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        data = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(self._encode(data) + b"\n", mimetype=self.mimetype)

    def _encode(self, obj: Any) -> bytes:
        # Models are already plain data here (pydantic's mode="json"); `default` covers the
        # rest the way Flask's provider does (dates, decimals, UUIDs, dataclasses).
        return orjson.dumps(obj, default=self.default, option=orjson.OPT_NON_STR_KEYS)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError as error:  # deeply nested input: a client error, not a crash
            raise ValueError("JSON nested too deeply") from error


class NoSessionInterface(SessionInterface):
    """Nothing here keeps state in Quart's signed session cookie (the page's CSRF token has a
    cookie of its own), so no request pays for opening and saving one."""

    async def open_session(self, app: Quart, request: Any) -> None:
        return None

    async def save_session(self, app: Quart, session: Any, response: Any) -> None:
        return None


class ServiceRequest(Request):
    form_data_parser_class = LimitedFormDataParser  # MAX_FORM_FIELDS for every form

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if force or self.is_json:  # before the parser: see service/request_limits.py
            body = await self.get_data(cache=True, as_text=False)
            check_json_values(body, current_app.config["MAX_JSON_VALUES"])
        try:
            return await super().get_json(force=force, silent=silent, cache=cache)
        except UnicodeDecodeError:  # the body is decoded before it is parsed
            if silent:
                return None
            raise BadRequest("malformed JSON body") from None

    def on_json_loading_failed(self, error: Exception | None) -> Any:
        raise BadRequest("malformed JSON body")


def create_app(settings: Settings | None = None, *, owns_telemetry: bool = False) -> Quart:
    """The application. `owns_telemetry`: this app is the process's only one (the served
    app), so it flushes and stops the telemetry providers when it stops serving."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.service_name)
    setup_telemetry(settings, role="api")

    app = Quart(__name__)
    app.request_class = ServiceRequest
    app.session_interface = NoSessionInterface()
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_content_length,
        MAX_FORM_PARTS=settings.max_form_fields,
        MAX_JSON_VALUES=settings.max_json_values,
        # A body that trickles in: 408 once the handler has waited this long for it.
        BODY_TIMEOUT=settings.http_read_timeout,
        SECRET_KEY=settings.secret_key.get_secret_value(),
        SERVICE_NAME=settings.service_name,
        SLOW_ENDPOINT_DELAY=settings.slow_endpoint_delay,
    )
    app.extensions["settings"] = settings
    # quart-cors reads these for the /api blueprints; the rest of the app only gets CORS
    # when CORS_ORIGINS is set. An empty list (production without CORS_ORIGINS) matches no
    # origin, so no Access-Control-Allow-Origin is sent; settings refuse credentials with "*".
    app.config.update(
        QUART_CORS_ALLOW_ORIGIN=settings.cors_allowed_origins,
        QUART_CORS_ALLOW_CREDENTIALS=settings.cors_allow_credentials,
        QUART_CORS_EXPOSE_HEADERS=["X-Request-ID", "traceparent", "Retry-After"],
    )
    app.url_map.converters["id"] = IdConverter
    # `<slug>`, `<username>`, ...: a NUL character in the path is a 404, never a query.
    app.url_map.converters["default"] = PathSegmentConverter
    app.url_map.converters["string"] = PathSegmentConverter

    QuartSchema(
        app,
        info=Info(title=settings.service_name, version=__version__),
        pydantic_dump_options={"mode": "json"},
        openapi_provider_class=ServiceOpenAPIProvider,  # error answers, security, 204s
        # None: neither the document nor the three UIs that read it are routed (404).
        openapi_path="/openapi.json" if settings.api_docs else None,
    )
    # After QuartSchema, which installs its own provider: models are already plain data here.
    app.json = ServiceJSONProvider(app)
    _register_blueprints(app, settings)
    register_error_handlers(app)
    if settings.allowed_host_set is not None:  # first: an unknown Host reaches nothing else
        app.before_request(require_allowed_host(settings.allowed_host_set))
    app.before_request(_name_the_route)
    app.before_request(_require_json_body)

    init_database(app, settings)
    init_database_probe(app, settings)
    init_queue(app, settings)
    register_job(
        app,
        JOB_NAME,
        export_todos,
        max_tries=settings.export_max_tries,
        in_process_concurrency=settings.export_in_process_concurrency,
        abandoned=abandon_export,
    )
    init_rate_limits(app, settings)

    if settings.cors_origin_list:
        app = cors(app)

    @app.before_serving
    async def _start_observability() -> None:
        app.extensions["process_metrics"] = asyncio.create_task(publish_process_metrics_forever())

    @app.after_serving
    async def _stop_observability() -> None:
        task = app.extensions.pop("process_metrics", None)
        if task is not None:
            task.cancel()
        process_exited()
        if owns_telemetry:
            shutdown_telemetry()  # bounded by its deadline; the server is stopping anyway

    @app.before_serving
    async def _announce() -> None:
        # Everything loaded so far lives as long as the process: out of the collector's
        # sight, so that full collections under load only walk the requests' objects.
        gc.freeze()
        logger.info(
            "serving %s %s on %s",
            settings.service_name,
            __version__,
            mask_url_passwords(settings.database_url),
        )

    # Outermost the trusted proxies' X-Forwarded-* (client, scheme, Host), so that every
    # layer reads the same request; then the OpenTelemetry server span, so that request
    # ids, access lines and metrics are all recorded inside it.
    app.asgi_app = trust_forwarded_headers(  # type: ignore[method-assign]
        wrap_asgi(
            RequestContextMiddleware(HTTPEdgeMiddleware(app.asgi_app), environment=settings.app_env)
        ),
        settings.trusted_proxy_hops,
    )
    return app


def _register_blueprints(app: Quart, settings: Settings) -> None:
    from service.articles.comments import blueprint as comments
    from service.articles.routes import blueprint as articles
    from service.exports.routes import blueprint as exports
    from service.faults.routes import blueprint as faults
    from service.health.routes import blueprint as health
    from service.health.routes import metrics_blueprint
    from service.items.routes import blueprint as items
    from service.products.routes import blueprint as products
    from service.todos.pages import blueprint as pages
    from service.todos.routes import blueprint as todos
    from service.users.routes import blueprint as users

    for blueprint in (
        health,
        products,
        items,
        users,
        articles,
        comments,
        todos,
        exports,
        pages,
    ):
        app.register_blueprint(blueprint)
    # Not routed at all when off (a 404 like any unknown path): production keeps its test
    # endpoints and its metrics off the public port (`serve` gives /metrics its own).
    if settings.fault_endpoints:
        app.register_blueprint(faults)
    if settings.metrics_on_main_port:
        app.register_blueprint(metrics_blueprint)


async def _name_the_route() -> None:
    """The matched route's template names the server span and labels the metrics."""
    if request.url_rule is None:  # no route matched: never name anything by the raw path
        name_server_span(request.method, UNMATCHED_ROUTE, route_known=False)
        return
    template = route_template(request.url_rule.rule)
    request.scope[ROUTE_TEMPLATE_KEY] = template
    name_server_span(request.method, template)


async def _require_json_body() -> None:
    """415 when a route that reads a JSON body is sent something else."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    view = current_app.view_functions.get(request.endpoint or "")
    expected = getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
    if expected is not None and expected[1] == DataSource.JSON and not request.is_json:
        raise UnsupportedMediaType("send the body as application/json")
