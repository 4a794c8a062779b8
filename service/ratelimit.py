"""Rate limits on login, registration and email changes, counted by the `limits` library.

Every attempt on a limited route counts against the client's IP address and against
the account it names (the email; on registration the username too; on an email change
the user making it), in moving windows (RATE_LIMIT_* settings). A login also counts
against the pair (account, client IP), with a tighter limit than the account's own:
one address guessing a password is stopped long before the account is, so a stranger
cannot lock a user out from one address (it takes the account limit divided by the
pair limit, 5 by default, each guessing at full speed).

The counts live in Redis when REDIS_URL is set, so that every API process shares them,
else in this process's memory. Over a limit the answer is 429 with `Retry-After`, in
the usual error shape.

When Redis fails, the counts move to this process's memory for a while, with one
warning: a Redis outage neither turns logins into 500s nor switches the limits off.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import wraps
from typing import Any, Literal, ParamSpec, TypeVar

import redis.asyncio
from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from quart import Quart, Response, current_app, request

from service.config import Settings, parse_rate_limits
from service.errors import APIError, error_response

logger = logging.getLogger(__name__)

RouteGroup = Literal["login", "register", "email_change"]
# A login must not hang on a stuck Redis: each call gives up after this long, and the
# whole check after twice that, and the limiter falls back to memory.
REDIS_TIMEOUT_SECONDS = 0.5
# After a Redis failure the counts stay in memory this long before Redis is tried again,
# so an outage costs one timeout (and one warning) per interval, not one per request.
REDIS_RETRY_INTERVAL_SECONDS = 30.0
# Redis errors, connection and socket errors, and our own overall timeout.
STORAGE_FAILURES = (StorageError, redis.RedisError, OSError, TimeoutError)

P = ParamSpec("P")
R = TypeVar("R")


class TooManyRequests(APIError):
    status = 429
    message = "too many attempts, try again later"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__()
        self.retry_after_seconds = retry_after_seconds


async def _too_many_requests(error: TooManyRequests) -> Response:
    return error_response(
        error.status, error.message, headers={"Retry-After": str(error.retry_after_seconds)}
    )


def account_key(value: str) -> str:
    """Emails and usernames are stored hashed: Redis keys are not a list of our users."""
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.limits: dict[tuple[RouteGroup, str], list[RateLimitItem]] = {
            ("login", "ip"): parse_rate_limits(settings.rate_limit_login_per_ip),
            ("login", "account"): parse_rate_limits(settings.rate_limit_login_per_account),
            ("register", "ip"): parse_rate_limits(settings.rate_limit_register_per_ip),
            ("register", "account"): parse_rate_limits(settings.rate_limit_register_per_account),
            ("login", "account_ip"): parse_rate_limits(
                settings.rate_limit_login_per_account_and_ip
            ),
            ("email_change", "ip"): parse_rate_limits(settings.rate_limit_email_change_per_ip),
            ("email_change", "account"): parse_rate_limits(
                settings.rate_limit_email_change_per_user
            ),
        }
        self.redis_url = settings.redis_url
        self.key_prefix = f"{settings.service_name}:rate-limit"
        self.memory = MovingWindowRateLimiter(MemoryStorage())
        self.shared: MovingWindowRateLimiter | None = None
        self.redis_pool: redis.asyncio.ConnectionPool | None = None
        self.redis_retry_at = 0.0

    async def open(self) -> None:
        """In before_serving: the pool belongs to the serving event loop."""
        if self.redis_url is None:
            return
        # Our own pool, so that its timeouts are ours and we can close it.
        self.redis_pool = redis.asyncio.ConnectionPool.from_url(
            self.redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        storage = RedisStorage(
            f"async+{self.redis_url}",
            implementation="redispy",
            key_prefix=self.key_prefix,
            connection_pool=self.redis_pool,  # type: ignore[arg-type]
        )
        self.shared = MovingWindowRateLimiter(storage)

    async def close(self) -> None:
        if self.redis_pool is not None:
            await self.redis_pool.aclose()

    async def check(self, group: RouteGroup, accounts: Iterable[str]) -> None:
        """Count this attempt; raise TooManyRequests when the IP or an account is over."""
        ip = client_ip()
        keys = [("ip", ip)]
        for account in accounts:
            if (group, "account_ip") in self.limits:
                keys.append(("account_ip", f"{account_key(account)}:{ip}"))
            keys.append(("account", account_key(account)))
        if self.shared is not None and time.monotonic() >= self.redis_retry_at:
            try:
                async with asyncio.timeout(2 * REDIS_TIMEOUT_SECONDS):
                    return await self._hit(self.shared, group, keys)
            except STORAGE_FAILURES as error:
                self.redis_retry_at = time.monotonic() + REDIS_RETRY_INTERVAL_SECONDS
                logger.warning(
                    "rate limits: Redis failed (%s); counting in this process for %d s",
                    type(error).__name__,
                    REDIS_RETRY_INTERVAL_SECONDS,
                )
        await self._hit(self.memory, group, keys)

    async def _hit(
        self, limiter: MovingWindowRateLimiter, group: RouteGroup, keys: list[tuple[str, str]]
    ) -> None:
        # IP first: a client over its IP limit does not use up the accounts' attempts; and
        # the pair (account, IP) before the account: an address over its own limit for an
        # account does not use up that account's attempts, which its owner needs.
        for kind, key in keys:
            for item in self.limits[(group, kind)]:
                if not await limiter.hit(item, group, kind, key):
                    reset_at, _remaining = await limiter.get_window_stats(item, group, kind, key)
                    raise TooManyRequests(max(1, math.ceil(reset_at - time.time())))


def client_ip() -> str:
    """The client's address: the socket's peer, or behind TRUSTED_PROXY_HOPS proxies the
    address the outermost one saw (service/proxy.py has already put it in the scope), the
    same address the access log shows."""
    client = request.scope.get("client")
    return str(client[0]) if client else "unknown"


def init_rate_limits(app: Quart, settings: Settings) -> None:
    app.register_error_handler(TooManyRequests, _too_many_requests)
    if not settings.rate_limit_enabled:
        return
    limiter = RateLimiter(settings)
    app.extensions["rate_limiter"] = limiter
    app.before_serving(limiter.open)
    app.after_serving(limiter.close)


async def count_attempt(group: RouteGroup, accounts: Iterable[str]) -> None:
    """Count an attempt of this request (nothing when rate limits are off); raise
    TooManyRequests over a limit. For views that know the accounts only once they run."""
    limiter: RateLimiter | None = current_app.extensions.get("rate_limiter")
    if limiter is not None:
        await limiter.check(group, accounts)


def rate_limit(
    group: RouteGroup, *, accounts: Callable[[Any], Iterable[str]]
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Count the attempt before the view runs. Goes under `@validate_request`:
    `accounts` gets the validated body and names the accounts it is about."""

    def decorator(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(view)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            await count_attempt(group, accounts(kwargs["data"]))
            return await view(*args, **kwargs)

        return wrapper

    return decorator
