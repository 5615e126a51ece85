"""Per-client request rate limits: a token bucket for each valid bearer token (or address without
one).

Off unless ``SWITCHBOARD_RATE_LIMIT_PER_SECOND`` is set. Each instance counts its own requests,
so N instances behind a balancer allow up to N times the rate. Websocket messages are not
HTTP requests and are not limited; the health and metrics endpoints never are. Over the limit,
a request is answered ``429`` (problem+json) with ``Retry-After`` and does nothing else.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from router import appkeys as k
from router.auth import AuthError, bearer_token
from router.problems import Problem

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: paths a scraper or probe must always reach
EXEMPT = frozenset({"/metrics", "/healthz", "/readyz"})
#: clients remembered (least recently seen forgotten first: a forgotten one starts full)
_CLIENTS = 65536


class Buckets:
    """Token buckets by client key: ``rate`` tokens a second, up to ``burst``."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if granted, else the seconds until one is available."""
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > _CLIENTS:
            self._buckets.popitem(last=False)
        return wait


async def client_key(request: web.Request) -> str:
    """The bearer token (hashed: never kept in clear) if it is a valid one, else the peer
    address: keyed by whatever the header says, a client guessing tokens would get a fresh
    bucket for each guess (and could push real clients' buckets out)."""
    token = bearer_token(request)
    if token:
        try:
            await request.app[k.AUTH].principal(token)
        except AuthError:
            pass
        else:
            return "t:" + hashlib.blake2b(token.encode(), digest_size=12).hexdigest()
    return "a:" + (request.remote or "")


def rate_limit_middleware(rate: float, burst: int) -> Any:
    buckets = Buckets(rate, float(burst or max(1, math.ceil(rate))))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in EXEMPT:
            wait = buckets.take(await client_key(request))
            if wait > 0:
                raise Problem(
                    429,
                    f"over the limit of {rate:g} requests a second for this client; retry later",
                    kind="rate-limited",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        return await handler(request)

    return middleware
