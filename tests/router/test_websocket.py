"""The agent websocket: heartbeats, last-socket-offline, message errors, delivery across apps.

Settings ping every 0.2 s and give up after 0.6 s without a frame from the client.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from aiohttp import WSCloseCode, WSMsgType

from router.ws import _PINGS_PER_TURN, Heartbeats
from tests.router.conftest import ADMIN, GATEWAY, Api, ApiFactory, bearer


async def test_a_socket_that_stops_answering_pings_is_closed(api: Api) -> None:
    """No pong within the heartbeat window: socket closed, agent offline, its offer rescinded."""
    await api.agent("ann", billing=5)
    await api.state("ann", "available")
    contact = await api.contact()
    assert contact["agent_id"] == "ann"
    token = await api.token("ann")
    ws = await api.client.ws_connect("/v1/agents/ann/ws", headers=bearer(token), autoping=False)
    started = time.monotonic()
    pings = 0
    while True:  # read (so the close arrives) but never answer a ping
        msg = await ws.receive(timeout=5)
        if msg.type == WSMsgType.PING:
            pings += 1
        elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            break
    await ws.close()
    assert pings >= 2
    assert 0.5 <= time.monotonic() - started < 3
    assert ws.close_code == 4000
    agent = await api.until("/v1/agents/ann", lambda a: a["state"] == "offline")
    assert (agent["reservations"], agent["load"]) == ([], {})
    back = await api.get(f"/v1/contacts/{contact['id']}")
    assert (back["status"], back["position"], back["agent_id"]) == ("queued", 1, None)


async def test_a_socket_closes_when_its_token_expires(make_api: ApiFactory) -> None:
    """A socket opened with an agent token is closed (4001) within a heartbeat interval of the
    token's expiry, even while it answers pings: it kept the agent's rights after a new
    handshake with the same token was refused. The admin's socket (a static token) stays."""
    api = await make_api(agent_token_ttl_seconds=1)
    await api.agent("ann", billing=5)
    token = await api.token("ann")
    ws = await api.client.ws_connect("/v1/agents/ann/ws", headers=bearer(token))
    admin = await api.client.ws_connect("/v1/agents/ann/ws", headers=bearer(ADMIN))
    started = time.monotonic()
    while not ws.closed:
        msg = await ws.receive(timeout=5)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            break
    assert ws.close_code == 4001
    assert time.monotonic() - started < 3  # (expiry at most 1 s away, then an interval)
    assert not admin.closed
    assert (await api.call("GET", "/v1/agents/ann", token=token)).status == 401
    await admin.close()


async def test_a_socket_that_answers_pings_stays_open(api: Api) -> None:
    """A client answering pings (aiohttp's autoping) stays connected well past the timeout."""
    await api.agent("ann", billing=5)
    desk = await api.ws("ann")
    await api.state("ann", "available")
    await asyncio.sleep(1.5)
    assert not desk.ws.closed
    assert (await api.get("/v1/agents/ann"))["state"] == "available"


async def test_closing_the_last_socket_sets_the_agent_offline(api: Api) -> None:
    """With two sockets open, closing one keeps the state; closing the last sets offline."""
    await api.agent("ann", billing=5)
    first = await api.ws("ann")
    second = await api.ws("ann")
    assert (await second.recv("state"))["state"] == "offline"  # the snapshot on connect
    await first.send({"type": "state", "state": "available"})
    assert (await second.recv("state"))["state"] == "available"  # pushed to both sockets
    await first.close()
    await asyncio.sleep(0.3)
    assert (await api.get("/v1/agents/ann"))["state"] == "available"
    await second.close()
    await api.until("/v1/agents/ann", lambda a: a["state"] == "offline")


async def test_socket_errors_echo_the_ref(api: Api) -> None:
    """Bad messages get an `error` with title and detail, echoing `ref`; the socket stays up."""
    await api.agent("ann", billing=5)
    desk = await api.ws("ann")
    await desk.send({"type": "dance", "ref": "r-1"})
    unknown = await desk.recv("error")
    assert unknown["ref"] == "r-1"
    assert unknown["status"] == 422
    assert unknown["title"] == "Unprocessable Content"
    assert "dance" in unknown["detail"]

    await desk.send({"type": "accept", "reservation_id": "r999", "ref": 2})
    missing = await desk.recv("error")
    assert (missing["ref"], missing["status"], missing["title"]) == (2, 404, "Not Found")
    # the REST problem's type, for a desktop to tell one refusal from another
    rest = await api.call("POST", "/v1/reservations/r999/accept")
    assert missing["problem"] == rest.body["type"]
    assert missing["problem"].endswith("/reservation-not-found")

    await desk.send({"type": "state", "state": "sleeping", "ref": 3})
    invalid = await desk.recv("error")
    assert (invalid["ref"], invalid["status"]) == (3, 422)
    assert invalid["errors"][0]["loc"] == ["state"]

    await desk.ws.send_str("{not json")
    malformed = await desk.recv("error")
    assert (malformed["status"], malformed["title"]) == (400, "Bad Request")

    await desk.send({"type": "ping", "ref": 4})
    assert await desk.recv("pong") == {"type": "pong", "ref": 4}


async def test_messages_are_checked_like_the_rest_calls_they_stand_for(api: Api) -> None:
    """A message with a missing or non-string id, an unknown field or an over-long reason is
    a 422 naming the field, as its REST call would be; nothing changes."""
    await api.agent("ann", billing=5)
    desk = await api.ws("ann")
    await desk.send({"type": "state", "state": "available", "ref": 0})
    await desk.recv("state")
    contact = await api.contact()
    offer = await desk.recv("offer")
    rid = offer["reservation_id"]
    bad: list[dict[str, Any]] = [
        {"type": "accept"},
        {"type": "accept", "reservation_id": 12},
        {"type": "reject", "reservation_id": {"a": 1}},
        {"type": "complete"},
        {"type": "reject", "reservation_id": rid, "reason": "x" * 201},
        {"type": "accept", "reservation_id": rid, "note": "hi"},
        {"type": "state", "state": "away", "extra": 1},
    ]
    for n, message in enumerate(bad):
        await desk.send({**message, "ref": n})
        error = await desk.recv("error")
        assert (error["ref"], error["status"]) == (n, 422), error
        assert error["errors"], error
    agent = await api.get("/v1/agents/ann")
    assert (agent["state"], agent["reservations"]) == ("available", [rid])
    assert (await api.get(f"/v1/contacts/{contact['id']}"))["status"] == "offered"


async def test_an_oversized_or_binary_message_is_an_error_not_a_logout(api: Api) -> None:
    """A message past 64 KiB gets a 413 error and a binary frame a 400: the socket stays open
    and the agent keeps its state and its offers (a closed socket would log it off)."""
    await api.agent("ann", billing=5)
    desk = await api.ws("ann")
    await desk.send({"type": "state", "state": "available", "ref": 0})
    await desk.recv("state")
    await api.contact()
    offer = await desk.recv("offer")
    await desk.send({"type": "ping", "pad": "x" * 70_000, "ref": "big"})
    big = await desk.recv("error")  # (no ref: a refused message is not read)
    assert big["status"] == 413
    await desk.ws.send_bytes(b'{"type": "ping"}')
    binary = await desk.recv("error")
    assert binary["status"] == 400
    await desk.send({"type": "ping", "ref": 1})
    assert await desk.recv("pong") == {"type": "pong", "ref": 1}
    agent = await api.get("/v1/agents/ann")
    assert (agent["state"], agent["reservations"]) == ("available", [offer["reservation_id"]])


async def test_a_request_that_is_no_websocket_handshake_is_one_plain_problem(api: Api) -> None:
    """A GET without the upgrade headers, or asking to upgrade to something else, is the same
    400 problem on the agent and the chat socket, quoting nothing the client sent (aiohttp's
    own refusal echoes the Upgrade header)."""
    await api.agent("ann", billing=5)
    for path, token in (("/v1/agents/ann/ws", ADMIN), ("/v1/channels/chat", GATEWAY)):
        for headers in ({}, {"Connection": "Upgrade", "Upgrade": "<b>h2c</b>"}):
            reply = await api.call("GET", path, token=token, headers=headers)
            assert reply.status == 400, (path, reply)
            assert reply.headers["Content-Type"].startswith("application/problem+json")
            assert reply.body["detail"].startswith("not a websocket handshake:"), (path, reply)
            assert "h2c" not in reply.body["detail"]


async def handshake_headers(api: Api, path: str, *headers: str) -> dict[str, str]:
    """The headers of the answer to a websocket handshake for ``path`` (the socket is then
    dropped)."""
    server = api.client.server
    assert server.port is not None
    reader, writer = await asyncio.open_connection(server.host, server.port)
    lines = [f"GET {path} HTTP/1.1", "Host: switchboard", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", *headers]  # fmt: skip
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    status, *fields = head.decode().split("\r\n")
    assert status.startswith("HTTP/1.1 101"), head
    return dict(f.split(": ", 1) for f in fields if f)


async def test_a_handshake_answer_carries_the_request_id(api: Api) -> None:
    """The 101 that opens an agent's or the chat gateway's socket carries ``X-Request-Id``, the
    client's own when it looks like an id, as every other answer does (it had none)."""
    await api.agent("ann", billing=5)
    token = await api.token("ann")
    for path, who in (("/v1/agents/ann/ws", token), ("/v1/channels/chat", GATEWAY)):
        for given, expected in (("trace-7f3a.01", "trace-7f3a.01"), ("a b", "[0-9a-f]{16}")):
            sent = await handshake_headers(
                api, path, f"Authorization: Bearer {who}", f"X-Request-Id: {given}"
            )
            assert re.fullmatch(expected, sent.get("X-Request-Id", "")), (path, given, sent)


async def test_a_state_reply_follows_the_offers_it_caused(api: Api) -> None:
    """Going available with a contact waiting: the offer reaches the socket before the reply,
    whose load counts it; going offline: the rescind comes before the reply."""
    await api.agent("ann", billing=5)
    await api.contact()
    desk = await api.ws("ann")
    assert (await desk.recv("state"))["state"] == "offline"
    await desk.send({"type": "state", "state": "available", "ref": "on"})
    first = await desk.inbox.get()
    assert first is not None
    assert first["type"] == "offer", first
    while (reply := await desk.recv("state")).get("ref") is None:
        pass  # the state event, which every socket of the agent gets
    assert (reply["ref"], reply["load"]) == ("on", {"voice": 1})
    await desk.send({"type": "state", "state": "offline", "ref": "off"})
    while (message := await desk.inbox.get()) is not None and message["type"] == "state":
        assert message.get("ref") != "off", "the reply came before the rescind"
    assert message is not None
    assert message["type"] == "rescinded", message
    while (reply := await desk.recv("state")).get("ref") is None:
        pass
    assert (reply["ref"], reply["load"]) == ("off", {})


async def test_replies_echo_the_ref(api: Api) -> None:
    """`accepted` and `completed` replies carry the contact as the API renders it, and `ref`
    when the message had one."""
    await api.agent("ann", billing=5)
    desk = await api.ws("ann")
    await desk.recv("state")
    await desk.send({"type": "state", "state": "available"})
    await desk.recv("state")
    contact = await api.contact()
    offer = await desk.recv("offer")
    await desk.send({"type": "accept", "reservation_id": offer["reservation_id"], "ref": "a-1"})
    accepted = await desk.recv("accepted")
    assert (accepted["ref"], accepted["reservation_id"]) == ("a-1", offer["reservation_id"])
    shown = await api.get(f"/v1/contacts/{contact['id']}")
    assert accepted["contact"] == shown
    await desk.send({"type": "complete", "contact_id": contact["id"], "ref": {"n": 7}})
    completed = await desk.recv("completed")
    assert completed["ref"] == {"n": 7}
    assert completed["contact"] == await api.get(f"/v1/contacts/{contact['id']}")
    assert completed["contact"]["status"] == "completed"


async def test_offers_reach_a_socket_held_by_another_instance(make_api: ApiFactory) -> None:
    """Two apps on one Redis: a contact created on B is offered on the socket held by A."""
    a = await make_api()
    b = await make_api()
    await b.agent("ann", billing=5)
    desk = await a.ws("ann")
    # (the snapshot first: a state set before A reads it would be in it, and pushed again)
    assert (await desk.recv("state"))["state"] == "offline"
    await b.state("ann", "available")
    assert (await desk.recv("state"))["state"] == "available"
    contact = await b.contact()
    offer = await desk.recv("offer")
    assert offer["contact"]["id"] == contact["id"]
    accepted = await b.call("POST", f"/v1/reservations/{offer['reservation_id']}/accept")
    assert accepted.status == 200
    assert (await desk.recv("assigned"))["contact_id"] == contact["id"]


async def test_shutdown_closes_sockets_with_going_away(api: Api) -> None:
    """Stopping the app closes agent sockets with 1001 GOING_AWAY and leaves the state alone."""
    await api.agent("ann", billing=5)
    desk = await api.ws("ann")
    await desk.send({"type": "state", "state": "available"})
    await desk.recv("state")
    await api.client.server.close()
    assert await desk.closed() == WSCloseCode.GOING_AWAY


class _Pinged:
    """Stands in for a socket in the heartbeat queue: records when it was pinged."""

    closed = False

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def ping(self) -> None:
        self.log.append("ping")


async def test_many_sockets_due_at_once_are_pinged_in_batches() -> None:
    """Sockets connected together fall due together; other work runs between their pings."""
    log: list[str] = []
    beats = Heartbeats(interval=0.05, timeout=10.0)
    for i in range(4 * _PINGS_PER_TURN):
        beats.add(_Pinged(log), f"a{i}")  # type: ignore[arg-type]

    async def other_work() -> None:
        while True:
            log.append("work")
            await asyncio.sleep(0)

    worker = asyncio.create_task(other_work())
    await asyncio.sleep(0.12)
    worker.cancel()
    await beats.stop()
    first_round = log[log.index("ping") :][: 4 * _PINGS_PER_TURN + 8]
    runs = "".join("p" if x == "ping" else "w" for x in first_round).split("w")
    longest = max(len(r) for r in runs)
    assert first_round.count("ping") > _PINGS_PER_TURN
    assert longest <= _PINGS_PER_TURN


async def test_sockets_that_connected_together_are_pinged_over_the_interval() -> None:
    """A crowd due at once is pinged at the steady rate (and a little more), not in a burst."""
    times: list[float] = []

    class Timed:
        closed = False

        async def ping(self) -> None:
            times.append(time.monotonic())

    beats = Heartbeats(interval=1.0, timeout=10.0)
    for i in range(300):
        beats.add(Timed(), f"a{i}")  # type: ignore[arg-type]
    await asyncio.sleep(2.3)
    await beats.stop()
    first_round = sorted(times)[:300]
    per_tick = _PINGS_PER_TURN + 300 * beats.tick / beats.interval
    # at most per_tick pings a tick: the 300 take at least 300 / per_tick - 1 ticks
    assert first_round[-1] - first_round[0] >= (300 / per_tick - 2) * beats.tick
    assert len(first_round) == 300  # every socket pinged within the interval that followed
