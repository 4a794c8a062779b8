"""Behind a proxy: the forwarded client address and scheme, and the Host allow-list.

`TRUSTED_PROXY_HOPS` proxies in front each append to `X-Forwarded-For` (and set
`X-Forwarded-Proto` / `-Host`): hypercorn's ProxyFixMiddleware, outermost, replaces the
ASGI scope's client, scheme and Host with the values the outermost trusted proxy saw, so
the access log, the metrics, the spans, the CSRF cookie's `Secure` flag and the rate
limits' key all read the same request. With 0 hops the headers are never read.

`ALLOWED_HOSTS` names the hosts the service answers to; any other `Host` is a 400 before
a view runs, so a DNS-rebinding page (a name of the attacker's that resolves to us)
never reaches a route. The liveness and readiness probes are the exception: kubelets,
Docker's HEALTHCHECK, Caddy's health checks and cloud load balancers ask them by address
(`Host: 10.1.2.3:8000`), and they change nothing and tell nothing a page could use.
"""

from __future__ import annotations

from typing import Any

from hypercorn.middleware import ProxyFixMiddleware
from quart import request

from service.errors import BadRequest

PROBE_PATHS = frozenset({"/healthz", "/readyz"})


def trust_forwarded_headers(app: Any, trusted_hops: int) -> Any:
    """`app` behind `trusted_hops` proxies. With none, unwrapped: the middleware copies
    the whole scope on every request (tens of microseconds) even when it trusts nothing."""
    if trusted_hops == 0:
        return app
    # "legacy": the X-Forwarded-* headers Caddy and ingress-nginx send (not `Forwarded`).
    return ProxyFixMiddleware(app, mode="legacy", trusted_hops=trusted_hops)


def host_name(host: str) -> str:
    """The Host header without its port, lower-cased: `API.example.com:8443` ->
    `api.example.com`, `[::1]:8000` -> `[::1]`."""
    host = host.strip().lower()
    if host.endswith("]"):  # a bracketed IPv6 address without a port
        return host
    return host.rpartition(":")[0] if ":" in host else host


def require_allowed_host(allowed: frozenset[str]) -> Any:
    """A before_request hook: 400 unless the Host header names one of `allowed`.

    Written here rather than with werkzeug's `host_is_trusted`: that compares the header
    case-sensitively, IDNA-encodes every allowed name on every request, and never matches
    a bracketed IPv6 entry; this is one set lookup."""

    async def check_host() -> None:
        if request.path in PROBE_PATHS:
            return
        if host_name(request.headers.get("Host", "")) not in allowed:
            raise BadRequest("unknown Host: this service does not answer to that name")

    return check_host
