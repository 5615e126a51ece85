"""Delivery to websockets that one slow or absent party cannot stall.

* a client that stops reading is closed (4002) instead of holding the hub, and every other
  socket still gets its offers at once;
* offers made while the hub's subscription was down reach the agent once it is back;
* a stall of the server's own event loop is not counted as the sockets' silence.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType, web
from redis.asyncio import Redis
from structlog.testing import capture_logs
from yarl import URL

from queues.embedded import EmbeddedRedis
from router import appkeys as k
from router.hub import Hub
from router.sockets import Senders
from tests.router.conftest import (
    Api,
    ApiFactory,
    Served,
    bearer,
    shared_redis_env,
)

#: two queues, so that each agent's contacts are told apart by intent
ROUTING = """\
queues:
  - name: billing
    agents: "agent.skills.billing >= 1"
  - name: sales
    agents: "agent.skills.sales >= 1"
rules:
  - {name: sales, when: "contact.intent == 'sales'", steps: [{queue: sales}]}
  - {name: default, when: "true", steps: [{queue: billing}]}
"""


class Unread:
    """An agent's websocket client that reads the handshake and then nothing at all (a
    desktop frozen in a debugger, a tab the browser throttles), on a small receive buffer."""

    def __init__(self, sock: socket.socket, rest: bytes) -> None:
        self.sock = sock
        self.rest = rest

    @classmethod
    async def open(cls, host: str, port: int, agent_id: str, token: str) -> Unread:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /v1/agents/{agent_id}/ws HTTP/1.1\r\nHost: {host}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 1024)
        status, _, rest = head.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101"), status
        return cls(sock, rest)

    async def frames(self, within: float = 10.0) -> list[tuple[int, bytes]]:
        """Read everything the server sent until it closes: (opcode, payload) per frame."""
        loop = asyncio.get_running_loop()
        data = bytearray(self.rest)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 16), 1.0)
            except TimeoutError:
                break
            except ConnectionError:
                break
            if not chunk:
                break
            data += chunk
        out = []
        at = 0
        while at + 2 <= len(data):
            opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
            at += 2
            if length == 126:
                (length,) = struct.unpack_from("!H", data, at)
                at += 2
            elif length == 127:
                (length,) = struct.unpack_from("!Q", data, at)
                at += 8
            if at + length > len(data):
                break
            out.append((opcode, bytes(data[at : at + length])))
            at += length
        return out

    def close(self) -> None:
        self.sock.close()


class Remote:
    """What ``Api`` asks of its test client, for a ``switchboard serve`` in another process."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    def request(self, method: str, path: str, **kw: Any) -> Any:
        return self.session.request(method, self.url + path, **kw)

    def ws_connect(self, path: str, **kw: Any) -> Any:
        return self.session.ws_connect(self.url + path, **kw)


async def _one_desk_stops_reading(api: Api, host: str, port: int) -> list[Any]:
    """Ann's client stops reading while offers of 32 KB contacts go to it until it is closed;
    then Ben, on the same instance, must get his offer at once. Returns what Ann's client
    finds when it reads again: the messages sent before the close, checked to be in order."""
    await api.agent("ann", {"email": 100, "chat": 100}, billing=5)
    await api.agent("ben", {"voice": 1}, sales=5)
    ben = await api.ws("ben")
    await api.state("ben", "available")
    await api.state("ann", "available")
    unread = await Unread.open(host, port, "ann", await api.token("ann"))
    try:
        body = "x" * 32000  # each offer shows the contact's body
        for n in range(200):  # (the kernel's socket buffers take the first few megabytes)
            await api.contact(channel=("email", "chat")[n % 2], body=body)
            if (await api.get("/v1/agents/ann"))["state"] == "offline":
                break
        started = time.monotonic()
        sale = await api.contact(intent="sales")
        offer = await ben.recv("offer", within=1.0)
        assert time.monotonic() - started < 0.5
        assert offer["contact"]["id"] == sale["id"]
        agent = await api.until("/v1/agents/ann", lambda a: a["state"] == "offline")
        assert agent["reservations"] == []
        *texts, (opcode, closing) = await unread.frames()
    finally:
        unread.close()
    assert (opcode, closing) == (0x8, struct.pack("!H", 4002) + b"too slow")
    assert {kind for kind, _ in texts} <= {0x1, 0x9}  # text frames, and the heartbeat's pings
    messages = [orjson.loads(data) for kind, data in texts if kind == 0x1]
    assert messages[0]["type"] == "state"
    assert {m["type"] for m in messages[1:]} == {"offer"}
    offers = [int(m["reservation_id"][1:]) for m in messages[1:]]
    assert offers == sorted(offers)
    assert len(offers) > 10
    return messages


async def test_a_client_that_stops_reading_holds_up_no_one(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """One agent's client stops reading while a flood of offers goes to it: another agent on
    the same instance still gets its offer at once, and the unread socket is closed (4002, too
    slow, logged by agent id) and let go, which sets its agent offline. What was sent before
    the close is in order."""
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING)
    api = await make_api(
        config=str(path), heartbeat_timeout_seconds=60, ws_max_unsent_bytes=1 << 18
    )
    server = api.client.server
    assert server.host is not None
    assert server.port is not None
    with capture_logs() as logs:
        await _one_desk_stops_reading(api, server.host, server.port)
    assert (api.tenant, "ann") not in api.client.app[k.HUB].agents
    slow = [e for e in logs if e["event"] == "ws.too_slow"]
    assert len(slow) == 1
    assert slow[0]["agent_id"] == "ann"
    assert slow[0]["unsent"] > 1 << 18


async def test_a_client_that_stops_reading_holds_up_no_one_on_uvloop(
    serve_child: Callable[..., Served], redis_url: str, tenant: str, tmp_path: Path
) -> None:
    """The same on ``switchboard serve`` running uvloop, whose transports buffer differently."""
    pytest.importorskip("uvloop")
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING)
    served = serve_child(
        shared_redis_env(
            redis_url,
            tenant,
            SWITCHBOARD_CONFIG=str(path),
            SWITCHBOARD_EVENT_LOOP="uvloop",
            SWITCHBOARD_HEARTBEAT_TIMEOUT_SECONDS="60",
            SWITCHBOARD_WS_MAX_UNSENT_BYTES=str(1 << 18),
        )
    )
    url = URL(served.url)
    assert url.host is not None
    assert url.port is not None
    async with aiohttp.ClientSession() as session:
        api = Api(Remote(session, served.url), tenant)  # type: ignore[arg-type]
        try:
            await _one_desk_stops_reading(api, url.host, url.port)
        finally:
            await api.close()
    slow = [line for line in served.output().splitlines() if '"ws.too_slow"' in line]
    assert len(slow) == 1
    assert orjson.loads(slow[0])["agent_id"] == "ann"


async def _subscription_dropped(hub: Hub, redis_client: Redis) -> None:
    """Kill the hub's subscription on the real redis-server and wait until the hub knows."""
    assert hub.ready.is_set()
    assert await redis_client.client_kill_filter(_type="pubsub") >= 1
    deadline = time.monotonic() + 5
    while hub.ready.is_set():
        assert time.monotonic() < deadline, "the hub never noticed"
        await asyncio.sleep(0.005)


async def test_an_offer_made_while_the_hub_resubscribes_still_reaches_the_agent(
    api: Api, redis_client: Redis
) -> None:
    """The hub's subscription drops; a contact offered to an agent with a socket here before
    it is back (its event lost) reaches the socket once the hub has subscribed again, with
    the agent's state; the offer can be accepted from there."""
    await api.agent("ann", billing=5)
    desk = await api.ws("ann")
    await api.state("ann", "available")
    assert (await desk.recv("state"))["state"] == "offline"
    assert (await desk.recv("state"))["state"] == "available"
    hub = api.client.app[k.HUB]
    await _subscription_dropped(hub, redis_client)
    contact = await api.contact()
    assert not hub.ready.is_set()  # (offered while nobody here listened)
    offer = await desk.recv("offer", within=3.0)
    assert hub.ready.is_set()
    assert offer["contact"]["id"] == contact["id"]
    state = await desk.recv("state")
    assert (state["state"], state["load"]) == ("available", {"voice": 1})
    await desk.send({"type": "accept", "reservation_id": offer["reservation_id"]})
    assert (await desk.recv("accepted"))["contact"]["status"] == "assigned"


class _Recorded:
    """Stands in for an agent's socket in the hub: keeps what it is sent."""

    closed = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True


async def test_the_redis_py_subscription_catches_up_too(redis_server: EmbeddedRedis) -> None:
    """On the redis-py pub/sub path (rediss:// and other URLs the pipelined connection does
    not take), where redis-py connects and resubscribes by itself when the connection drops,
    the hub still sends each agent here its snapshot again."""
    client = Redis(unix_socket_path=str(redis_server.socket_path))
    hub = Hub()
    asked: list[tuple[str, str]] = []

    async def snapshot(tenant: str, agent_id: str) -> list[bytes]:
        asked.append((tenant, agent_id))
        return [b'{"type":"state"}', b'{"type":"offer"}']

    hub.snapshot = snapshot
    desk = _Recorded()
    hub.add_agent("t", "ann", desk)  # type: ignore[arg-type]
    listening = asyncio.create_task(hub.listen(client))
    try:
        await asyncio.wait_for(hub.ready.wait(), 5)
        assert asked == [("t", "ann")]  # (a socket connected before the first subscription)
        assert await client.client_kill_filter(_type="pubsub") >= 1
        deadline = time.monotonic() + 5
        while len(asked) < 2:  # (redis-py connects again by itself: the hub stays ready)
            assert time.monotonic() < deadline, "no snapshot after the reconnection"
            await asyncio.sleep(0.01)
        assert asked == [("t", "ann")] * 2
        assert desk.sent == [b'{"type":"state"}', b'{"type":"offer"}'] * 2
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await client.aclose()


async def test_a_stalled_event_loop_is_no_sockets_silence(api: Api) -> None:
    """The server's event loop stands still for longer than the heartbeat timeout (0.6 s; a
    long garbage collection, a paused VM): its agents' sockets stay open and their agents
    available. A socket that answers no ping is still closed once the loop runs again."""
    await api.agent("ann", billing=5)
    await api.agent("bob", billing=5)
    ann = await api.ws("ann")  # (answers pings)
    await api.state("ann", "available")
    await asyncio.sleep(0.5)
    bob = await api.client.ws_connect(
        "/v1/agents/bob/ws", headers=bearer(await api.token("bob")), autoping=False
    )
    time.sleep(1.5)  # noqa: ASYNC251 (the loop, the server's and this client's, stands still)
    woke = time.monotonic()
    while (await bob.receive(timeout=5)).type not in (WSMsgType.CLOSE, WSMsgType.CLOSED):
        pass  # (pings, unanswered)
    assert bob.close_code == 4000
    assert 0.2 < time.monotonic() - woke < 2.0  # its own silence, not the stall
    await asyncio.sleep(1.0)
    assert not ann.ws.closed
    assert (await api.get("/v1/agents/ann"))["state"] == "available"


def test_a_sender_is_made_on_a_transport_uvloop_has_closed() -> None:
    """A client gone between the handshake and the socket's sender: uvloop refuses to change
    a closed transport's limits (RuntimeError), which must not fail the socket's handler."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        accepted: list[asyncio.StreamWriter] = []
        server = await asyncio.start_server(lambda _, w: accepted.append(w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            transport = writer.transport
            transport.close()
            await asyncio.sleep(0.05)
            with pytest.raises(RuntimeError):
                transport.set_write_buffer_limits(high=1 << 20)
            sender = Senders(1 << 20).new(None, transport)  # type: ignore[arg-type]
            assert not sender.shut
        finally:
            for other in accepted:
                other.close()
            server.close()
            await server.wait_closed()

    uvloop.run(main())


async def test_what_the_hub_sends_while_a_socket_is_held_follows_its_first_messages() -> None:
    """A socket is registered with the hub before its state and offers are read (so no event
    in between is missed) but held: the hub's messages meanwhile go out after those, in the
    order sent, and later ones go straight out."""
    order: list[str] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None
        sender = Senders(1 << 20).new(ws, request.transport)
        sender.hold()
        assert await sender.send(b'"offer r1"')  # the hub, while the snapshot is read
        assert await sender.send(b'"rescind r1"')
        await sender.release([b'"state"', b'"offer r1"'])
        assert sender.held is None
        assert await sender.send(b'"offer r2"')
        await ws.receive()  # until the client closes
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws,
        ):
            for _ in range(5):
                order.append(orjson.loads((await ws.receive(timeout=5)).data))
    finally:
        await runner.cleanup()
    assert order == ["state", "offer r1", "offer r1", "rescind r1", "offer r2"]
