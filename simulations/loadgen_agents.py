"""Simulated agents for the load test: one websocket each.

An agent accepts each offer after a short delay, completes the contact after a handle time, and
is then free again (the demo queues have no wrap-up). An agent the server sets ``away`` after a
missed offer sets itself available again. At the end of a run ``finish`` cuts the pauses short:
what an agent holds is completed at once (without wrap-up), offers not yet accepted are left to
be withdrawn, and the agent goes offline. Replies are matched to requests by ``ref``; one
sweeper task fails the requests left unanswered past ``_REPLY_TIMEOUT``. The sockets are the
lean client of ``loadgen_ws`` (or aiohttp's, all in one session, with ``lean=False``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from simulations import loadgen_ws
from simulations.loadgen_track import Tracker, clock

_REPLY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Behaviour:
    accept_delay: tuple[float, float] = (0.01, 0.05)  # seconds, uniform
    handle_time: tuple[float, float] = (0.2, 1.0)


class _Socket(Protocol):
    async def send(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class _Lean:
    def __init__(self, sock: loadgen_ws.LeanSocket) -> None:
        self.sock = sock

    async def send(self, data: bytes) -> None:
        self.sock.send_text(data)

    async def close(self) -> None:
        await self.sock.close()


class _Aiohttp:
    """aiohttp's client websocket, read by a task that hands each message to the agent."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, agent: SimAgent) -> None:
        self.ws = ws
        self.reader = asyncio.create_task(self._read(agent), name=f"agent-{agent.id}")

    async def _read(self, agent: SimAgent) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                agent.on_text(msg.data)
        agent.on_close()

    async def send(self, data: bytes) -> None:
        await self.ws.send_str(data.decode())

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


class SimAgent:
    def __init__(
        self, agent_id: str, tracker: Tracker, behaviour: Behaviour, rng: random.Random
    ) -> None:
        self.id = agent_id
        self.tracker = tracker
        self.behaviour = behaviour
        self.rng = rng
        self.loop = asyncio.get_running_loop()
        self.serving = True
        self.socket: _Socket | None = None
        #: ref -> (future, deadline on ``clock``)
        self.waiting: dict[int, tuple[asyncio.Future[dict[str, Any]], float]] = {}
        self.refs = itertools.count(1)
        self.tasks: set[asyncio.Task[None]] = set()
        #: the run is ending: pauses end at once, contacts are completed without wrap-up
        self.hurry = False
        self.pauses: set[asyncio.Future[None]] = set()
        self.sweeper: asyncio.Task[None] | None = None  # shared by the agents of a connect

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one action and wait for the reply that echoes its ``ref``."""
        if self.socket is None:
            raise ConnectionResetError("not connected")
        ref = next(self.refs)
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.waiting[ref] = (future, clock() + _REPLY_TIMEOUT)
        message["ref"] = ref
        try:
            await self.socket.send(orjson.dumps(message))
            return await future
        finally:
            self.waiting.pop(ref, None)

    def expire(self, now: float) -> None:
        """Fail the requests whose reply is overdue (the sweeper calls this)."""
        for ref, (future, deadline) in list(self.waiting.items()):
            if deadline < now:
                del self.waiting[ref]
                if not future.done():
                    future.set_exception(TimeoutError(f"no reply to ref {ref}"))

    def on_close(self) -> None:
        waiting, self.waiting = self.waiting, {}
        for future, _ in waiting.values():
            if not future.done():
                future.set_exception(ConnectionResetError("websocket closed"))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_text(self, raw: bytes | str) -> None:
        now = clock()
        data = orjson.loads(raw)
        ref = data.get("ref")
        if ref is not None:
            entry = self.waiting.pop(ref, None)
            if entry is not None and not entry[0].done():
                entry[0].set_result(data)
            return
        kind = data.get("type")
        if kind == "offer":
            cid = data["contact"]["id"]
            rid = data["reservation_id"]
            self.tracker.offered_to(cid, rid, self.id, now)
            if self.serving:
                self._spawn(self._serve(cid, rid))
        elif kind == "rescinded":
            self.tracker.rescinded(data["reservation_id"], now)
        elif kind == "state" and data.get("state") == "away" and self.serving:
            self._spawn(self._available())

    async def _available(self) -> None:
        reply = await self.request({"type": "state", "state": "available"})
        if reply.get("type") != "state":
            self.tracker.error(f"state: {reply.get('title', reply.get('type'))}")

    async def _pause(self, span: tuple[float, float]) -> None:
        """Sleep a uniform time in ``span`` (``asyncio.sleep``'s timer and future, kept so
        that ``finish`` can end it early)."""
        delay = self.rng.uniform(*span)
        if self.hurry:
            return
        waiter: asyncio.Future[None] = self.loop.create_future()
        timer = self.loop.call_later(delay, _wake, waiter)
        self.pauses.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.pauses.discard(waiter)

    async def _serve(self, contact_id: str, reservation_id: str) -> None:
        await self._pause(self.behaviour.accept_delay)
        if not self.serving:
            return  # the run is ending: the offer is withdrawn when the agent goes offline
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
        await self._pause(self.behaviour.handle_time)
        complete: dict[str, Any] = {"type": "complete", "contact_id": contact_id}
        if self.hurry:
            complete["wrap_up_seconds"] = 0  # cleaning up, not serving: free the agent now
        try:
            reply = await self.request(complete)
        except (TimeoutError, ConnectionError, RuntimeError):
            self.tracker.error("complete: no reply")
            return
        if reply.get("type") == "completed":
            self.tracker.completed_one(contact_id)
        else:
            self.tracker.error(f"complete: {reply.get('title', reply.get('type'))}")

    async def finish(self, limit: float) -> bool:
        """Stop taking offers, complete at once what is held (waiting up to ``limit`` seconds
        for the accepts and completes under way), then go offline, which withdraws the offers
        still pending. False when the socket could not set the agent offline."""
        self.serving = False
        self.hurry = True
        for waiter in list(self.pauses):
            _wake(waiter)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=limit)
        if self.socket is None:
            return False
        try:
            reply = await self.request({"type": "state", "state": "offline"})
        except (TimeoutError, ConnectionError, RuntimeError):
            return False
        return reply.get("type") == "state"

    async def stop(self) -> None:
        """Stop taking offers, drop unfinished work, close the socket."""
        self.serving = False
        for task in list(self.tasks):
            task.cancel()
        if self.socket is not None:
            await self.socket.close()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def sweep(agents: list[SimAgent], every: float = 1.0) -> None:
    """Fail overdue requests of ``agents`` until cancelled (one task for all sockets)."""
    while True:
        await asyncio.sleep(every)
        now = clock()
        for agent in agents:
            if agent.waiting:
                agent.expire(now)


async def connect(
    session: aiohttp.ClientSession,
    ws_url: str,
    token: str,
    agent_ids: Iterable[str],
    tracker: Tracker,
    behaviour: Behaviour,
    seed: int,
    concurrency: int = 64,
    lean: bool = True,
) -> list[SimAgent]:
    """Open one socket per agent, then set each available over its socket."""
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    base = ws_url.rstrip("/")
    agents: list[SimAgent] = []
    sweeper = asyncio.create_task(sweep(agents))

    async def one(index: int, agent_id: str) -> SimAgent:
        agent = SimAgent(agent_id, tracker, behaviour, random.Random(seed * 7919 + index))
        url = f"{base}/v1/agents/{agent_id}/ws"
        async with gate:
            if lean:
                sock = await loadgen_ws.connect(
                    url, headers, agent.on_text, agent.on_close, agent.rng
                )
                agent.socket = _Lean(sock)
            else:
                ws = await session.ws_connect(
                    url, headers=headers, heartbeat=None, autoping=True, max_msg_size=1 << 20
                )
                agent.socket = _Aiohttp(ws, agent)
            agents.append(agent)
            reply = await agent.request({"type": "state", "state": "available"})
            if reply.get("type") != "state":
                raise RuntimeError(f"agent {agent_id} could not go available: {reply}")
            return agent

    try:
        done = list(await asyncio.gather(*(one(i, a) for i, a in enumerate(agent_ids))))
    except BaseException:
        sweeper.cancel()
        await asyncio.gather(*(a.stop() for a in agents), return_exceptions=True)
        raise
    for agent in done:
        agent.sweeper = sweeper
    return done


async def disconnect(agents: list[SimAgent]) -> None:
    for agent in agents:
        if agent.sweeper is not None:
            agent.sweeper.cancel()
    await asyncio.gather(*(agent.stop() for agent in agents))
