"""A CRM profile takes over the placeholder the server made for a first-time sender.

A contact from a sender nobody claims makes a placeholder customer under a generated id. A
later ``PUT /v1/customers/{crm id}`` listing that sender's number, address or handle is not a
conflict: the placeholder is merged into the CRM customer (identities, contact history), its
id answers 404 and leads contacts, threads and replays to the CRM customer. Two profiles the
CRM wrote (or a customer created under an id a contact named) claiming one identity remain a
409.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from queues.keys import Keys
from router import appkeys as k
from router.app import create_app
from tests.e2e.conftest import Api, e2e_settings, short_email
from tests.support import json_logs

PHONE = "+14155550100"
DEMO = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"


def _ids(history: list[dict[str, Any]]) -> list[str]:
    return [h["contact_id"] for h in history]


async def _stored(redis: Redis | None, tenant: str, customer: str) -> dict[Any, Any]:
    """The fields of a customer's hash as stored (bytes to bytes)."""
    assert redis is not None
    return dict(await redis.hgetall(Keys(tenant).customer(customer)))


async def test_a_crm_profile_takes_over_a_first_time_callers_placeholder(api: Api) -> None:
    """An unknown caller's placeholder passes to the CRM profile listing the number: the PUT
    is 201, the next call resolves to the CRM id with the first call in its history and goes
    to the agent who took the first (last_agent), and the placeholder's id answers 404."""
    olga = await api.desk("olga", {"billing": 5}, {"voice": 1})
    first = await api.voice({"call_id": "CA1", "from": "(415) 555-0100"})
    placeholder = first["customer"]["id"]
    assert placeholder.startswith("cu")
    await olga.take(await olga.next("offer"), "kept")

    crm = {"name": "Ana", "phones": ["+1 415 555 0100"], "value": 5000.0, "churn_risk": 0.8}
    created = await api.put_customer("crm-ana", 201, **crm)
    assert created["phones"] == ["+1 415 555 0100"]
    assert _ids(created["history"]) == [first["id"]]
    assert created["history"][0]["agent_id"] == "olga"
    await api.customer(placeholder, 404)
    assert (await api.call("GET", f"/v1/contacts/{first['id']}", 200))["id"] == first["id"]

    # a retention agent is free too: only last_agent sends the next call to olga
    await api.desk("rita", {"retention": 5}, {"voice": 1})
    second = await api.voice({"call_id": "CA2", "from": PHONE})
    assert second["customer"]["id"] == "crm-ana"
    assert second["rule"] == "valuable-at-risk"
    offer = await olga.next("offer")
    assert offer["contact"]["id"] == second["id"]
    assert _ids(offer["customer"]["history"]) == [second["id"], first["id"]]
    await olga.take(offer, "saved")
    assert _ids((await api.customer("crm-ana"))["history"]) == [second["id"], first["id"]]

    # the placeholder's id, named by a gateway, leads to the CRM customer and is not remade
    named = {"channel": "sms", "from": PHONE, "customer_id": placeholder}
    again = await api.call(
        "POST", "/v1/contacts", 201, json=named, headers={"Idempotency-Key": "named-old"}
    )
    assert again["customer"]["id"] == "crm-ana"
    await api.customer(placeholder, 404)


async def test_the_takeover_leaves_no_trace_of_the_placeholder_but_its_forward(api: Api) -> None:
    """In Redis the placeholder keeps only its forward to the CRM customer: its history list is
    gone and every identity it owned now names the CRM customer."""
    first = await api.voice({"call_id": "CA1", "from": PHONE})
    placeholder = first["customer"]["id"]
    assert (await _stored(api.redis, api.tenant, placeholder))[b"made"] == b"sender"
    await api.put_customer("crm-ana", 201, phones=[PHONE])
    assert await _stored(api.redis, api.tenant, placeholder) == {b"to": b"crm-ana"}
    keys, identities, _ = await api.footprint()
    assert Keys(api.tenant).customer_history(placeholder).encode() not in keys
    assert identities == {f"phone:{PHONE}".encode(): b"crm-ana"}
    assert (await _stored(api.redis, api.tenant, "crm-ana"))[b"made"] == b"put"


async def test_a_number_two_crm_profiles_claim_is_still_409(api: Api) -> None:
    """A number a PUT gave one CRM customer is refused to another (409 naming the owner, not
    the number), and nothing moves: the next call still resolves to the first."""
    await api.put_customer("crm-ana", 201, name="Ana", phones=["+1 415 555 0100"])
    problem = await api.put_customer("crm-other", 409, name="Other", phones=[PHONE])
    assert problem["detail"].startswith("phones[0] already belongs to customer 'crm-ana'")
    assert "555" not in problem["detail"]
    await api.customer("crm-other", 404)
    assert (await api.voice({"call_id": "CA1", "from": PHONE}))["customer"]["id"] == "crm-ana"


async def test_a_placeholder_once_put_is_the_crms_own(api: Api) -> None:
    """A placeholder the CRM adopted by a PUT of its own id is no placeholder any more: another
    profile claiming its number is a 409."""
    first = await api.voice({"call_id": "CA1", "from": PHONE})
    adopted = first["customer"]["id"]
    await api.put_customer(adopted, 200, name="Ana", phones=[PHONE])
    await api.put_customer("crm-ana", 409, phones=[PHONE])
    assert (await api.customer(adopted))["name"] == "Ana"


async def test_a_customer_a_contact_named_is_not_taken_over(api: Api) -> None:
    """A customer made under an id a contact named (the CRM's id, before its PUT) is the CRM's
    own, not a placeholder: another profile claiming its number is a 409."""
    body = {"channel": "voice", "from": PHONE, "customer_id": "crm-kim"}
    await api.call("POST", "/v1/contacts", 201, json=body, headers={"Idempotency-Key": "n1"})
    problem = await api.put_customer("crm-ana", 409, phones=[PHONE])
    assert "'crm-kim'" in problem["detail"]


async def test_placeholders_made_before_the_marker_are_taken_over(api: Api) -> None:
    """Customers stored before 'made' existed: a placeholder (generated id, profile with the
    channel it came from) is taken over; a PUT profile still is a 409."""
    assert api.redis is not None
    keys = Keys(api.tenant)
    old = await api.voice({"call_id": "CA1", "from": PHONE})
    await api.redis.hdel(keys.customer(old["customer"]["id"]), "made")
    await api.put_customer("crm-ana", 201, phones=[PHONE])
    assert (await api.voice({"call_id": "CA2", "from": PHONE}))["customer"]["id"] == "crm-ana"

    await api.redis.hdel(keys.customer("crm-ana"), "made")
    await api.put_customer("crm-other", 409, phones=[PHONE])


async def test_the_placeholders_other_addresses_come_along(api: Api) -> None:
    """An address that joined the placeholder (a reply from another address) passes to the
    CRM customer with it and is listed on its profile; a reply to the placeholder's thread
    resolves to the CRM customer."""
    await api.email(short_email("zoe@example.com", "m1@example.com"))
    reply = await api.email(short_email("zoe.work@example.com", "m2@example.com", "m1@example.com"))
    placeholder = reply["customer"]["id"]
    taken = await api.put_customer("crm-zoe", 201, name="Zoe", emails=["Zoe@Example.com"])
    assert taken["emails"] == ["zoe.work@example.com", "Zoe@Example.com"]
    assert len(taken["history"]) == 2
    await api.customer(placeholder, 404)
    later = await api.email(short_email("zoe.work@example.com", "m3@example.com"))
    assert later["customer"]["id"] == "crm-zoe"
    thread = await api.email(short_email("someone@example.com", "m4@example.com", "m1@example.com"))
    assert thread["customer"]["id"] == "crm-zoe"
    # as for any address that joined: the CRM's next PUT without it releases it
    await api.put_customer("crm-zoe", 200, name="Zoe", emails=["Zoe@Example.com"])
    free = await api.email(short_email("zoe.work@example.com", "m5@example.com"))
    assert free["customer"]["id"] != "crm-zoe"


async def test_histories_merge_newest_first_within_the_history_length(
    aiohttp_client: AiohttpClient, redis_url: str, tenant: str, tmp_path: Path
) -> None:
    """The CRM customer's own contacts and the placeholder's merge newest first, cut to the
    configured history length; a contact replayed after the takeover answers as before."""
    config = tmp_path / "routing.yaml"
    config.write_text(DEMO.read_text(encoding="utf-8") + "\nhistory_length: 3\n")
    settings = e2e_settings(tenant, redis_url=redis_url, config=str(config))
    api = Api(await aiohttp_client(create_app(settings)), tenant)
    await api.put_customer("crm-ana", 201, emails=["ana@example.com"])
    made: list[str] = []
    for n in range(4):  # email, call, email, call
        if n % 2:
            contact = await api.voice({"call_id": f"CA{n}", "from": PHONE})
        else:
            contact = await api.email(short_email("ana@example.com", f"m{n}@example.com"))
        made.append(contact["id"])
        await asyncio.sleep(0.005)  # distinct enqueue times
    merged = await api.put_customer("crm-ana", 200, emails=["ana@example.com"], phones=[PHONE])
    assert _ids(merged["history"]) == made[::-1][:3]
    replay = await api.voice({"call_id": "CA1", "from": PHONE}, 200)
    assert replay["id"] == made[1]


async def test_a_waiting_contact_of_the_placeholder_is_offered_as_the_crm_customer(
    api: Api,
) -> None:
    """A placeholder's call still in line when the CRM profile arrives is offered showing the
    CRM customer: its id, name and segment."""
    call = await api.voice({"call_id": "CA1", "from": PHONE})
    assert call["status"] == "queued"
    await api.put_customer("crm-ana", 201, name="Ana", phones=[PHONE], value=2500.0)
    desk = await api.desk("olga", {"billing": 5}, {"voice": 1})
    offer = await desk.next("offer")
    assert offer["contact"]["id"] == call["id"]
    assert (offer["customer"]["id"], offer["customer"]["name"]) == ("crm-ana", "Ana")
    assert offer["customer"]["segment"] == "gold"


async def test_the_takeover_drops_the_placeholder_from_the_cache(api: Api) -> None:
    """The instance that ran the PUT no longer holds the placeholder in its cache."""
    cache = api.client.app[k.SERVICE].customers.cache
    assert cache is not None
    desk = await api.desk("olga", {"billing": 5}, {"voice": 1})
    first = await api.voice({"call_id": "CA1", "from": PHONE})
    await desk.take(await desk.next("offer"), "kept")
    key = (api.tenant, first["customer"]["id"])
    assert key in cache.entries
    await api.put_customer("crm-ana", 201, phones=[PHONE])
    assert key not in cache.entries
    second = await api.voice({"call_id": "CA2", "from": PHONE})
    assert second["customer"]["id"] == "crm-ana"


async def test_a_takeover_logs_ids_and_no_number(
    aiohttp_client: AiohttpClient, redis_url: str, tenant: str
) -> None:
    """The takeover is logged by customer ids; the number is in no log line, nor is it in the
    refusal of a second claim."""
    with json_logs(b"takeover-log-hash-key-0123456789") as stream:
        app = create_app(e2e_settings(tenant, redis_url=redis_url))
        api = Api(await aiohttp_client(app), tenant)
        first = await api.voice({"call_id": "CA1", "from": "(415) 555-0100"})
        await api.put_customer("crm-ana", 201, phones=["415-555-0100"])
        await api.put_customer("crm-other", 409, phones=["+1 (415) 555-0100"])
        text = stream.getvalue()
    assert "customers.merged" in text
    assert first["customer"]["id"] in text
    assert not [s for s in ("4155550100", "555-0100", "555 0100") if s in text]
