"""The page's form posts fail with an HTML page a person can read, not raw JSON.

errors.py stays the one place that decides an error's status and message; here its JSON
answer is re-dressed as HTML for a request that prefers HTML. Browsers say so (`Accept:
text/html,...`); curl (`*/*`), fetch with `Accept: application/json`, and clients sending
no Accept keep the JSON, so API clients of the same routes see no change.
"""

from __future__ import annotations

import logging

from quart import Response, render_template, request

logger = logging.getLogger(__name__)


def prefers_html() -> bool:
    # Ties (`*/*`, or no Accept at all) go to the first: JSON.
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


async def error_as_html(response: Response) -> Response:
    """`response`, or, when it is one of our JSON errors and the client prefers HTML, the
    same status and headers with the error page as body."""
    if response.status_code < 400 or response.mimetype != "application/json":
        return response
    if not prefers_html():
        return response
    body = await response.get_json(silent=True)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return response
    html = await render_template(
        "error.html",
        status=response.status_code,
        message=str(error.get("message", "")),
        request_id=str(error.get("request_id", "")),
        details=[d for d in error.get("details") or [] if isinstance(d, dict)],
    )
    response.set_data(html)
    response.mimetype = "text/html"  # Quart adds charset=utf-8 for text types
    return response
