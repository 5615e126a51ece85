"""The agent websocket (api-v1 §3): offers and state pushed, agent actions received.

The handshake is authorised like any request (the agent itself or an admin of its tenant;
browsers may pass ``?access_token=``). On connect the agent gets its state and every pending
offer again, so a reconnect loses nothing. The server pings every heartbeat interval; a socket
silent past the heartbeat timeout is closed. Sockets opening and closing are told to Redis
(``router/presence.py``): when an agent has no socket left on any live instance it goes
offline, which rescinds its pending offers. Everything is sent through the socket's
``Sender`` (``router.sockets``), which never waits for the client to read.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any

import orjson
import structlog
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ValidationError

from queues.errors import SwitchboardError
from router import appkeys as k
from router import models as m
from router.auth import Principal
from router.hub import offer_message
from router.problems import Problem, from_store, from_validation
from router.service import Service
from router.sockets import Sender


async def _send(sender: Sender, message: dict[str, Any] | bytes) -> None:
    await sender.send(message if isinstance(message, bytes) else orjson.dumps(message))


async def snapshot(
    service: Service, tenant: str, agent_id: str, agent: m.Agent | None = None
) -> list[bytes]:
    """What an agent's socket is sent on connect, and again when the hub's subscription is
    made anew (``Hub.snapshot``): its state (with the contacts it holds), then every pending
    offer."""
    if agent is None:
        agent = await service.get_agent(tenant, agent_id)
    state = {"type": "state", "state": agent.state, "load": agent.load, "contacts": agent.contacts}
    out = [orjson.dumps(state)]
    for offer in await service.pending_offers(tenant, agent_id):
        message = offer_message(offer.reservation_id, offer.expires_ms, offer.queue, offer.view)
        out.append(orjson.dumps(message))
    return out


def _typed(kind: str, model: BaseModel) -> bytes:
    """``{"type": kind, **model}`` as JSON, the model serialized by pydantic straight to bytes
    (no dict in between)."""
    return b'{"type":"' + kind.encode() + b'",' + model.__pydantic_serializer__.to_json(model)[1:]


def parse_message(raw: str) -> dict[str, Any]:
    """A client message: a JSON object (raises JSONDecodeError or a 400 Problem)."""
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise Problem(400, "a message is a JSON object with a `type`")
    return data


#: the answer to a binary frame on either socket
BINARY_FRAME = Problem(400, "messages are JSON in text frames, not binary frames")


def error_message(problem: Problem, ref: Any = None) -> dict[str, Any]:
    """A problem as a websocket ``error`` message (agent and chat sockets alike): the REST
    problem's fields, its ``type`` as ``problem`` (``type`` names the message)."""
    out: dict[str, Any] = {"type": "error", "title": problem.title, "detail": problem.detail}
    out["status"] = problem.status
    out["problem"] = problem.type_uri
    if problem.errors:
        out["errors"] = problem.errors
    if ref is not None:
        out["ref"] = ref
    return out


def _body(data: dict[str, Any], *names: str) -> dict[str, Any]:
    """A message's fields but ``type``, ``ref`` and ``names`` (the ids a REST call has in
    its path): what the REST call's body model validates."""
    return {key: value for key, value in data.items() if key not in ("type", "ref", *names)}


def _id(data: dict[str, Any], name: str) -> str:
    """The id a message names (in REST, a path segment): a non-empty string, else 422."""
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise Problem(
            422,
            f"`{name}` must be a non-empty string",
            kind="validation",
            errors=[{"loc": [name], "msg": "a non-empty string is required"}],
        )
    return value


async def _handle(
    request: web.Request, principal: Principal, agent_id: str, data: dict[str, Any]
) -> dict[str, Any] | bytes | None:
    service = request.app[k.SERVICE]
    tenant = principal.tenant
    kind = data.get("type")
    acting = None if principal.role == "admin" else agent_id
    # each message is validated like the body of the REST call it stands for
    if kind == "state":
        body = m.AgentStateIn.model_validate(_body(data))
        agent = await service.set_state(tenant, agent_id, body.state)
        return {"type": "state", "state": agent.state, "load": agent.load}
    if kind == "accept":
        rid = _id(data, "reservation_id")
        m.AcceptIn.model_validate(_body(data, "reservation_id"))
        accepted = await service.accept(tenant, rid, acting or agent_id)
        return _typed("accepted", accepted)
    if kind == "reject":
        rid = _id(data, "reservation_id")
        m.RejectIn.model_validate(_body(data, "reservation_id"))
        rejected = await service.reject(tenant, rid, acting or agent_id)
        return {"type": "rejected", **rejected.model_dump(mode="json")}
    if kind == "complete":
        cid = _id(data, "contact_id")
        body_c = m.CompleteIn.model_validate(_body(data, "contact_id"))
        contact = await service.complete(tenant, cid, acting or agent_id, body_c)
        doc = contact.__pydantic_serializer__.to_json(contact)
        return b'{"type":"completed","contact":' + doc + b"}"
    if kind == "ping":
        return {"type": "pong"}
    raise Problem(422, f"unknown message type {kind!r}", kind="validation")


class _Beat:
    __slots__ = ("agent_id", "due", "expires", "last_seen", "ws")

    def __init__(self, ws: Sender, agent_id: str, now: float, due: float, expires: float) -> None:
        self.ws: Sender | None = ws
        self.agent_id = agent_id
        self.last_seen = now
        self.due = due
        self.expires = expires


#: pings sent before the heartbeat task lets other work run
_PINGS_PER_TURN = 16


class Heartbeats:
    """Pings every agent socket each ``interval`` and closes one silent past ``timeout``, or
    opened with a token that has since expired (so within an interval of the expiry: a socket
    does not keep rights its token has lost).

    One task for all sockets of the app, started with the first: it wakes a few times per
    interval and serves the sockets whose turn has come (they are in a queue in the order
    their pings are due, every socket having the same interval). Thousands of sockets thus
    cost no task, timer or future each, which keeps the garbage collector's young generations
    small, and each socket is still pinged once per interval, spread over the interval.

    Silence is measured on ``clock``, which stands still while the event loop does (a long
    garbage collection, SIGSTOP, a paused VM): nothing from the clients could be read then, so
    that time is no socket's silence, and a server that wakes from a pause longer than the
    timeout does not log out every agent it holds.
    """

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.tick = min(0.02, interval / 4)
        self.queue: deque[_Beat] = deque()
        self.task: asyncio.Task[None] | None = None
        #: seconds the loop stood still, as the heartbeat task saw it waking late
        self.stalled = 0.0

    def clock(self) -> float:
        """Monotonic seconds, less the time the event loop stood still."""
        return time.monotonic() - self.stalled

    def add(self, ws: Sender, agent_id: str, expires: float | None = None) -> _Beat:
        """Watch ``ws``; ``expires``: when its token expires (Unix seconds), if it does."""
        now = self.clock()
        beat = _Beat(
            ws, agent_id, now, now + self.interval, math.inf if expires is None else expires
        )
        self.queue.append(beat)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="heartbeats")
        return beat

    def remove(self, beat: _Beat) -> None:
        beat.ws = None  # dropped from the queue when its turn comes

    async def stop(self, app: web.Application | None = None) -> None:
        """Stop pinging (the app's cleanup)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.queue.clear()

    async def _run(self) -> None:
        queue = self.queue
        while queue:
            slept = time.monotonic()
            await asyncio.sleep(self.tick)
            late = time.monotonic() - slept - self.tick
            if late > self.tick:
                # the loop ran nothing for that long: no client could be heard meanwhile
                self.stalled += late
            now = self.clock()
            wall = time.time()
            # at most the steady rate (every socket once per interval) and a little more: a
            # thousand sockets that connected together are pinged over the next interval, not
            # in one burst, and since each is due again an interval after its ping, the rounds
            # after stay spread out
            budget = _PINGS_PER_TURN + math.ceil(len(queue) * self.tick / self.interval)
            served = 0
            while queue and queue[0].due <= now and served < budget:
                served += 1
                if served % _PINGS_PER_TURN == 0:
                    # thousands of sockets connected at once are due at once: let requests
                    # run between batches instead of holding the loop for all their pings
                    await asyncio.sleep(0)
                    continue
                beat = queue.popleft()
                ws = beat.ws
                if ws is None or ws.closed:
                    continue
                if now - beat.last_seen > self.timeout:
                    ws.close(4000, "heartbeat timeout")
                    continue
                if wall >= beat.expires:
                    ws.close(4001, "token expired")
                    continue
                await ws.ping()  # (never waits for the client to read)
                beat.due = now + self.interval
                queue.append(beat)


HEARTBEATS = web.AppKey("heartbeats", Heartbeats)


#: the longest message an agent may send; longer ones get an ``error`` and change nothing
_MESSAGE_LIMIT = 64 * 1024
#: the frame size past which aiohttp closes the socket (1009): far above the message limit, so
#: that a client's oversized message is answered, not taken for a disconnect (which would set
#: the agent offline and take back its offers)
_FRAME_LIMIT = 4 * 1024 * 1024


async def prepare(ws: web.WebSocketResponse, request: web.Request) -> None:
    """Upgrade ``request`` (agent and chat sockets alike), or refuse it with a 400 problem of
    our own: aiohttp's refusal quotes what was sent (the Upgrade header, the key)."""
    if not ws.can_prepare(request):
        raise Problem(
            400,
            "not a websocket handshake: GET with Connection: Upgrade, Upgrade: websocket, "
            "Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key",
        )
    # (the app's middleware names every answer it gets back unsent; this one is sent here)
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        ws.headers["X-Request-Id"] = request_id
    await ws.prepare(request)


#: sockets closing being told to Redis (kept until done)
_CLOSED: set[asyncio.Task[None]] = set()


async def agent_socket(
    request: web.Request, principal: Principal, agent_id: str
) -> web.StreamResponse:
    app = request.app
    service = app[k.SERVICE]
    hub = app[k.HUB]
    tenant = principal.tenant
    await service.get_agent(tenant, agent_id)  # 404 before the upgrade

    ws = web.WebSocketResponse(autoping=False, max_msg_size=_FRAME_LIMIT)
    await prepare(ws, request)
    transport = request.transport
    if transport is None:  # the client left during the handshake
        return ws
    sender = app[k.SENDERS].new(ws, transport, agent_id=agent_id)
    app[k.SOCKETS].add(ws)
    # (registered first, so no event is missed, but held: the state and offers read next go
    # out first, then whatever the hub sent meanwhile)
    sender.hold()
    hub.add_agent(tenant, agent_id, sender)
    presence = app[k.PRESENCE]
    structlog.contextvars.bind_contextvars(agent_id=agent_id)
    heartbeats = app[HEARTBEATS]
    beat = heartbeats.add(sender, agent_id, principal.expires)
    try:
        await presence.opened(tenant, agent_id)
        # (the agent read again: it may have changed since the handshake began)
        await sender.release(await snapshot(service, tenant, agent_id))
        async for msg in ws:
            beat.last_seen = heartbeats.clock()
            if msg.type == WSMsgType.PING:
                await sender.pong(msg.data)
                continue
            if msg.type == WSMsgType.BINARY:
                await _send(sender, error_message(BINARY_FRAME))
                continue
            if msg.type != WSMsgType.TEXT:
                continue
            ref = None
            try:
                if len(msg.data) > _MESSAGE_LIMIT:
                    raise Problem(413, f"a message is at most {_MESSAGE_LIMIT:,} characters")
                data = parse_message(msg.data)
                ref = data.get("ref")
                reply = await _handle(request, principal, agent_id, data)
            except orjson.JSONDecodeError:
                reply = error_message(Problem(400, "malformed JSON"), None)
            except Problem as exc:
                reply = error_message(exc, ref)
            except ValidationError as exc:
                reply = error_message(from_validation(exc, ()), ref)
            except SwitchboardError as exc:
                reply = error_message(from_store(exc), ref)
            if reply is not None:
                if ref is not None:
                    if isinstance(reply, bytes):
                        reply = reply[:-1] + b',"ref":' + orjson.dumps(ref) + b"}"
                    else:
                        reply.setdefault("ref", ref)
                await _send(sender, reply)
    finally:
        heartbeats.remove(beat)
        app[k.SOCKETS].discard(ws)
        hub.remove_agent(tenant, agent_id, sender)
        # on shutdown the socket stays counted until this instance is swept (see Presence.beat)
        if not app[k.CLOSING].is_set():
            # aiohttp may cancel this handler once the client is gone: Redis must still hear
            # of it (an agent left with no socket anywhere goes offline, or it keeps being
            # offered contacts with no socket to hear them)
            closed = asyncio.create_task(presence.closed(tenant, agent_id))
            _CLOSED.add(closed)
            closed.add_done_callback(_CLOSED.discard)
            await asyncio.shield(closed)
        structlog.contextvars.unbind_contextvars("agent_id")
    return ws
