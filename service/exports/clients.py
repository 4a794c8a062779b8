"""Who is asking for an export: the key its pending-export limit counts against."""

from __future__ import annotations

from service.auth import optional_claims
from service.ratelimit import client_ip


async def client_key() -> str:
    """The key: "user:<id>" when a valid token comes with the request, else "ip:<address>".

    A user's exports count together from any address; without a token the client's IP
    (behind TRUSTED_PROXY_HOPS proxies, the one the outermost proxy saw). A bad token
    is a 401, as on every route that reads one.
    """
    claims = await optional_claims()
    if claims is not None:
        return f"user:{claims.user_id}"
    return f"ip:{client_ip()}"
