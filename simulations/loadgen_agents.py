"""Simulated agents for the load test: one websocket each, all in one aiohttp session.

An agent accepts each offer after a short delay, completes the contact after a handle time, and
is then free again (the demo queues have no wrap-up). An agent the server sets ``away`` after a
missed offer sets itself available again. Replies are matched to requests by ``ref``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from simulations.loadgen_track import Tracker, clock

_REPLY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Behaviour:
    accept_delay: tuple[float, float] = (0.01, 0.05)  # seconds, uniform
    handle_time: tuple[float, float] = (0.2, 1.0)


class SimAgent:
    def __init__(
        self,
        agent_id: str,
        ws: aiohttp.ClientWebSocketResponse,
        tracker: Tracker,
        behaviour: Behaviour,
        rng: random.Random,
    ) -> None:
        self.id = agent_id
        self.ws = ws
        self.tracker = tracker
        self.behaviour = behaviour
        self.rng = rng
        self.loop = asyncio.get_running_loop()
        self.serving = True
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.refs = itertools.count(1)
        self.tasks: set[asyncio.Task[None]] = set()
        self.reader = asyncio.create_task(self._read(), name=f"agent-{agent_id}")

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one action and wait for the reply that echoes its ``ref``."""
        ref = next(self.refs)
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.waiting[ref] = future
        message["ref"] = ref
        try:
            await self.ws.send_str(orjson.dumps(message).decode())
            return await asyncio.wait_for(future, _REPLY_TIMEOUT)
        finally:
            self.waiting.pop(ref, None)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _read(self) -> None:
        tracker = self.tracker
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            now = clock()
            data = orjson.loads(msg.data)
            ref = data.get("ref")
            if ref is not None:
                future = self.waiting.pop(ref, None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            kind = data.get("type")
            if kind == "offer":
                cid = data["contact"]["id"]
                rid = data["reservation_id"]
                tracker.offered_to(cid, rid, self.id, now)
                if self.serving:
                    self._spawn(self._serve(cid, rid))
            elif kind == "rescinded":
                tracker.rescinded(data["reservation_id"], now)
            elif kind == "state" and data.get("state") == "away" and self.serving:
                self._spawn(self._available())

    async def _available(self) -> None:
        reply = await self.request({"type": "state", "state": "available"})
        if reply.get("type") != "state":
            self.tracker.error(f"state: {reply.get('title', reply.get('type'))}")

    async def _serve(self, contact_id: str, reservation_id: str) -> None:
        lo, hi = self.behaviour.accept_delay
        await asyncio.sleep(self.rng.uniform(lo, hi))
        started = clock()
        try:
            reply = await self.request({"type": "accept", "reservation_id": reservation_id})
        except (TimeoutError, ConnectionError, RuntimeError):
            self.tracker.error("accept: no reply")
            return
        if reply.get("type") != "accepted":
            # Losing a race with a rescind is normal; anything else is counted as an error.
            title = str(reply.get("title", reply.get("type")))
            self.tracker.accept_failed(title)
            if reply.get("status") != 409:
                self.tracker.error(f"accept: {title}")
            return
        self.tracker.accept_done(reservation_id, clock() - started)
        lo, hi = self.behaviour.handle_time
        await asyncio.sleep(self.rng.uniform(lo, hi))
        try:
            reply = await self.request({"type": "complete", "contact_id": contact_id})
        except (TimeoutError, ConnectionError, RuntimeError):
            self.tracker.error("complete: no reply")
            return
        if reply.get("type") == "completed":
            self.tracker.completed_one(contact_id)
        else:
            self.tracker.error(f"complete: {reply.get('title', reply.get('type'))}")

    async def stop(self) -> None:
        """Stop taking offers, drop unfinished work, close the socket."""
        self.serving = False
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


async def connect(
    session: aiohttp.ClientSession,
    ws_url: str,
    token: str,
    agent_ids: Iterable[str],
    tracker: Tracker,
    behaviour: Behaviour,
    seed: int,
    concurrency: int = 64,
) -> list[SimAgent]:
    """Open one socket per agent, then set each available over its socket."""
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    base = ws_url.rstrip("/")

    async def one(index: int, agent_id: str) -> SimAgent:
        async with gate:
            ws = await session.ws_connect(
                f"{base}/v1/agents/{agent_id}/ws",
                headers=headers,
                heartbeat=None,
                autoping=True,
                max_msg_size=1 << 20,
            )
            agent = SimAgent(agent_id, ws, tracker, behaviour, random.Random(seed * 7919 + index))
            reply = await agent.request({"type": "state", "state": "available"})
            if reply.get("type") != "state":
                raise RuntimeError(f"agent {agent_id} could not go available: {reply}")
            return agent

    return list(await asyncio.gather(*(one(i, a) for i, a in enumerate(agent_ids))))


async def disconnect(agents: list[SimAgent]) -> None:
    await asyncio.gather(*(agent.stop() for agent in agents))
