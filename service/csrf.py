"""CSRF protection for the HTML page's form posts.

The page's forms carry a token that must equal the `csrf_token` cookie (double
submit), and a browser post whose `Origin` or `Sec-Fetch-Site` names another site
is refused with 400. A client that sends no browser headers and no cookie (the
seed's `curl -X POST /add -d task=...`) is not a browser and passes; JSON API
routes do not use this at all (cross-site JSON needs a CORS preflight).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

from quart import Response, g, request

from service.errors import BadRequest

CSRF_COOKIE = "csrf_token"
CSRF_FIELD = "csrf_token"
SAME_SITE_FETCHES = frozenset({"same-origin", "none"})

P = ParamSpec("P")
R = TypeVar("R")


def csrf_token() -> str:
    """This browser's token (from its cookie), or a new one set by `set_csrf_cookie`."""
    token = g.get("csrf_token")
    if token is None:
        token = request.cookies.get(CSRF_COOKIE)
        if not token or len(token) > 128:
            token = secrets.token_urlsafe(32)
            g.new_csrf_token = True
        g.csrf_token = token
    return token


def set_csrf_cookie(response: Response) -> Response:
    if g.get("new_csrf_token"):
        response.set_cookie(
            CSRF_COOKIE,
            g.csrf_token,
            httponly=True,
            samesite="Strict",
            secure=request.scheme == "https",
        )
    return response


async def check_form_origin() -> None:
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in SAME_SITE_FETCHES:
        raise BadRequest("cross-site form submissions are refused")
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise BadRequest("cross-site form submissions are refused")
    cookie = request.cookies.get(CSRF_COOKIE)
    sent = (await request.form).get(CSRF_FIELD)
    from_a_browser = fetch_site is not None or origin is not None or cookie is not None
    token_matches = bool(sent and cookie and hmac.compare_digest(sent.encode(), cookie.encode()))
    if (from_a_browser or sent is not None) and not token_matches:
        raise BadRequest("missing or invalid CSRF token: reload the page and try again")


def csrf_protect(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        await check_form_origin()
        return await view(*args, **kwargs)

    return wrapper
