"""One customer on every channel, and the demo config's acceptance cases (issue 4 "Done when").

Agents work from their websocket desktops; the chat gateway is a websocket too. Offers carry
the single view of the customer (history across channels, current contact first) and the
suggestions whose conditions match.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse
from pytest_aiohttp import AiohttpClient

from queues.embedded import EmbeddedRedis
from router import api_channels
from router import appkeys as k
from router.app import create_app
from tests.e2e.conftest import (
    ADMIN_TOKEN,
    GATEWAY_TOKEN,
    WAIT,
    Api,
    e2e_settings,
    next_of,
    sample,
)

ANA: dict[str, Any] = {
    "name": "Ana García",
    "phones": ["+1 415 555 0100"],
    "emails": ["ana@example.com"],
    "chat_handles": ["ana_92"],
    "value": 3000.0,
    "products": ["checking"],
}
FULL = {"voice": 1, "email": 2, "chat": 3}


def _history(offer: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (h["channel"], h["status"], h["agent_id"], h["disposition"])
        for h in offer["customer"]["history"]
    ]


async def _chat(api: Api) -> ClientWebSocketResponse:
    return await api.client.ws_connect("/v1/channels/chat", headers=api.auth(GATEWAY_TOKEN))


async def test_call_then_email_then_chat_shows_all_three(api: Api) -> None:
    """The chat's offer shows the chat, the email and the call in customer.history."""
    await api.put_customer("cu-ana", **ANA)
    olga = await api.desk("olga", {"billing": 5}, FULL)

    call = await api.voice(
        {"call_id": "CA100", "from": "(415) 555-0100", "ivr": {"language": "en"}}
    )
    offer = await olga.next("offer")
    assert offer["contact"]["id"] == call["id"]
    await olga.take(offer, "card-replaced")

    mail = await api.email(sample("multipart_qp.eml").replace(b"Ana.Garcia@", b"ANA@"))
    assert mail["customer"]["id"] == "cu-ana"
    offer = await olga.next("offer")
    assert offer["contact"]["id"] == mail["id"]
    await olga.take(offer, "refunded")

    gateway = await _chat(api)
    start = {"type": "start", "session_id": "web-77", "from": "ana_92", "text": "Hi, my card?"}
    await gateway.send_json(start)
    chat_seen: list[dict[str, Any]] = []
    queued = await next_of(gateway, "queued", chat_seen)
    chat_id = queued["contact"]["id"]
    assert queued["contact"]["customer"]["id"] == "cu-ana"

    offer = await olga.next("offer")
    assert offer["contact"]["id"] == chat_id
    assert offer["customer"]["id"] == "cu-ana"
    assert (offer["customer"]["name"], offer["customer"]["segment"]) == ("Ana García", "gold")
    assert [h["contact_id"] for h in offer["customer"]["history"]] == [
        chat_id,
        mail["id"],
        call["id"],
    ]
    assert _history(offer) == [
        ("chat", "queued", None, None),
        ("email", "completed", "olga", "refunded"),
        ("voice", "completed", "olga", "card-replaced"),
    ]
    assert [(s["kind"], s["rule"]) for s in offer["suggestions"]] == [
        ("cross_sell", "premium-card")
    ]

    await olga.send({"type": "accept", "reservation_id": offer["reservation_id"]})
    assigned = await next_of(gateway, "assigned", chat_seen)
    assert assigned["agent_id"] == "olga"
    kinds = [m["type"] for m in chat_seen if m["type"] in ("queued", "assigned")]
    assert kinds == ["queued", "assigned"]
    await gateway.close()


async def test_chat_end_while_waiting_abandons(api: Api) -> None:
    """`{"type": "end"}` while the chat waits abandons the contact and empties its queue."""
    gateway = await _chat(api)
    await gateway.send_json({"type": "start", "session_id": "s1", "from": "visitor-9"})
    queued = await next_of(gateway, "queued", [])
    assert queued["contact"]["status"] == "queued"
    assert (await api.waiting())["billing"] == 1
    await gateway.send_json({"type": "end"})
    ended = await next_of(gateway, "ended", [])
    assert ended["contact"]["status"] == "abandoned"
    contact = await api.call("GET", f"/v1/contacts/{queued['contact']['id']}", 200)
    assert contact["status"] == "abandoned"
    assert (await api.waiting())["billing"] == 0
    history = (await api.customer(queued["contact"]["customer"]["id"]))["history"]
    assert [h["status"] for h in history] == ["abandoned"]
    await gateway.close()


async def test_chat_end_while_offered_rescinds_the_offer(api: Api) -> None:
    """Ending a chat that is being offered abandons it and rescinds the agent's offer."""
    olga = await api.desk("olga", {"billing": 5}, FULL)
    gateway = await _chat(api)
    await gateway.send_json({"type": "start", "session_id": "s2", "from": "visitor-10"})
    await next_of(gateway, "queued", [])
    offer = await olga.next("offer")
    await gateway.send_json({"type": "end", "session_id": "s2", "ref": 7})
    ended = await next_of(gateway, "ended", [])
    assert (ended["contact"]["status"], ended["ref"]) == ("abandoned", 7)
    rescinded = await olga.next("rescinded")
    assert rescinded == {
        "type": "rescinded",
        "reservation_id": offer["reservation_id"],
        "reason": "abandoned",
    }
    await gateway.close()


@pytest.mark.redis
async def test_an_end_that_fails_can_be_sent_again(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """An `end` that Redis could not record (503) leaves the session on the connection: the
    gateway sends it again once Redis is back and the chat is abandoned, not a 404."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        app = create_app(e2e_settings("t-end", redis_url=server.url, redis_timeout_seconds=1.0))
        api = Api(await aiohttp_client(app), "t-end")
        gateway = await _chat(api)
        await gateway.send_json({"type": "start", "session_id": "s9", "from": "visitor-12"})
        queued = await next_of(gateway, "queued", [])
        await asyncio.to_thread(server.stop)
        await gateway.send_json({"type": "end", "session_id": "s9", "ref": 1})
        failed = await next_of(gateway, "error", [])
        assert (failed["status"], failed["ref"]) == (503, 1)
        await asyncio.to_thread(server.start)  # (persistent: the chat is still there)
        await gateway.send_json({"type": "end", "session_id": "s9", "ref": 2})
        ended = await next_of(gateway, "ended", [])
        assert (ended["contact"]["id"], ended["contact"]["status"], ended["ref"]) == (
            queued["contact"]["id"],
            "abandoned",
            2,
        )
        await gateway.close()
        await api.close()
    finally:
        await asyncio.to_thread(server.stop)


async def test_chat_start_errors_are_reported_on_the_socket(api: Api) -> None:
    """A start without a session id gets an error naming the field, echoing its ref."""
    gateway = await _chat(api)
    await gateway.send_json({"type": "start", "from": "ana_92", "ref": "r1"})
    error = await next_of(gateway, "error", [])
    assert (error["status"], error["ref"]) == (422, "r1")
    assert "session_id" in error["detail"]
    assert (await api.waiting())["billing"] == 0
    # a binary frame is answered too (it was dropped without a word), and the socket stays
    await gateway.send_bytes(b'{"type": "start"}')
    binary = await next_of(gateway, "error", [])
    assert binary["status"] == 400
    assert "text frames" in binary["detail"]
    await gateway.send_json({"type": "start", "ref": "r2"})
    assert (await next_of(gateway, "error", []))["ref"] == "r2"
    await gateway.close()


async def test_valuable_at_risk_call_goes_to_retention_with_save_offer(api: Api) -> None:
    """Value 15000 and churn risk 0.8: retention queue, and the offer suggests `save-offer`."""
    await api.put_customer("cu-vip", phones=["+44 20 7946 0958"], value=15000.0, churn_risk=0.8)
    ben = await api.desk("ben", {"billing": 5})
    rita = await api.desk("rita", {"retention": 5})
    call = await api.voice(
        {
            "call_id": "CA200",
            "from": "+44 20 7946 0958",
            "ivr": {"language": "en", "intent": "billing"},
        }
    )
    assert (call["rule"], call["queue"], call["agent_id"]) == (
        "valuable-at-risk",
        "retention",
        "rita",
    )
    assert call["customer"] == {"id": "cu-vip", "segment": "platinum", "value": 15000.0}
    assert call["priority"] == 120 + 60 + 15
    offer = await rita.next("offer")
    assert offer["queue"] == "retention"
    assert {"kind": "retention", "rule": "save-offer"} in [
        {"kind": s["kind"], "rule": s["rule"]} for s in offer["suggestions"]
    ]
    assert offer["customer"]["churn_risk"] == 0.8
    await ben.quiet("offer")


async def test_spanish_billing_email_goes_to_the_spanish_agent(api: Api) -> None:
    """A Spanish email about a `cobro` on the `factura` goes to billing-es and its agent."""
    ben = await api.desk("ben", {"billing": 5})  # available first: longest idle in billing
    lucia = await api.desk("lucia", {"billing": 5, "spanish": 8}, {"email": 2})
    mail = await api.email(sample("base64_spanish.eml"))
    assert (mail["language"], mail["intent"]) == ("es", "billing")
    assert (mail["rule"], mail["queue"], mail["agent_id"]) == (
        "spanish-billing",
        "billing-es",
        "lucia",
    )
    offer = await lucia.next("offer")
    assert offer["contact"]["subject"] == "Cobro duplicado en mi factura ¿me ayudan?"
    assert ("service", "spanish-speaker") in [(s["kind"], s["rule"]) for s in offer["suggestions"]]
    await ben.quiet("offer")


def _minimal_reply(first_id: bytes) -> bytes:
    return (
        b"From: Ana Garcia <ana.g@example.net>\nTo: help@bank.example\n"
        b"Message-ID: <r1.short@example.net>\nIn-Reply-To: " + first_id + b"\n"
        b"Subject: Re: Charged twice on my October statement\n\n"
        b"Thanks! Any news on the refund?\n"
    )


@pytest.mark.parametrize("form", ["references-chain", "in-reply-to-only"])
async def test_email_reply_joins_thread_and_prefers_its_agent(api: Api, form: str) -> None:
    """A reply from another address joins the thread's customer and is offered to its agent."""
    first_raw = sample("multipart_qp.eml")
    bob = await api.desk("bob", {"billing": 5}, {"email": 2})
    first = await api.email(first_raw)
    await bob.take(await bob.next("offer"), "explained")
    alice = await api.desk("alice", {"billing": 5}, {"email": 2})
    await api.call("POST", "/v1/agents/bob/state", 200, json={"state": "away"}, token=ADMIN_TOKEN)
    await api.call(
        "POST", "/v1/agents/bob/state", 200, json={"state": "available"}, token=ADMIN_TOKEN
    )  # bob is now the most recently idle: longest-idle routing would pick alice

    if form == "references-chain":
        reply_raw = sample("reply_chain.eml")
    else:
        reply_raw = _minimal_reply(b"<CAF=x9k2Lq0b1Tz9rxLmPq@mail.example.com>")
    reply = await api.email(reply_raw)
    assert reply["customer"]["id"] == first["customer"]["id"]
    assert (reply["rule"], reply["agent_id"]) == ("email-thread", "bob")
    # the other address is the customer's own now, listed on the profile
    address = "ana.garcia.work@example.co.uk" if form == "references-chain" else "ana.g@example.net"
    profile = await api.customer(first["customer"]["id"])
    assert profile["emails"] == [address, "ana.garcia@example.com"]
    offer = await bob.next("offer")
    assert offer["contact"]["id"] == reply["id"]
    # offered to bob by name (the thread's agent), shown the queue the reply counts in (it
    # was "")
    assert offer["queue"] == reply["queue"] == "billing"
    assert [h["contact_id"] for h in offer["customer"]["history"]] == [reply["id"], first["id"]]
    await alice.quiet("offer", 0.3)

    other = b"From: zoe@example.org\nMessage-ID: <z1@example.org>\nSubject: bill\n\nMy bill?\n"
    control = await api.email(other)
    assert (control["rule"], control["agent_id"]) == ("default", "alice")


async def test_reply_to_unknown_thread_is_a_new_conversation(api: Api) -> None:
    """A reply whose thread Switchboard never saw routes like any email, to a new customer."""
    reply = await api.email(_minimal_reply(b"<never-seen@example.com>"))
    assert reply["rule"] == "email-thread"
    assert reply["queue"] == "billing"
    profile = await api.customer(reply["customer"]["id"])
    assert [h["contact_id"] for h in profile["history"]] == [reply["id"]]


async def test_agent_desk_sees_history_of_a_returning_caller(api: Api) -> None:
    """A second call from the same number shows the first call, completed, on the offer."""
    olga = await api.desk("olga", {"billing": 5})
    first = await api.voice({"call_id": "CA300", "from": "+1 415 555 0100"})
    await olga.take(await olga.next("offer"), "resolved")
    again = await api.voice({"call_id": "CA301", "from": "415.555.0100"})
    offer = await olga.next("offer")
    assert offer["contact"]["id"] == again["id"]
    assert _history(offer) == [
        ("voice", "queued", None, None),
        ("voice", "completed", "olga", "resolved"),
    ]
    assert offer["customer"]["history"][1]["contact_id"] == first["id"]


async def test_a_chat_session_started_again_with_other_fields_is_a_named_conflict(
    api: Api,
) -> None:
    """The gateway's session_id is the chat's idempotency key: the same id with another first
    message is a 409 that names session_id (not an Idempotency-Key the gateway never sent)."""
    gateway = await _chat(api)
    start = {"type": "start", "session_id": "web-dup", "from": "zed_1", "text": "hi"}
    await gateway.send_json(start)
    await next_of(gateway, "queued", [])
    await gateway.send_json({**start, "text": "hello?", "ref": 2})
    error = await next_of(gateway, "error", [])
    assert (error["status"], error["ref"]) == (409, 2)
    assert error["detail"] == "this session_id was already used with a different payload"
    await gateway.close()


async def test_a_gateway_that_reconnects_hears_of_an_assignment_it_missed(api: Api) -> None:
    """A chat accepted while its gateway was disconnected: starting the session again on the
    new socket answers `queued` with the assigned contact, then pushes `assigned` (once), as
    if the gateway had stayed. Without it the customer waits for a push that already went to
    the closed socket."""
    olga = await api.desk("olga", {"billing": 5}, FULL)
    start = {"type": "start", "session_id": "web-re", "from": "visitor-11"}
    gateway = await _chat(api)
    await gateway.send_json(start)
    await next_of(gateway, "queued", [])
    offer = await olga.next("offer")
    await gateway.close()
    await olga.ws.send_json({"type": "accept", "reservation_id": offer["reservation_id"]})
    await olga.next("accepted")
    again = await _chat(api)
    await again.send_json({**start, "ref": 3})
    seen: list[dict[str, Any]] = []
    queued = await next_of(again, "queued", seen)
    assert (queued["contact"]["status"], queued["ref"]) == ("assigned", 3)
    assigned = await next_of(again, "assigned", seen)
    assert assigned == {"type": "assigned", "session_id": "web-re", "agent_id": "olga"}
    assert [s["type"] for s in seen] == ["queued", "assigned"]
    await again.send_json({**start, "ref": 4})  # a second replay on the same socket
    await next_of(again, "queued", [])
    await again.send_json({"type": "unknown", "ref": 5})
    follow: list[dict[str, Any]] = []
    await next_of(again, "error", follow)
    assert [s["type"] for s in follow] == ["error"]  # no second `assigned`
    await again.close()


async def test_waiting_chats_are_pushed_their_new_position(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ending the first of three waiting chats moves the other two up: each is pushed its new
    position (and only while it waits)."""
    monkeypatch.setattr(api_channels, "POSITION_PUSH_SECONDS", 0.05)
    gateway = await _chat(api)
    for n in range(3):
        await gateway.send_json({"type": "start", "session_id": f"p{n}", "from": f"line-{n}"})
        queued = await next_of(gateway, "queued", [])
        assert queued["contact"]["position"] == n + 1
    await gateway.send_json({"type": "end", "session_id": "p0"})
    seen: list[dict[str, Any]] = []
    await next_of(gateway, "ended", seen)
    await next_of(gateway, "position", seen)
    await next_of(gateway, "position", seen)
    moved = {s["session_id"]: s["position"] for s in seen if s["type"] == "position"}
    assert moved == {"p1": 1, "p2": 2}
    await gateway.close()


async def test_no_position_is_pushed_after_assigned(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The position pusher read a chat as waiting, and the chat was assigned (its `assigned`
    pushed) before the pusher went on: the position it read is not sent after `assigned`."""
    monkeypatch.setattr(api_channels, "POSITION_PUSH_SECONDS", 0.02)
    gateway = await _chat(api)
    ids = []
    for n in range(2):
        await gateway.send_json({"type": "start", "session_id": f"r{n}", "from": f"race-{n}"})
        ids.append((await next_of(gateway, "queued", []))["contact"]["id"])
    service = api.client.app[k.SERVICE]
    read, held, release = service.get_contact, asyncio.Event(), asyncio.Event()

    async def get_contact(tenant: str, contact_id: str) -> Any:
        contact = await read(tenant, contact_id)
        if contact.id == ids[1] and contact.position == 1 and not held.is_set():
            held.set()  # (the pusher, having read r1 first in line: it waits here)
            await release.wait()
        return contact

    monkeypatch.setattr(service, "get_contact", get_contact)
    await gateway.send_json({"type": "end", "session_id": "r0"})
    seen: list[dict[str, Any]] = []
    await next_of(gateway, "ended", seen)
    await asyncio.wait_for(held.wait(), WAIT)
    olga = await api.desk("olga", {"billing": 5}, {"chat": 1})
    offer = await olga.next("offer")
    await olga.send({"type": "accept", "reservation_id": offer["reservation_id"]})
    await next_of(gateway, "assigned", seen)
    release.set()
    with contextlib.suppress(TimeoutError):
        while True:
            seen.append(await gateway.receive_json(timeout=0.3))
    after = [s["type"] for s in seen[[s["type"] for s in seen].index("assigned") :]]
    assert after == ["assigned"]
    await gateway.close()


async def test_an_ended_chat_stays_ended_while_positions_are_pushed(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The position pusher reads each waiting chat in turn; one ended while it was reading
    others is not put back on the connection (a second `end` is a 404, as for any session the
    connection does not have)."""
    monkeypatch.setattr(api_channels, "POSITION_PUSH_SECONDS", 0.001)
    gateway = await _chat(api)
    for n in range(40):
        await gateway.send_json({"type": "start", "session_id": f"e{n}", "from": f"many-{n}"})
        await next_of(gateway, "queued", [])
    for n in range(39, 29, -1):
        await gateway.send_json({"type": "end", "session_id": f"e{n}"})
        await next_of(gateway, "ended", [])
    await asyncio.sleep(0.3)  # (a few rounds of the pusher)
    for n in range(39, 29, -1):
        await gateway.send_json({"type": "end", "session_id": f"e{n}", "ref": n})
        reply = await gateway.receive_json(timeout=5)
        while reply["type"] == "position":  # (the others still wait)
            reply = await gateway.receive_json(timeout=5)
        assert (reply["type"], reply.get("status"), reply["ref"]) == ("error", 404, n)
    await gateway.close()
