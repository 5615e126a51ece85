"""Customers (api-v1 §4): profiles, segments, identity resolution, history, persistence.

A sender is resolved by normalised identity (E.164 phone, case-folded email, gateway-scoped
chat handle); an unknown sender becomes a new customer. History lists the customer's contacts
newest first, each as it stands now. The restart test runs the app on its own embedded
redis-server twice over one data directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from router.app import create_app
from tests.e2e.conftest import ADMIN_TOKEN, Api, e2e_settings

ANA: dict[str, Any] = {
    "name": "Ana García",
    "phones": ["+1 415 555 0100"],
    "emails": ["ana@example.com"],
    "chat_handles": ["ana_92"],
    "value": 2500.0,
    "churn_risk": 0.1,
    "products": ["checking"],
    "attributes": {"crm": "SF-0042"},
}


def _email(sender: str, message_id: str, subject: str = "Card question") -> bytes:
    return (
        f"From: {sender}\nTo: help@bank.example\nMessage-ID: <{message_id}>\n"
        f"Subject: {subject}\nContent-Type: text/plain; charset=utf-8\n\nHello there.\n"
    ).encode()


def _brief(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(h["channel"], h["status"], h["agent_id"], h["disposition"]) for h in history]


@pytest.mark.parametrize(
    ("value", "segment"),
    [(15000.0, "platinum"), (10000.0, "platinum"), (2000.0, "gold"), (1999.99, "standard")],
)
async def test_segment_is_derived_from_value(api: Api, value: float, segment: str) -> None:
    """The demo's segment rules derive the segment: value ≥ 10000 platinum, ≥ 2000 gold."""
    body = await api.put_customer("cu-seg", value=value)
    assert body["segment"] == segment
    assert (await api.customer("cu-seg"))["segment"] == segment


async def test_put_then_get_profile(api: Api) -> None:
    """PUT creates (201) and replaces (200) the profile; GET returns it with no history yet."""
    created = await api.put_customer("cu-ana", **ANA)
    assert created["segment"] == "gold"
    got = await api.customer("cu-ana")
    for name, value in ANA.items():
        assert got[name] == value, name
    assert got["history"] == []
    replaced = await api.put_customer("cu-ana", 200, **{**ANA, "value": 12000.0})
    assert (replaced["value"], replaced["segment"]) == (12000.0, "platinum")
    assert (await api.customer("cu-ana"))["segment"] == "platinum"


async def test_unknown_customer_is_404(api: Api) -> None:
    """GET of a customer nobody created is a 404 problem."""
    problem = await api.customer("cu-nobody", 404)
    assert problem["detail"] == "no such customer"


async def test_identities_are_normalised_across_channels(api: Api) -> None:
    """A call from (415) 555-0100 and an email from ANA@example.com both resolve to Ana."""
    await api.put_customer("cu-ana", **ANA)
    call = await api.voice({"call_id": "CA1", "from": "(415) 555-0100"})
    mail = await api.email(_email("ANA@Example.COM", "a1@example.com"))
    text = await api.sms({"message_id": "SM1", "text": "hi", "from": "+14155550100"})
    for contact in (call, mail, text):
        assert contact["customer"] == {"id": "cu-ana", "segment": "gold", "value": 2500.0}
    history = (await api.customer("cu-ana"))["history"]
    assert [h["contact_id"] for h in history] == [text["id"], mail["id"], call["id"]]


async def test_chat_handle_resolves_to_the_profile(api: Api) -> None:
    """A chat started from a handle the profile lists resolves to that customer."""
    await api.put_customer("cu-ana", **ANA)
    async with api.client.ws_connect("/v1/channels/chat", headers=api.auth(ADMIN_TOKEN)) as ws:
        await ws.send_json({"type": "start", "session_id": "s1", "from": "ana_92"})
        queued = await ws.receive_json(timeout=5)
    assert queued["type"] == "queued", queued
    assert queued["contact"]["customer"]["id"] == "cu-ana"


async def test_chat_handles_are_scoped_by_gateway(api: Api) -> None:
    """A handle listed for another gateway (`partner:ana_92`) is not the chat gateway's handle."""
    await api.put_customer("cu-ana", **{**ANA, "chat_handles": ["partner:ana_92"]})
    async with api.client.ws_connect("/v1/channels/chat", headers=api.auth(ADMIN_TOKEN)) as ws:
        await ws.send_json({"type": "start", "session_id": "s1", "from": "ana_92"})
        queued = await ws.receive_json(timeout=5)
    assert queued["contact"]["customer"]["id"] not in (None, "cu-ana")


async def test_a_chat_from_a_gateway_handle_finds_its_profile(api: Api) -> None:
    """A profile's `partner:ana_92` is the customer of a chat from `partner:ana_92`, over the
    chat gateway's websocket and over POST /v1/contacts alike (inbound chats read handles as
    profiles do); a bare `ana_92` is still someone else, and a bad gateway name is a 422."""
    await api.put_customer("cu-ana", **{**ANA, "chat_handles": ["partner:ana_92"]})
    async with api.client.ws_connect("/v1/channels/chat", headers=api.auth(ADMIN_TOKEN)) as ws:
        await ws.send_json({"type": "start", "session_id": "s1", "from": "partner:ana_92"})
        queued = await ws.receive_json(timeout=5)
    assert queued["contact"]["customer"]["id"] == "cu-ana"

    async def chat(sender: str, status: int = 201) -> Any:
        body = {"channel": "chat", "from": sender}
        headers = {"Idempotency-Key": f"chat-{sender}"}
        return await api.call("POST", "/v1/contacts", status, json=body, headers=headers)

    assert (await chat("partner:ana_92"))["customer"]["id"] == "cu-ana"
    assert (await chat("ana_92"))["customer"]["id"] != "cu-ana"
    problem = await chat("part ner:ana_92", 422)
    assert "not a valid chat gateway" in problem["detail"]
    assert (await api.customer("cu-ana"))["chat_handles"] == ["partner:ana_92"]


async def test_identity_owned_by_another_customer_is_409(api: Api) -> None:
    """A profile claiming another customer's email is 409 naming the entry and its owner (not
    the address), and nothing is written."""
    await api.put_customer("cu-ana", **ANA)
    problem = await api.put_customer(
        "cu-imposter", 409, name="Not Ana", emails=["Ana@Example.com"], phones=["+1 212 555 0199"]
    )
    assert problem["status"] == 409
    assert problem["detail"].startswith("emails[0] already belongs to customer 'cu-ana'")
    assert "example.com" not in problem["detail"].lower()
    await api.customer("cu-imposter", 404)
    call = await api.voice({"call_id": "CA2", "from": "+1 212 555 0199"})
    assert call["customer"]["id"] != "cu-imposter"
    mail = await api.email(_email("ana@example.com", "a2@example.com"))
    assert mail["customer"]["id"] == "cu-ana"


async def test_invalid_identity_in_profile_is_422(api: Api) -> None:
    """A profile with unreadable identities is refused with a 422 problem listing each one by
    field and position (a string, as ``FieldError.loc`` in /openapi.json and pydantic's 422s
    have it); nothing is written."""
    problem = await api.put_customer(
        "cu-bad",
        422,
        phones=["+1 415 555 0100", "555-CALL-NOW-PLEASE"],
        emails=["not-an-email"],
        chat_handles=["ok-handle", "bad handle with spaces"],
    )
    assert "phone number" in problem["detail"]
    assert [e["loc"] for e in problem["errors"]] == [
        ["body", "phones", "1"],
        ["body", "emails", "0"],
        ["body", "chat_handles", "1"],
    ]
    await api.customer("cu-bad", 404)


async def test_dropped_identity_is_released(api: Api) -> None:
    """Replacing a profile without a phone frees it: the next call from it is someone new."""
    await api.put_customer("cu-ana", **ANA)
    await api.put_customer("cu-ana", 200, **{**ANA, "phones": []})
    call = await api.voice({"call_id": "CA3", "from": "(415) 555-0100"})
    assert call["customer"]["id"] != "cu-ana"
    mail = await api.email(_email("ana@example.com", "a3@example.com"))
    assert mail["customer"]["id"] == "cu-ana"


async def test_unknown_sender_becomes_a_new_customer(api: Api) -> None:
    """An unknown number becomes a new standard customer whose profile GET works at once."""
    call = await api.voice({"call_id": "CA4", "from": "+44 20 7946 0958"})
    new_id = call["customer"]["id"]
    assert new_id
    assert call["customer"]["segment"] == "standard"
    profile = await api.customer(new_id)
    assert profile["id"] == new_id
    assert profile["phones"] == ["+442079460958"]  # the number it was first heard from
    assert [h["contact_id"] for h in profile["history"]] == [call["id"]]
    again = await api.sms({"message_id": "SM2", "text": "hello", "from": "0044 20 7946 0958"})
    assert again["customer"]["id"] == new_id


async def test_a_new_customer_lists_the_address_or_handle_it_came_from(api: Api) -> None:
    """An unknown email sender or chat handle is on its new profile, normalised."""
    mail = await api.call(
        "POST", "/v1/channels/email", 201,
        json={"message_id": "<m1@x>", "from": "Zoe.Q@Example.COM", "to": "help@bank.test",
              "subject": "card", "body": "lost it"},
    )  # fmt: skip
    profile = await api.customer(mail["customer"]["id"])
    assert (profile["emails"], profile["phones"]) == (["zoe.q@example.com"], [])
    async with api.client.ws_connect("/v1/channels/chat", headers=api.auth(ADMIN_TOKEN)) as ws:
        await ws.send_json({"type": "start", "session_id": "s9", "from": "zq_77"})
        queued = await ws.receive_json(timeout=5)
    chat = await api.customer(queued["contact"]["customer"]["id"])
    assert chat["chat_handles"] == ["zq_77"]
    # the listed handle is the profile's own: PUT it back unchanged and it still resolves
    body = {k: chat[k] for k in ("phones", "emails", "chat_handles")}
    await api.put_customer(chat["id"], 200, **body)
    async with api.client.ws_connect("/v1/channels/chat", headers=api.auth(ADMIN_TOKEN)) as ws:
        await ws.send_json({"type": "start", "session_id": "s10", "from": "zq_77"})
        again = await ws.receive_json(timeout=5)
    assert again["contact"]["customer"]["id"] == chat["id"]


async def test_a_customer_id_nobody_has_created_yet_is_created(api: Api) -> None:
    """A contact naming a customer id the store has not heard of (the CRM's, before any PUT)
    creates that customer, owning the number it came from: the contact's customer exists, and
    the next call from the number finds it. A PUT then fills the profile in."""
    body = {"channel": "voice", "from": "+1 646 555 0188", "customer_id": "crm2-x"}
    headers = {"Idempotency-Key": "named-1"}
    first = await api.call("POST", "/v1/contacts", 201, json=body, headers=headers)
    assert first["customer"]["id"] == "crm2-x"
    profile = await api.customer("crm2-x")
    assert profile["phones"] == ["+16465550188"]
    assert [h["contact_id"] for h in profile["history"]] == [first["id"]]
    again = await api.voice({"call_id": "CA-named", "from": "(646) 555-0188"})
    assert again["customer"]["id"] == "crm2-x"
    await api.put_customer("crm2-x", 200, name="Kim", value=5000.0, phones=["+16465550188"])
    assert (await api.customer("crm2-x"))["segment"] == "gold"


async def test_a_number_that_joins_a_named_customer_becomes_its_own(api: Api) -> None:
    """A contact naming its customer from a new number adds that number to the profile; a PUT
    of the profile without it releases it again."""
    await api.put_customer("cu-ana", **ANA)
    new_number = {"channel": "voice", "from": "+1 415 555 0177", "customer_id": "cu-ana"}
    headers = {"Idempotency-Key": "join-1"}
    await api.call("POST", "/v1/contacts", 201, json=new_number, headers=headers)
    profile = await api.customer("cu-ana")
    assert profile["phones"] == ["+14155550177", "+1 415 555 0100"]
    again = await api.voice({"call_id": "CA-join", "from": "(415) 555-0177"})
    assert again["customer"]["id"] == "cu-ana"

    await api.put_customer("cu-ana", 200, **ANA)  # the profile as the CRM has it
    assert (await api.customer("cu-ana"))["phones"] == ["+1 415 555 0100"]
    released = await api.voice({"call_id": "CA-join-2", "from": "(415) 555-0177"})
    assert released["customer"]["id"] != "cu-ana"


async def test_an_offer_shows_the_profile_as_it_is_when_offered(api: Api) -> None:
    """A profile pushed while the customer waits reaches the agent's offer: the new name,
    value, segment, products and the suggestions they call for, and the customer's other
    waiting contacts in its history. The contact keeps the routing it was given."""
    await api.put_customer("cu-ana", **ANA)
    call = await api.voice({"call_id": "CA-wait", "from": "(415) 555-0100"})
    mail = await api.email(_email("ana@example.com", "a9@example.com"))
    assert (call["status"], call["customer"]["segment"]) == ("queued", "gold")
    richer = {**ANA, "name": "Ana García-Ruiz", "value": 25_000.0, "churn_risk": 0.8}
    await api.put_customer("cu-ana", 200, **richer)
    desk = await api.desk("bea", {"billing": 5})
    offer = await desk.next("offer")
    assert offer["contact"]["id"] == call["id"]
    customer = offer["customer"]
    assert (customer["name"], customer["value"], customer["churn_risk"], customer["segment"]) == (
        "Ana García-Ruiz", 25_000.0, 0.8, "platinum"
    )  # fmt: skip
    assert [h["contact_id"] for h in customer["history"]] == [call["id"], mail["id"]]
    kinds = {s["kind"] for s in offer["suggestions"]}
    assert {"retention", "upsell"} <= kinds  # churn risk 0.8; 25,000 and no savings account
    assert (await api.call("GET", f"/v1/contacts/{call['id']}", 200))["priority"] == call[
        "priority"
    ]  # routed as decided when it came in


async def test_an_offer_shows_the_contacts_that_came_after_it(api: Api) -> None:
    """A customer who calls, then emails while the call waits: the call's offer lists the
    email in its history, though the call was queued before the email existed."""
    await api.put_customer("cu-ana", **ANA)
    call = await api.voice({"call_id": "CA-first", "from": "(415) 555-0100"})
    mail = await api.email(_email("ana@example.com", "a10@example.com"))
    assert (call["status"], mail["status"]) == ("queued", "queued")
    desk = await api.desk("bea", {"billing": 5})
    offer = await desk.next("offer")
    assert offer["contact"]["id"] == call["id"]
    history = offer["customer"]["history"]
    assert [(h["contact_id"], h["channel"]) for h in history] == [
        (call["id"], "voice"),
        (mail["id"], "email"),
    ]


async def test_a_replay_after_its_sender_left_the_customer_creates_nobody(api: Api) -> None:
    """A call replayed after a profile PUT released its number answers the same contact and
    customer, and leaves the number free: no hidden customer takes it."""
    call = {"call_id": "CA-orphan", "from": "+1 503 555 0123"}
    first = await api.voice(call)
    customer = first["customer"]["id"]
    await api.put_customer(customer, 200, name="Released", phones=[])
    again = await api.voice(call, 200)
    assert (again["id"], again["customer"]["id"]) == (first["id"], customer)
    await api.put_customer("crm-503", 201, name="Real owner", phones=["+1 503 555 0123"])


async def test_history_follows_the_contact(api: Api) -> None:
    """History is newest first; each entry's status, agent and disposition follow the contact."""
    await api.put_customer("cu-ana", **ANA)
    agent = {"name": "Bea", "skills": {"billing": 5}, "capacity": {"voice": 1}}
    await api.call("PUT", "/v1/agents/bea", 201, json=agent, token=ADMIN_TOKEN)
    await api.call(
        "POST", "/v1/agents/bea/state", 200, json={"state": "available"}, token=ADMIN_TOKEN
    )

    call = await api.voice({"call_id": "CA5", "from": "(415) 555-0100"})
    assert (call["status"], call["agent_id"]) == ("offered", "bea")
    history = (await api.customer("cu-ana"))["history"]
    assert _brief(history) == [("voice", "offered", "bea", None)]

    rid = call["reservation_id"]
    await api.call("POST", f"/v1/reservations/{rid}/accept", 200, token=ADMIN_TOKEN)
    history = (await api.customer("cu-ana"))["history"]
    assert _brief(history) == [("voice", "assigned", "bea", None)]

    mail = await api.email(_email("ana@example.com", "a5@example.com"))
    assert mail["status"] == "queued"
    done = {"disposition": "card-replaced", "wrap_up_seconds": 0}
    await api.call("POST", f"/v1/contacts/{call['id']}/complete", 200, json=done, token=ADMIN_TOKEN)
    await api.call("POST", f"/v1/contacts/{mail['id']}/abandon", 200)
    history = (await api.customer("cu-ana"))["history"]
    assert _brief(history) == [
        ("email", "abandoned", None, None),
        ("voice", "completed", "bea", "card-replaced"),
    ]
    assert [h["queue"] for h in history] == ["billing", "billing"]
    assert history[0]["created_at"] >= history[1]["created_at"]


async def test_profiles_identities_and_history_survive_a_restart(
    aiohttp_client: AiohttpClient, tmp_path: Path, tenant: str
) -> None:
    """On the embedded Redis, a restarted server still knows the profile, phone and history."""
    settings = e2e_settings(tenant, redis_url="", data_dir=tmp_path / "var")
    first = Api(await aiohttp_client(create_app(settings)), tenant)
    await first.put_customer("cu-ana", **ANA)
    call = await first.voice({"call_id": "CA6", "from": "(415) 555-0100"})
    stranger = await first.voice({"call_id": "CA7", "from": "+33 1 42 68 53 00"})
    await first.client.close()

    second = Api(await aiohttp_client(create_app(settings)), tenant)
    profile = await second.customer("cu-ana")
    assert {k: profile[k] for k in ANA} == ANA
    assert [h["contact_id"] for h in profile["history"]] == [call["id"]]
    mail = await second.email(_email("ANA@example.com", "a6@example.com"))
    assert mail["customer"]["id"] == "cu-ana"
    again = await second.voice({"call_id": "CA8", "from": "00 33 1 42 68 53 00"})
    assert again["customer"]["id"] == stranger["customer"]["id"]
    assert await second.voice({"call_id": "CA6", "from": "(415) 555-0100"}, 200) == call
    await second.client.close()
