"""Delivery of store events to the websockets connected to this instance.

Every transition script publishes its events on the tenant's channel ``sb:{tenant}:ev``. Each
instance subscribes to all tenants' channels once and forwards each event to the sockets it
holds: offers, rescinds, assignments and state changes to agents; contact status changes to
chat sessions. An agent whose socket is on another instance gets its offer from that instance,
and a message lost while disconnected is covered by the lease expiry and by the snapshot sent
when the agent reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from queues.contract import Event
from queues.keys import events_pattern, tenant_of_channel

log = structlog.get_logger("switchboard.hub")

ContactWatcher = Callable[[dict[str, Any]], Awaitable[None]]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def offer_message(rid: str, expires_ms: int, queue: str, view: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "offer",
        "reservation_id": rid,
        "expires_at": iso(expires_ms),
        "queue": queue,
        "contact": view.get("contact", {}),
        "customer": view.get("customer", {}),
        "suggestions": view.get("suggestions", []),
    }


def agent_message(ev: Event, views: dict[str, Any]) -> dict[str, Any] | None:
    kind = ev.get("t")
    if kind == "offer":
        return offer_message(ev["r"], int(ev["x"]), ev.get("q", ""), views.get(ev["c"], {}))
    if kind == "rescind":
        return {"type": "rescinded", "reservation_id": ev["r"], "reason": ev.get("why", "")}
    if kind == "assigned":
        return {"type": "assigned", "reservation_id": ev["r"], "contact_id": ev["c"]}
    if kind == "state":
        load = ev.get("l") or {}
        return {"type": "state", "state": ev["s"], "load": {k: v for k, v in load.items() if v}}
    return None


class Hub:
    def __init__(self) -> None:
        self.agents: dict[tuple[str, str], set[web.WebSocketResponse]] = defaultdict(set)
        self.watchers: dict[tuple[str, str], set[ContactWatcher]] = defaultdict(set)
        self.ready = asyncio.Event()
        self.delivered = 0

    # ---------------------------------------------------------------------- registration

    def add_agent(self, tenant: str, agent_id: str, ws: web.WebSocketResponse) -> None:
        self.agents[(tenant, agent_id)].add(ws)

    def remove_agent(self, tenant: str, agent_id: str, ws: web.WebSocketResponse) -> int:
        """Forget one socket; returns how many sockets the agent still has here."""
        sockets = self.agents.get((tenant, agent_id))
        if sockets is None:
            return 0
        sockets.discard(ws)
        if not sockets:
            del self.agents[(tenant, agent_id)]
            return 0
        return len(sockets)

    def watch(self, tenant: str, contact_id: str, watcher: ContactWatcher) -> None:
        self.watchers[(tenant, contact_id)].add(watcher)

    def unwatch(self, tenant: str, contact_id: str, watcher: ContactWatcher) -> None:
        found = self.watchers.get((tenant, contact_id))
        if found is not None:
            found.discard(watcher)
            if not found:
                del self.watchers[(tenant, contact_id)]

    def sockets(self) -> list[web.WebSocketResponse]:
        return [ws for group in self.agents.values() for ws in group]

    # -------------------------------------------------------------------------- delivery

    async def dispatch(self, tenant: str, message: dict[str, Any]) -> None:
        views = message.get("views") or {}
        for ev in message.get("ev") or []:
            agent = ev.get("a")
            if agent is not None:
                targets = self.agents.get((tenant, agent))
                if targets:
                    out = agent_message(ev, views)
                    if out is not None:
                        await self._send(targets, out)
            contact = ev.get("c")
            if contact is not None and (tenant, contact) in self.watchers:
                for watcher in list(self.watchers.get((tenant, contact), ())):
                    await watcher(ev)

    async def _send(self, targets: set[web.WebSocketResponse], out: dict[str, Any]) -> None:
        data = orjson.dumps(out).decode()
        for ws in list(targets):
            if ws.closed:
                continue
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(data)
                self.delivered += 1

    async def listen(self, redis: Redis) -> None:
        """Subscribe to every tenant's event channel and dispatch forever (reconnecting)."""
        pattern = events_pattern()
        while True:
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(pattern)
                self.ready.set()
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    channel = msg["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else str(channel)
                    try:
                        await self.dispatch(tenant_of_channel(channel), orjson.loads(msg["data"]))
                    except Exception:
                        log.exception("hub.dispatch_failed")
            except (RedisError, OSError) as exc:
                self.ready.clear()
                log.warning("hub.redis_lost", error=str(exc))
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
