"""Two ``switchboard serve`` processes on one Redis: agents on A, contacts posted to B.

50 agents (chat capacity 2) hold websockets on instance A; 500 chat contacts are posted to
instance B concurrently. Offers cross instances through Redis pub/sub. Every agent accepts
every offer and completes after a few milliseconds. Nothing may be lost (all 500 end
``completed``) and nothing double-assigned (no contact or reservation accepted twice, no agent
ever holding more than its capacity).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from queues.embedded import EmbeddedRedis
from tests.router.conftest import ADMIN, GATEWAY, Served, shared_redis_env

AGENTS = 50
CONTACTS = 500
CAPACITY = 2


class Desk:
    """One simulated agent desktop: accept every offer, complete a moment later."""

    def __init__(self, agent_id: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.agent_id = agent_id
        self.ws = ws
        self.holding: set[str] = set()  # offered or assigned, not yet completed
        self.most_held = 0
        self.accepted: list[tuple[str, str]] = []  # (reservation, contact)
        self.completed: list[str] = []
        self.rescinded: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []

    async def run(self, done: Callable[[], None]) -> None:
        pending: set[asyncio.Task[None]] = set()
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            kind = data["type"]
            if kind == "offer":
                self.holding.add(data["contact"]["id"])
                self.most_held = max(self.most_held, len(self.holding))
                await self.ws.send_json(
                    {"type": "accept", "reservation_id": data["reservation_id"]}
                )
            elif kind == "accepted":
                contact_id = data["contact"]["id"]
                self.accepted.append((data["reservation_id"], contact_id))
                task = asyncio.create_task(self._complete_later(contact_id))
                pending.add(task)
                task.add_done_callback(pending.discard)
            elif kind == "completed":
                self.completed.append(data["contact"]["id"])
                done()
            elif kind == "rescinded":
                self.rescinded.append(data)
            elif kind == "error":
                self.errors.append(data)

    async def _complete_later(self, contact_id: str) -> None:
        await asyncio.sleep(random.uniform(0.0, 0.02))
        self.holding.discard(contact_id)  # capacity frees once complete is sent
        await self.ws.send_json({"type": "complete", "contact_id": contact_id})


@pytest.mark.slow
async def test_two_instances_lose_nothing_and_assign_once(
    serve_child: Callable[..., Served], redis_server: EmbeddedRedis, tenant: str
) -> None:
    """500 contacts via B to 50 agents on A: all completed, each accepted exactly once."""
    env = shared_redis_env(redis_server.url, tenant, SWITCHBOARD_LOG_LEVEL="warning")
    a = serve_child(env, name="a")
    b = serve_child(env, name="b")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    finished = asyncio.Event()
    count = Counter[str]()

    def done() -> None:
        count["completed"] += 1
        if count["completed"] == CONTACTS:
            finished.set()

    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def call(method: str, url: str, body: Any = None, **headers: str) -> Any:
            async with http.request(method, url, json=body, headers=headers) as resp:
                assert resp.status in (200, 201), (resp.status, await resp.text())
                return await resp.json()

        desks: list[Desk] = []
        for i in range(AGENTS):
            agent_id = f"agent{i:02d}"
            body = {"name": agent_id, "skills": {"billing": 5}, "capacity": {"chat": CAPACITY}}
            await call("PUT", f"{a.url}/v1/agents/{agent_id}", body, **admin)
            token = (await call("POST", f"{a.url}/v1/agents/{agent_id}/tokens", **admin))["token"]
            ws = await http.ws_connect(f"{a.url}/v1/agents/{agent_id}/ws?access_token={token}")
            await ws.send_json({"type": "state", "state": "available"})
            desks.append(Desk(agent_id, ws))
        readers = [asyncio.create_task(d.run(done)) for d in desks]
        await asyncio.sleep(0.2)  # every agent available before the burst

        gate = asyncio.Semaphore(50)

        async def post(i: int) -> str:
            async with gate:
                made = await call(
                    "POST",
                    f"{b.url}/v1/contacts",
                    {"channel": "chat", "from": f"user{i}@example.com", "intent": "billing"},
                    Authorization=f"Bearer {GATEWAY}",
                    **{"Idempotency-Key": f"two-process-{i}"},
                )
                return str(made["id"])

        contact_ids = await asyncio.gather(*(post(i) for i in range(CONTACTS)))
        with contextlib.suppress(TimeoutError):  # what is missing is reported below
            await asyncio.wait_for(finished.wait(), 40)

        async def status(contact_id: str) -> tuple[str, str | None]:
            async with gate:
                got = await call("GET", f"{b.url}/v1/contacts/{contact_id}", **admin)
                return got["status"], got["agent_id"]

        final = dict(zip(contact_ids, await asyncio.gather(*map(status, contact_ids)), strict=True))
        agents = [await call("GET", f"{a.url}/v1/agents/{d.agent_id}", **admin) for d in desks]
        for desk in desks:
            await desk.ws.close()
        await asyncio.gather(*readers)

    assert len(set(contact_ids)) == CONTACTS
    lost = {cid: st for cid, st in final.items() if st[0] != "completed"}
    assert lost == {}, f"{len(lost)} contacts not completed"
    accepted = [pair for d in desks for pair in d.accepted]
    assert len(accepted) == CONTACTS
    assert len({rid for rid, _ in accepted}) == CONTACTS  # no reservation accepted twice
    assert len({cid for _, cid in accepted}) == CONTACTS  # no contact accepted twice
    assert all(final[cid][1] == d.agent_id for d in desks for _, cid in d.accepted)
    assert max(d.most_held for d in desks) <= CAPACITY
    assert sum(len(d.completed) for d in desks) == CONTACTS
    assert [e for d in desks for e in d.errors] == []
    assert [r for d in desks for r in d.rescinded] == []
    assert all((x["load"], x["reservations"]) == ({}, []) for x in agents)
    assert sum(1 for d in desks if d.accepted) > AGENTS // 2  # the work was spread out
