"""Every JSON route is validated and documented (tozo's meta-test)."""

from __future__ import annotations

from quart import Quart
from quart.testing import QuartClient
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
    QUART_SCHEMA_RESPONSE_ATTRIBUTE,
)

# Framework routes that are not part of our API.
NOT_OURS = {"static", "openapi", "swagger_ui", "redoc_ui", "scalar_ui"}
BODYLESS_RESPONSES = {
    "items.delete_item",
    "faults.error",
    "articles.delete_article",
    "comments.delete_comment",
    "todos.delete_todo",
    "exports.download_export",  # the file itself
    "metrics.metrics",  # the Prometheus text format
    # The HTML page and its form posts answer with HTML or a 303 redirect.
    "pages.index",
    "pages.add",
    "pages.toggle",
    "pages.delete",
    "pages.export",
}
# POSTs that act on the path alone (RealWorld sends no body, or one we ignore).
BODYLESS_REQUESTS = {"users.logout", "users.follow", "articles.favorite"}


def test_every_route_declares_its_contract(app: Quart) -> None:
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_OURS:
            continue
        view = app.view_functions[rule.endpoint]
        methods = rule.methods or set()
        if (
            methods & {"POST", "PUT", "PATCH"}
            and rule.endpoint not in BODYLESS_REQUESTS
            and not hasattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE)
        ):
            missing.append(f"{rule.endpoint}: request body")
        if rule.endpoint not in BODYLESS_RESPONSES and not hasattr(
            view, QUART_SCHEMA_RESPONSE_ATTRIBUTE
        ):
            missing.append(f"{rule.endpoint}: response")
        if rule.endpoint.endswith(("list_products", "list_items")) and not hasattr(
            view, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE
        ):
            missing.append(f"{rule.endpoint}: query string")
    assert missing == []


async def test_openapi_lists_every_route(app: Quart, client: QuartClient) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    documented = {
        (path, method.upper())
        for path, operations in spec["paths"].items()
        for method in operations
    }

    expected = {
        ("/products", "GET"),
        ("/products", "POST"),
        ("/products/{product_id}", "GET"),
        ("/items", "GET"),
        ("/items", "POST"),
        ("/items/{item_id}", "GET"),
        ("/items/{item_id}", "PUT"),
        ("/items/{item_id}", "PATCH"),
        ("/items/{item_id}", "DELETE"),
        ("/health", "GET"),
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/slow", "GET"),
        ("/error", "GET"),
        ("/todos", "GET"),
        ("/todos", "POST"),
        ("/todos/{todo_id}", "GET"),
        ("/todos/{todo_id}", "PUT"),
        ("/todos/{todo_id}", "PATCH"),
        ("/todos/{todo_id}", "DELETE"),
        ("/export", "POST"),
        ("/exports/{export_id}", "GET"),
        ("/healthz/background", "GET"),
        ("/api/health", "GET"),
        ("/api/articles", "GET"),
        ("/api/users", "POST"),
    }
    assert expected <= documented
    assert (await client.get("/docs")).status_code == 200
