"""Bearer tokens: static admin/gateway tokens from settings, signed expiring agent tokens.

An agent token is ``sba1.<tenant>.<agent>.<expires unix s>.<signature>``, the signature an
HMAC-SHA256 over the rest with the tenant's signing key. The key comes from settings or, when
unset, is created once in Redis (SET NX) so every instance on that Redis verifies the same
tokens. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from redis.asyncio import Redis

from queues.keys import Keys, valid_id, valid_tenant

RoleName = Literal["admin", "gateway", "agent"]
_PREFIX = "sba1"


def bearer_token(request: web.Request) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; '' without one."""
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a role within one tenant (agents are bound to one agent id)."""

    role: RoleName
    tenant: str
    agent_id: str | None = None
    #: when an agent token stops being valid (Unix seconds); None: a static token
    expires: float | None = None

    def may_act_as_agent(self, agent_id: str) -> bool:
        return self.role == "admin" or (self.role == "agent" and self.agent_id == agent_id)


class AuthError(Exception):
    """401: no token or a token that does not verify."""


class TokenIssuer:
    """Mints and verifies agent tokens; keeps each tenant's signing key in memory once read."""

    def __init__(self, redis: Redis | None, secret: bytes | None) -> None:
        self._redis = redis
        self._secret = secret
        self._keys: dict[str, bytes] = {}

    async def key(self, tenant: str, create: bool) -> bytes | None:
        """The tenant's signing key; created in Redis only when minting (``create``)."""
        found = self._keys.get(tenant)
        if found is not None:
            return found
        if self._secret is not None:
            found = hmac.new(self._secret, tenant.encode(), hashlib.sha256).digest()
        else:
            assert self._redis is not None
            name = Keys(tenant).signing_key()
            if create:
                await self._redis.set(name, secrets.token_hex(32), nx=True)
            stored = await self._redis.get(name)
            if stored is None:
                return None
            found = bytes.fromhex(stored.decode() if isinstance(stored, bytes) else str(stored))
        self._keys[tenant] = found
        return found

    async def mint(self, tenant: str, agent_id: str, ttl_s: int, now_s: float) -> tuple[str, int]:
        expires = math.ceil(now_s) + ttl_s  # never shorter than asked
        body = f"{_PREFIX}.{tenant}.{agent_id}.{expires}"
        key = await self.key(tenant, create=True)
        assert key is not None
        return f"{body}.{_sign(key, body)}", expires

    async def verify(self, token: str, now_s: float | None = None) -> Principal:
        if not token.isascii():
            # (a token this issuer minted is ASCII; hmac.compare_digest refuses other text)
            raise AuthError("malformed token")
        head, _, rest = token.partition(".")
        pieces = rest.rsplit(".", 2)
        if head != _PREFIX or len(pieces) != 3 or "." not in pieces[0]:
            raise AuthError("unknown token")
        scope, expires, signature = pieces
        tenant, _, agent_id = scope.partition(".")
        well_formed = expires.isascii() and expires.isdigit()
        if not valid_tenant(tenant) or not valid_id(agent_id) or not well_formed:
            raise AuthError("malformed token")
        key = await self.key(tenant, create=False)
        if key is None:
            raise AuthError("token signature does not verify")
        expected = _sign(key, f"{_PREFIX}.{scope}.{expires}")
        if not hmac.compare_digest(expected, signature):
            raise AuthError("token signature does not verify")
        if int(expires) < (time.time() if now_s is None else now_s):
            raise AuthError("token expired")
        return Principal("agent", tenant, agent_id, float(expires))


def _sign(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Authenticator:
    """Bearer token -> Principal."""

    def __init__(
        self, static: dict[str, tuple[Literal["admin", "gateway"], str]], issuer: TokenIssuer
    ) -> None:
        self._static = [(t.encode(), role, tenant) for t, (role, tenant) in static.items()]
        self.issuer = issuer

    async def principal(self, token: str | None) -> Principal:
        if not token:
            raise AuthError("missing bearer token")
        if token.startswith(_PREFIX + "."):
            return await self.issuer.verify(token)
        # aiohttp hands header bytes that are not UTF-8 over as surrogates: compare those bytes
        given = token.encode("utf-8", "surrogateescape")
        for known, role, tenant in self._static:
            if hmac.compare_digest(known, given):
                return Principal(role, tenant)
        raise AuthError("unknown token")
