"""End-to-end fixtures: the real app factory on the session redis-server, driven over HTTP.

``api`` is a thin client for one fresh tenant (an admin and a gateway token), with helpers for
what every test here does: post native channel payloads, put agents and customers, open an
agent's desktop websocket, and read the store's footprint to prove a rejected call left none.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from config.settings import Settings
from queues.keys import tenant_prefix
from router.app import create_app

ADMIN_TOKEN = "e2e-admin-3f9c2b7d1a"
GATEWAY_TOKEN = "e2e-gateway-8e41c6a0f5"
SAMPLES = Path(__file__).resolve().parent.parent / "channels" / "samples"
WAIT = 5.0  # seconds to wait for a pushed message before failing

Client = TestClient[web.Request, web.Application]


def e2e_settings(tenant: str, **overrides: Any) -> Settings:
    """Settings for one tenant: a bootstrap admin token and a gateway token."""
    values: dict[str, Any] = {
        "admin_token": ADMIN_TOKEN,
        "default_tenant": tenant,
        "tokens": {GATEWAY_TOKEN: f"gateway:{tenant}"},
        **overrides,
    }
    return Settings(**values)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


class Desk:
    """An agent's websocket: reads pushed messages by type; one read while waiting for
    another type is kept for a later ``next`` of its type (an offer may come before the
    reply to the state change that caused it)."""

    def __init__(self, agent_id: str, ws: ClientWebSocketResponse) -> None:
        self.agent_id = agent_id
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.unread: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_json(message)

    async def next(self, kind: str, wait: float = WAIT) -> dict[str, Any]:
        """The next message of type ``kind`` (every message is kept in ``seen``)."""
        for i, data in enumerate(self.unread):
            if data.get("type") == kind:
                return self.unread.pop(i)
        async with asyncio.timeout(wait):
            while True:
                data = await _read(self.ws, kind)
                self.seen.append(data)
                if data.get("type") == kind:
                    return data
                self.unread.append(data)

    async def quiet(self, kind: str, seconds: float = 0.5) -> None:
        """Fail if a ``kind`` message arrives within ``seconds``."""
        try:
            got = await self.next(kind, seconds)
        except TimeoutError:
            return
        raise AssertionError(f"{self.agent_id} unexpectedly got {got}")

    async def take(self, offer: dict[str, Any], disposition: str) -> None:
        """Accept the offer, then complete the contact with a disposition."""
        await self.send({"type": "accept", "reservation_id": offer["reservation_id"]})
        await self.next("accepted")
        contact_id = offer["contact"]["id"]
        await self.send({"type": "complete", "contact_id": contact_id, "disposition": disposition})
        done = await self.next("completed")
        assert done["contact"]["status"] == "completed", done


async def next_of(
    ws: ClientWebSocketResponse, kind: str, seen: list[dict[str, Any]], wait: float = WAIT
) -> dict[str, Any]:
    """Read ``ws`` until a JSON message of type ``kind``; ``TimeoutError`` if none comes."""
    async with asyncio.timeout(wait):
        while True:
            data = await _read(ws, kind)
            seen.append(data)
            if data.get("type") == kind:
                return data


async def _read(ws: ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    msg = await ws.receive()
    if msg.type != WSMsgType.TEXT:
        raise AssertionError(f"socket closed or non-text while waiting for {kind}: {msg}")
    data: dict[str, Any] = msg.json()
    return data


class Api:
    """HTTP calls as a gateway (default) or an admin, asserting the expected status."""

    def __init__(self, client: Client, tenant: str, redis: Redis | None = None) -> None:
        self.client = client
        self.tenant = tenant
        self.redis = redis
        self.desks: list[Desk] = []

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def call(
        self,
        method: str,
        path: str,
        status: int,
        *,
        json: Any = None,
        data: Any = None,
        content_type: str | None = None,
        token: str = GATEWAY_TOKEN,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The parsed JSON body; fails with the body's text if the status differs."""
        headers = {**self.auth(token), **(headers or {})}
        if content_type is not None:
            headers["Content-Type"] = content_type
        async with self.client.request(method, path, json=json, data=data, headers=headers) as resp:
            text = await resp.text()
            assert resp.status == status, f"{method} {path}: {resp.status} {text}"
            if status >= 400:
                assert resp.content_type == "application/problem+json", resp.content_type
            return await resp.json(content_type=None) if text else None

    async def voice(self, payload: dict[str, Any], status: int = 201) -> Any:
        return await self.call("POST", "/v1/channels/voice", status, json=payload)

    async def sms(self, payload: dict[str, Any], status: int = 201) -> Any:
        return await self.call("POST", "/v1/channels/sms", status, json=payload)

    async def email(self, raw: bytes, status: int = 201) -> Any:
        return await self.call(
            "POST", "/v1/channels/email", status, data=raw, content_type="message/rfc822"
        )

    async def put_customer(self, customer_id: str, status: int = 201, **body: Any) -> Any:
        return await self.call("PUT", f"/v1/customers/{customer_id}", status, json=body)

    async def customer(self, customer_id: str, status: int = 200) -> Any:
        return await self.call("GET", f"/v1/customers/{customer_id}", status)

    async def waiting(self) -> dict[str, int]:
        """Queue name -> contacts waiting, from ``GET /v1/queues``."""
        body = await self.call("GET", "/v1/queues", 200)
        return {q["name"]: q["waiting"] for q in body["queues"]}

    async def desk(
        self, agent_id: str, skills: dict[str, int], capacity: dict[str, int] | None = None
    ) -> Desk:
        """Create the agent (admin), open its websocket and set it available."""
        body = {"name": agent_id.title(), "skills": skills, "capacity": capacity or {"voice": 1}}
        await self.call("PUT", f"/v1/agents/{agent_id}", 201, json=body, token=ADMIN_TOKEN)
        ws = await self.client.ws_connect(
            f"/v1/agents/{agent_id}/ws", headers=self.auth(ADMIN_TOKEN)
        )
        desk = Desk(agent_id, ws)
        self.desks.append(desk)
        await desk.send({"type": "state", "state": "available", "ref": "go"})
        while (await desk.next("state")).get("ref") != "go":
            pass
        return desk

    async def footprint(self) -> tuple[set[Any], dict[Any, Any], dict[Any, Any]]:
        """Every key of the tenant, and the identity and message-id indexes (needs Redis)."""
        assert self.redis is not None
        prefix = tenant_prefix(self.tenant)
        keys = {k async for k in self.redis.scan_iter(match=prefix + "*", count=1000)}
        identities = await self.redis.hgetall(prefix + "ids")
        messages = await self.redis.hgetall(prefix + "msg")
        return keys, identities, messages

    async def close(self) -> None:
        for desk in self.desks:
            await desk.ws.close()


@pytest.fixture
async def api(
    aiohttp_client: AiohttpClient, redis_url: str, redis_client: Redis, tenant: str
) -> AsyncIterator[Api]:
    """The real app on the session redis-server, for a tenant no other test uses."""
    client = await aiohttp_client(create_app(e2e_settings(tenant, redis_url=redis_url)))
    api = Api(client, tenant, redis_client)
    yield api
    await api.close()


def short_email(sender: str, message_id: str, in_reply_to: str = "") -> bytes:
    """A minimal raw email from ``sender`` with its Message-ID, replying to ``in_reply_to``."""
    reply = f"In-Reply-To: <{in_reply_to}>\n" if in_reply_to else ""
    return (
        f"From: {sender}\nTo: help@bank.example\nMessage-ID: <{message_id}>\n{reply}"
        "Subject: Card question\nContent-Type: text/plain; charset=utf-8\n\nHello there.\n"
    ).encode()
