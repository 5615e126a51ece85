"""Delivery of store events to the websockets connected to this instance.

Every transition script publishes its events on the tenant's channel ``sb:{tenant}:ev``. Each
instance subscribes to all tenants' channels once and forwards each event to the sockets it
holds: offers, rescinds, assignments and state changes to agents; contact status changes to
chat sessions. An agent whose socket is on another instance gets its offer from that instance,
and a message lost while disconnected is covered by the lease expiry and by the snapshot sent
when the agent reconnects. What is published while this instance's subscription is down never
reaches it: each time the subscription is made again, the agents with a socket here are sent
their snapshot again (``Hub.snapshot``), before the messages that arrive after it.

Sending never waits for a client to read (``router.sockets``): a socket too far behind is
closed instead, so one slow client cannot hold up the others' offers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from queues.contract import Event
from queues.errors import StoreUnavailable
from queues.keys import events_pattern, tenant_of_channel
from router.customers import CHANNEL as NOTICES
from router.fastredis import PipelinedRedis, ScriptRunner, Subscription
from router.sockets import Sender

log = structlog.get_logger("switchboard.hub")

_RECENT_OFFERS = 4096
OFFER_WAIT_SECONDS = 0.05
_NOTICES = NOTICES.encode()
ContactWatcher = Callable[[dict[str, Any]], Awaitable[None]]
#: an agent's state and pending offers as the messages its socket is sent on connect
Snapshot = Callable[[str, str], Awaitable[list[bytes]]]


#: the events whose dispatch ``Hub.offers_out`` can wait for
_AWAITED = frozenset({"offer", "rescind"})


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def offer_message(rid: str, expires_ms: int, queue: str, view: dict[str, Any]) -> dict[str, Any]:
    """An offer for the agent's socket. ``queue`` is the queue that offered the contact, '' for
    an offer to this agent by name (a ``last_agent`` or ``preferred_agents`` step): the agent
    is then shown the queue the contact is counted in (the first line of its history)."""
    if not queue:
        history = (view.get("customer") or {}).get("history") or [{}]
        if history[0].get("contact_id") == (view.get("contact") or {}).get("id"):
            queue = str(history[0].get("queue") or "")
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
        self.agents: dict[tuple[str, str], set[Sender]] = defaultdict(set)
        self.watchers: dict[tuple[str, str], set[ContactWatcher]] = defaultdict(set)
        self.ready = asyncio.Event()
        self.delivered = 0
        #: the customer cache's side: notices on ``CHANNEL``, and the subscription's ups and
        #: downs (set by the app; a hub alone only delivers events)
        self.on_notice: Callable[[bytes], None] | None = None
        self.on_connected: Callable[[], Awaitable[None]] | None = None
        self.on_disconnected: Callable[[], None] | None = None
        #: sent again to every agent here when the subscription is made (set by the app)
        self.snapshot: Snapshot | None = None
        self._quietly_reconnected = False
        #: offers the hub has dispatched lately, and handlers waiting for one to go out
        self._dispatched: dict[tuple[str, str], None] = {}
        self._awaited: dict[tuple[str, str], asyncio.Future[None]] = {}

    # ---------------------------------------------------------------------- registration

    def add_agent(self, tenant: str, agent_id: str, ws: Sender) -> None:
        self.agents[(tenant, agent_id)].add(ws)

    def remove_agent(self, tenant: str, agent_id: str, ws: Sender) -> int:
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
        return [sender.ws for group in self.agents.values() for sender in group]

    # -------------------------------------------------------------------------- delivery

    async def offers_out(self, tenant: str, events: list[Event]) -> None:
        """Wait until the hub has dispatched the offers and rescinds among ``events`` for
        sockets held here.

        A transition's reply and its events (pub/sub) reach this process together; the caller
        (creating a contact, an agent changing state) waits for its offers to go out first, so
        the agent hears of the contact before the caller spends time on its own reply, and a
        state reply's load never counts an offer the agent has not been sent. The hub stays
        the only sender, which keeps each socket's messages in publication order. Gives up
        after ``OFFER_WAIT_SECONDS`` (pub/sub lagging or down).
        """
        if not self.ready.is_set():
            return
        waits: list[asyncio.Future[None]] = []
        keys: list[tuple[str, str]] = []
        for ev in events:
            kind = ev.get("t")
            if kind not in _AWAITED or (tenant, ev.get("a")) not in self.agents:
                continue
            key = (tenant, f"{kind}|{ev.get('r')}")
            if key in self._dispatched:
                continue
            future = self._awaited.get(key)
            if future is None:
                future = self._awaited[key] = asyncio.get_running_loop().create_future()
            keys.append(key)
            waits.append(future)
        if not waits:
            return
        try:
            async with asyncio.timeout(OFFER_WAIT_SECONDS):
                for future in waits:
                    await future
        except TimeoutError:
            pass
        finally:
            for key in keys:
                self._awaited.pop(key, None)

    def _event_dispatched(self, tenant: str, event: str) -> None:
        """``event`` (``offer|r1``, ``rescind|r1``) went out: wake whoever waits for it."""
        key = (tenant, event)
        future = self._awaited.pop(key, None)
        if future is not None:
            if not future.done():
                future.set_result(None)
            return
        recent = self._dispatched
        if len(recent) >= _RECENT_OFFERS:
            for old in list(itertools.islice(recent, _RECENT_OFFERS // 2)):
                del recent[old]
        recent[key] = None

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
                kind = ev.get("t")
                if kind in _AWAITED and (targets or self._awaited):
                    self._event_dispatched(tenant, f"{kind}|{ev.get('r')}")
            contact = ev.get("c")
            if contact is not None and (tenant, contact) in self.watchers:
                for watcher in list(self.watchers.get((tenant, contact), ())):
                    await watcher(ev)

    async def _send(self, targets: set[Sender], out: dict[str, Any]) -> None:
        await self._write(targets, orjson.dumps(out))  # (a text frame of these bytes)

    async def _write(self, targets: set[Sender], data: bytes) -> None:
        for sender in list(targets):
            if await sender.send(data):  # (never waits for the client to read)
                self.delivered += 1

    async def _catch_up(self) -> None:
        """Send every agent with a socket here its state and pending offers again, as on
        connect: the subscription was just made, and what was published before it (while it
        was down) never reaches this instance; an offer the agent never heard of would time
        out and set it away. An offer the client already has may thus come twice (the same
        reservation id). Raises ``ConnectionError`` if Redis cannot be read (subscribe again).
        """
        keys = list(self.agents)
        if self.snapshot is None or not keys:
            return
        found = await asyncio.gather(*(self.snapshot(*key) for key in keys), return_exceptions=True)
        for (tenant, agent_id), messages in zip(keys, found, strict=True):
            if isinstance(messages, StoreUnavailable):
                raise RedisConnectionError("redis unavailable catching up") from messages
            if isinstance(messages, BaseException):  # (the agent was deleted meanwhile)
                log.warning("hub.catch_up_failed", agent_id=agent_id, error=repr(messages))
                continue
            targets = self.agents.get((tenant, agent_id))
            if targets:
                for data in messages:
                    await self._write(targets, data)
        log.info("hub.caught_up", agents=len(keys))

    async def listen(self, redis: Redis) -> None:
        """Subscribe to every tenant's event channel and dispatch forever (reconnecting).

        The same connection carries the customer cache's notices (``customers.CHANNEL``).
        """
        if isinstance(redis, PipelinedRedis):
            await self._listen_pipelined(redis.runner)
            return
        pattern = events_pattern()
        while True:
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            connected = False
            try:
                await pubsub.psubscribe(pattern)
                if self.on_notice is not None:
                    await pubsub.subscribe(NOTICES)
                if pubsub.connection is not None:
                    pubsub.connection.register_connect_callback(self._reconnected)
                self._quietly_reconnected = False
                if self.on_connected is not None:
                    await self.on_connected()
                connected = True
                await self._catch_up()
                self.ready.set()
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if self._quietly_reconnected:
                        # redis-py connected again and resubscribed on its own, so what was
                        # published in between is lost as after any reconnection
                        self._quietly_reconnected = False
                        log.warning("hub.redis_reconnected")
                        if self.on_disconnected is not None:
                            self.on_disconnected()
                        if self.on_connected is not None:
                            await self.on_connected()
                        await self._catch_up()
                    if msg is None:
                        continue
                    channel = msg["channel"]
                    await self._deliver(
                        channel if isinstance(channel, bytes) else str(channel).encode(),
                        msg["data"],
                    )
            except (RedisError, OSError) as exc:
                await self._lost(exc)
            finally:
                if connected and self.on_disconnected is not None:
                    self.on_disconnected()
                if pubsub.connection is not None:  # (it goes back to the pool)
                    pubsub.connection.deregister_connect_callback(self._reconnected)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _reconnected(self, connection: Any) -> None:
        """redis-py's pub/sub connection was made again (it then resubscribes by itself)."""
        self._quietly_reconnected = True

    async def _deliver(self, channel: bytes, data: bytes) -> None:
        """One pub/sub message: a customer-cache notice, or a tenant's events to dispatch."""
        try:
            if channel == _NOTICES:
                if self.on_notice is not None:
                    self.on_notice(data)
                return
            await self.dispatch(tenant_of_channel(channel.decode()), orjson.loads(data))
        except Exception:
            log.exception("hub.dispatch_failed")

    async def _lost(self, exc: Exception) -> None:
        self.ready.clear()
        log.warning("hub.redis_lost", error=str(exc))
        if self.on_disconnected is not None:
            self.on_disconnected()
        await asyncio.sleep(0.5)

    async def _listen_pipelined(self, runner: ScriptRunner) -> None:
        """``listen`` on a lean subscriber connection (the usual case: redis:// and unix://)."""
        while True:
            subscription: Subscription | None = None
            connected = False
            try:
                subscription = await runner.subscribe(
                    [events_pattern()], [NOTICES] if self.on_notice is not None else []
                )
                if self.on_connected is not None:
                    await self.on_connected()
                connected = True
                await self._catch_up()
                self.ready.set()
                while True:
                    channel, data = await subscription.get()
                    await self._deliver(channel, data)
            except (RedisError, OSError) as exc:
                await self._lost(exc)
            finally:
                if subscription is not None:
                    subscription.close()
                if connected and self.on_disconnected is not None:
                    self.on_disconnected()
