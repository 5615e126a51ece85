"""Agent presence with two ``switchboard serve`` processes on one Redis.

A tab closing on one instance leaves an agent with a socket on the other as it is, and an
instance killed with SIGKILL (no socket closed, no shutdown) has its agents set offline by the
other instance within the instance timeout, while the other instance's agents stay available.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from queues.embedded import EmbeddedRedis
from tests.router.conftest import ADMIN, GATEWAY, Served, shared_redis_env

ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


class Tab:
    """One agent socket, read all along (so pings are answered) into ``messages``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


class Cluster:
    """Two instances and an admin's HTTP session."""

    def __init__(self, http: aiohttp.ClientSession, a: Served, b: Served) -> None:
        self.http = http
        self.a, self.b = a, b
        self.tabs: list[Tab] = []

    async def call(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        async with self.http.request(method, url, json=body, headers=headers or ADMIN_H) as resp:
            assert resp.status in (200, 201), (resp.status, await resp.text())
            return await resp.json()

    async def agent(self, agent_id: str) -> None:
        body = {"name": agent_id, "skills": {"billing": 5}, "capacity": {"chat": 1}}
        await self.call("PUT", f"{self.a.url}/v1/agents/{agent_id}", body)

    async def tab(self, on: Served, agent_id: str) -> Tab:
        token = (await self.call("POST", f"{on.url}/v1/agents/{agent_id}/tokens"))["token"]
        ws = await self.http.ws_connect(f"{on.url}/v1/agents/{agent_id}/ws?access_token={token}")
        self.tabs.append(Tab(ws))
        return self.tabs[-1]

    async def state(self, on: Served, agent_id: str, state: str) -> None:
        await self.call("POST", f"{on.url}/v1/agents/{agent_id}/state", {"state": state})

    async def get(self, on: Served, agent_id: str) -> dict[str, Any]:
        out: dict[str, Any] = await self.call("GET", f"{on.url}/v1/agents/{agent_id}")
        return out

    async def contact(self, on: Served, key: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {GATEWAY}", "Idempotency-Key": key}
        body = {"channel": "chat", "from": f"{key}@example.com", "intent": "billing"}
        out: dict[str, Any] = await self.call("POST", f"{on.url}/v1/contacts", body, headers)
        return out

    async def until_offline(self, on: Served, agent_id: str, within: float) -> float:
        """Seconds until the agent reads offline on ``on``; fails after ``within``."""
        started = time.monotonic()
        while (await self.get(on, agent_id))["state"] != "offline":
            assert time.monotonic() - started < within, f"{agent_id} still not offline"
            await asyncio.sleep(0.05)
        return time.monotonic() - started


@pytest.fixture
async def cluster(
    serve_child: Callable[..., Served], redis_server: EmbeddedRedis, tenant: str
) -> AsyncIterator[Cluster]:
    """Instances A and B on the session's Redis, taking an instance for dead after 1 s."""
    env = shared_redis_env(
        redis_server.url,
        tenant,
        SWITCHBOARD_INSTANCE_TIMEOUT_SECONDS="1",
        SWITCHBOARD_LOG_LEVEL="warning",
    )
    a = serve_child(env, name="a")
    b = serve_child(env, name="b")
    async with aiohttp.ClientSession() as http:
        made = Cluster(http, a, b)
        yield made
        for tab in made.tabs:
            await tab.close()


@pytest.mark.slow
async def test_closing_a_tab_on_a_keeps_the_agent_with_a_tab_on_b(cluster: Cluster) -> None:
    """Ann's tab on A closes while her tab on B stays: she stays available, keeps her offer,
    and is offered the next contact on B; closing B's tab then sets her offline."""
    a, b = cluster.a, cluster.b
    await cluster.agent("ann")
    on_a = await cluster.tab(a, "ann")
    on_b = await cluster.tab(b, "ann")
    await cluster.state(a, "ann", "available")
    await on_a.close()
    await asyncio.sleep(1.5)  # past the instance timeout too: B's beats keep her present
    assert (await cluster.get(b, "ann"))["state"] == "available"
    contact = await cluster.contact(a, "after-close")
    assert contact["agent_id"] == "ann"
    deadline = time.monotonic() + 5
    while not on_b.of("offer"):
        assert time.monotonic() < deadline, on_b.messages
        await asyncio.sleep(0.05)
    assert on_b.of("offer")[0]["reservation_id"] == contact["reservation_id"]
    await on_b.close()
    assert await cluster.until_offline(a, "ann", within=5) < 5
    assert (await cluster.get(a, "ann"))["reservations"] == []


@pytest.mark.slow
async def test_a_killed_instance_has_its_agents_set_offline(cluster: Cluster) -> None:
    """A is killed (SIGKILL): within its timeout, B sets offline ann (a tab on A only) and
    rescinds her offer, which goes to another agent; bob (a tab on B) and carol (tabs on both)
    stay available."""
    a, b = cluster.a, cluster.b
    for aid in ("ann", "bob", "carol"):
        await cluster.agent(aid)
    await cluster.tab(a, "ann")
    bob = await cluster.tab(b, "bob")
    await cluster.tab(a, "carol")
    carol = await cluster.tab(b, "carol")
    await cluster.state(a, "ann", "available")
    contact = await cluster.contact(b, "before-kill")
    assert contact["agent_id"] == "ann"
    await cluster.state(b, "bob", "available")
    await cluster.state(b, "carol", "available")
    await asyncio.sleep(0.5)  # A has beaten for its sockets since they opened
    a.process.kill()
    a.process.wait()
    took = await cluster.until_offline(b, "ann", within=5)
    assert took < 3  # (timeout 1 s, then B's timer loop: at most 0.1 s)
    ann = await cluster.get(b, "ann")
    assert (ann["reservations"], ann["load"]) == ([], {})
    moved = await cluster.call("GET", f"{b.url}/v1/contacts/{contact['id']}")
    assert moved["status"] == "offered"
    assert moved["agent_id"] in ("bob", "carol")
    await asyncio.sleep(1.5)  # past the timeout again: B still beats for bob's and carol's tabs
    assert [(await cluster.get(b, x))["state"] for x in ("bob", "carol")] == ["available"] * 2
    offered = [m["reservation_id"] for m in bob.of("offer") + carol.of("offer")]
    assert offered == [moved["reservation_id"]]
