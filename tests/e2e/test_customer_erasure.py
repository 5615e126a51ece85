"""Customer erasure (GDPR art. 17): ``DELETE /v1/customers/{id}``, admin only.

The profile, the numbers, addresses and handles that resolve to the customer, its contact
history and the placeholders merged into it all go in one script; a later contact from the
same number is a stranger's (a new placeholder), a later PUT of the id a new customer. Its
ended contacts stay readable with the link to it cut; while one of its contacts is under way
the erasure is refused with 409 and nothing changes. Every instance's customer cache forgets
the customer, and the log names only its id.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from queues.keys import Keys
from router.app import create_app
from router.openapi import build
from tests.e2e.conftest import ADMIN_TOKEN, Api, e2e_settings, short_email
from tests.e2e.test_customer_cache import _two_instances, _until
from tests.support import json_logs

PHONE = "+14155550100"
ANA: dict[str, Any] = {
    "name": "Ana García",
    "phones": ["+1 415 555 0100"],
    "emails": ["Ana@Example.com"],
    "chat_handles": ["ana_92"],
    "value": 2500.0,
}
DEMO = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
#: every way the customer's number and address could be written in a log line or a record
SECRETS = ["4155550100", "555-0100", "555 0100", "5550100", "555-0199", "4155550199"]
SECRETS += ["ana@example.com", "ana_92"]


async def _delete(api: Api, customer_id: str, status: int = 204, **kw: Any) -> Any:
    kw.setdefault("token", ADMIN_TOKEN)
    return await api.call("DELETE", f"/v1/customers/{customer_id}", status, **kw)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _hash(redis: Redis | None, key: str) -> dict[str, str]:
    """A hash's fields as stored, as text."""
    assert redis is not None
    return {_text(k): _text(v) for k, v in (await redis.hgetall(key)).items()}


async def _owners(api: Api) -> set[str]:
    """The customer ids the identities hash names."""
    _, identities, _ = await api.footprint()
    return {v.decode() for v in identities.values()}


async def test_an_erased_customer_is_gone_and_its_number_a_strangers(api: Api) -> None:
    """After DELETE (204, no body) GET is 404, no key of the customer is left, its number and
    address resolve to a new placeholder with no history, and a PUT of its id is a new
    customer (201)."""
    await api.put_customer("crm-ana", 201, **ANA)
    desk = await api.desk("olga", {"billing": 5}, {"voice": 1})
    first = await api.voice({"call_id": "CA1", "from": PHONE})
    assert first["customer"]["id"] == "crm-ana"
    await desk.take(await desk.next("offer"), "kept")
    assert len((await api.customer("crm-ana"))["history"]) == 1

    assert await _delete(api, "crm-ana") is None
    await api.customer("crm-ana", 404)
    keys, _, _ = await api.footprint()
    stored = Keys(api.tenant)
    assert stored.customer("crm-ana").encode() not in keys
    assert stored.customer_history("crm-ana").encode() not in keys
    assert await _owners(api) == set()

    second = await api.voice({"call_id": "CA2", "from": "(415) 555-0100"})
    stranger = second["customer"]["id"]
    assert stranger.startswith("cu")
    assert stranger != "crm-ana"
    offer = await desk.next("offer")
    assert [h["contact_id"] for h in offer["customer"]["history"]] == [second["id"]]
    assert offer["customer"]["name"] is None
    await desk.take(offer, "new")
    mail = await api.email(short_email("ana@example.com", "m1@example.com"))
    assert mail["customer"]["id"] not in ("crm-ana", stranger)

    again = await api.put_customer("crm-ana", 201, name="Ana")
    assert again["history"] == []
    assert again["phones"] == []


async def test_ended_contacts_stay_readable_without_the_customer(api: Api) -> None:
    """A completed callback and an abandoned call keep GET /v1/contacts/{id} (customer id
    null, value 0, the segment they were routed in) and lose every link to the customer: no
    ``cust``, no callback number, no view, and no field names the customer or its number."""
    await api.put_customer("crm-ana", 201, **ANA)
    call = await api.voice({"call_id": "CA1", "from": PHONE})
    left = await api.voice({"call_id": "CA2", "from": PHONE})
    vic = {"name": "Vic", "skills": {"billing": 5}, "capacity": {"voice": 1}}
    await api.call("PUT", "/v1/agents/vic", 201, json=vic, token=ADMIN_TOKEN)  # able to call back
    body = {"number": "+1 415 555 0199"}
    await api.call("POST", f"/v1/contacts/{call['id']}/callback", 200, json=body)
    await api.call("POST", f"/v1/contacts/{left['id']}/abandon", 200)
    keys = Keys(api.tenant)
    assert (await _hash(api.redis, keys.contact(call["id"])))["cb"] == "+14155550199"
    desk = await api.desk("olga", {"billing": 5}, {"voice": 1})
    await desk.take(await desk.next("offer"), "called-back")
    assert "cb" not in await _hash(api.redis, keys.contact(call["id"]))  # gone as it ended

    await _delete(api, "crm-ana")
    for contact, status in ((call, "completed"), (left, "abandoned")):
        got = await api.call("GET", f"/v1/contacts/{contact['id']}", 200)
        assert got["status"] == status
        assert got["customer"] == {"id": None, "segment": "gold", "value": 0.0}
        assert got["created_at"] == contact["created_at"]
        stored = await _hash(api.redis, keys.contact(contact["id"]))
        assert not {"cust", "cb", "view"} & set(stored)
        text = json.dumps(stored).lower()
        assert "crm-ana" not in text
        assert not [s for s in SECRETS if s in text]
    assert (await api.call("GET", f"/v1/contacts/{call['id']}", 200))["disposition"] == (
        "called-back"
    )


async def test_erasure_is_for_admins_and_unknown_customers_are_404(api: Api) -> None:
    """A gateway token is 403 and no token 401 (the customer stays); an unknown id, an erased
    one, an id no customer may have and a placeholder taken over (a forward alone) are 404."""
    await api.put_customer("crm-ana", 201, **ANA)
    problem = await _delete(api, "crm-ana", 403, token="e2e-gateway-8e41c6a0f5")
    assert problem["type"].endswith("/forbidden")
    await _delete(api, "crm-ana", 401, token="")
    assert (await api.customer("crm-ana"))["name"] == "Ana García"

    problem = await _delete(api, "nobody", 404)
    assert problem["type"].endswith("/customer-not-found")
    await _delete(api, "crm-ana")
    await _delete(api, "crm-ana", 404)
    await _delete(api, "no:such", 404)

    placeholder = (await api.voice({"call_id": "CA1", "from": PHONE}))["customer"]["id"]
    await api.put_customer("crm-kim", 201, phones=[PHONE])
    await _delete(api, placeholder, 404)
    assert (await api.customer("crm-kim"))["phones"] == [PHONE]


async def test_live_contacts_refuse_the_erasure_and_change_nothing(api: Api) -> None:
    """While a contact of the customer is queued, offered, assigned or wrapping the DELETE is
    409 naming how many, and every key of the tenant is as it was; once they end it is 204."""
    await api.put_customer("crm-ana", 201, **ANA)
    one = await api.voice({"call_id": "CA1", "from": PHONE})
    two = await api.voice({"call_id": "CA2", "from": PHONE})
    before = await _everything(api)
    problem = await _delete(api, "crm-ana", 409)
    assert problem["type"].endswith("/customer-has-live-contacts")
    assert "has 2 contact(s)" in problem["detail"]
    assert two["id"] in problem["detail"]
    assert not [s for s in SECRETS if s in problem["detail"]]
    assert await _everything(api) == before

    await api.call("POST", f"/v1/contacts/{two['id']}/cancel", 200)
    desk = await api.desk("olga", {"billing": 5}, {"voice": 1})
    offer = await desk.next("offer")  # offered
    assert "has 1 contact(s)" in (await _delete(api, "crm-ana", 409))["detail"]
    await desk.send({"type": "accept", "reservation_id": offer["reservation_id"]})
    await desk.next("accepted")  # assigned
    await _delete(api, "crm-ana", 409)
    complete = {"type": "complete", "contact_id": one["id"], "wrap_up_seconds": 0.5}
    await desk.send(complete)
    assert (await desk.next("completed"))["contact"]["status"] == "wrapping"
    await _delete(api, "crm-ana", 409)
    history = (await api.customer("crm-ana"))["history"]
    assert [h["status"] for h in history] == ["cancelled", "wrapping"]

    for _ in range(100):  # the timer loop ends the wrap-up (polled: no event over HTTP)
        if (await api.call("GET", f"/v1/contacts/{one['id']}", 200))["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    await _delete(api, "crm-ana")


async def _everything(api: Api) -> dict[bytes, Any]:
    """Every key of the tenant with its value (hashes, lists, sets, strings, zsets)."""
    assert api.redis is not None
    keys, _, _ = await api.footprint()
    out: dict[bytes, Any] = {}
    for key in keys:
        kind = _text(await api.redis.type(key))
        if kind == "hash":
            out[key] = await api.redis.hgetall(key)
        elif kind == "list":
            out[key] = await api.redis.lrange(key, 0, -1)
        elif kind == "set":
            out[key] = await api.redis.smembers(key)
        elif kind == "zset":
            out[key] = await api.redis.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = await api.redis.get(key)
    return out


async def test_placeholders_merged_into_the_customer_go_with_it(api: Api) -> None:
    """The placeholders a PUT took over are erased with the customer (their forwards and
    lists): the number is a stranger's again, and a reply to the placeholder's email thread
    joins neither the customer nor the placeholder."""
    call = await api.voice({"call_id": "CA1", "from": PHONE})
    mail = await api.email(short_email("ana@example.com", "m1@example.com"))
    placeholders = {call["customer"]["id"], mail["customer"]["id"]}
    await api.put_customer("crm-ana", 201, **ANA)
    keys = Keys(api.tenant)
    for p in placeholders:
        assert await _hash(api.redis, keys.customer(p)) == {"to": "crm-ana"}
    # the placeholders' contacts are the customer's now: still waiting, they hold it back
    assert "has 2 contact(s)" in (await _delete(api, "crm-ana", 409))["detail"]
    for contact in (call, mail):
        await api.call("POST", f"/v1/contacts/{contact['id']}/cancel", 200)

    await _delete(api, "crm-ana")
    footprint, _, _ = await api.footprint()
    for p in placeholders:
        assert keys.customer(p).encode() not in footprint
        assert keys.customer_history(p).encode() not in footprint
        await api.customer(p, 404)
    gone = {"crm-ana", *placeholders}
    assert (await api.voice({"call_id": "CA2", "from": PHONE}))["customer"]["id"] not in gone
    reply = await api.email(short_email("ana@example.com", "m2@example.com", "m1@example.com"))
    assert reply["customer"]["id"] not in gone


async def test_a_takeover_keeps_every_contact_for_the_erasure(
    aiohttp_client: AiohttpClient, redis_url: str, redis_client: Redis, tenant: str, tmp_path: Path
) -> None:
    """A takeover's merged history shows history_length contacts (1 here) but its list names
    them all, the placeholder's older one included, so the erasure unlinks it too."""
    config = tmp_path / "routing.yaml"
    config.write_text(DEMO.read_text(encoding="utf-8") + "\nhistory_length: 1\n")
    settings = e2e_settings(tenant, redis_url=redis_url, config=str(config))
    api = Api(await aiohttp_client(create_app(settings)), tenant, redis_client)
    call = await api.voice({"call_id": "CA1", "from": PHONE})
    placeholder = call["customer"]["id"]
    await api.call("POST", f"/v1/contacts/{call['id']}/cancel", 200)
    await api.put_customer("crm-ana", 201, emails=["ana@example.com"])
    await asyncio.sleep(0.005)  # a later enqueue time
    mail = await api.email(short_email("ana@example.com", "m1@example.com"))
    await api.call("POST", f"/v1/contacts/{mail['id']}/cancel", 200)
    merged = await api.put_customer("crm-ana", 200, emails=["ana@example.com"], phones=[PHONE])
    assert [h["contact_id"] for h in merged["history"]] == [mail["id"]]
    keys = Keys(tenant)
    assert await redis_client.lrange(keys.customer_history("crm-ana"), 0, -1) == [
        mail["id"].encode(),
        call["id"].encode(),
    ]
    assert await _hash(redis_client, keys.customer(placeholder)) == {"to": "crm-ana"}

    await _delete(api, "crm-ana")
    assert await redis_client.exists(keys.customer(placeholder)) == 0
    assert await _owners(api) == set()
    for contact in (call, mail):
        assert "cust" not in await _hash(redis_client, keys.contact(contact["id"]))
        got = await api.call("GET", f"/v1/contacts/{contact['id']}", 200)
        assert got["customer"]["id"] is None


async def test_the_erasure_reaches_contacts_beyond_the_history_length(
    aiohttp_client: AiohttpClient, redis_url: str, redis_client: Redis, tenant: str, tmp_path: Path
) -> None:
    """A customer with far more ended contacts than history_length (2 here) is erased from
    every one of them: none keeps its customer reference or id."""
    config = tmp_path / "routing.yaml"
    config.write_text(DEMO.read_text(encoding="utf-8") + "\nhistory_length: 2\n")
    settings = e2e_settings(tenant, redis_url=redis_url, config=str(config))
    api = Api(await aiohttp_client(create_app(settings)), tenant, redis_client)
    await api.put_customer("crm-ana", 201, **ANA)
    made = []
    for n in range(24):
        call = await api.voice({"call_id": f"CA{n}", "from": PHONE})
        await api.call("POST", f"/v1/contacts/{call['id']}/cancel", 200)
        made.append(call["id"])
    assert len((await api.customer("crm-ana"))["history"]) == 2

    assert await _delete(api, "crm-ana") is None
    keys = Keys(tenant)
    for cid in made:
        assert "cust" not in await _hash(redis_client, keys.contact(cid)), cid
        got = await api.call("GET", f"/v1/contacts/{cid}", 200)
        assert got["customer"]["id"] is None, cid


async def test_every_instance_forgets_the_erased_customer(
    aiohttp_client: AiohttpClient, redis_url: str, tenant: str
) -> None:
    """B routes a returning caller from its cache; after an erasure on A, B's entry is
    dropped and B's next call from the number is a stranger's, the same one A sees."""
    a, b, cache_a, cache_b = await _two_instances(aiohttp_client, redis_url, tenant)
    await a.put_customer("crm-ana", 201, **ANA)
    desk = await b.desk("olga", {"billing": 5}, {"voice": 1})
    await b.voice({"call_id": "CB1", "from": PHONE})
    await desk.take(await desk.next("offer"), "kept")
    hit = cache_b.lookup(tenant, f"phone:{PHONE}")
    assert hit is not None
    assert hit.id == "crm-ana"  # B would route the number from memory

    await _delete(a, "crm-ana")
    assert (tenant, "crm-ana") not in cache_a.entries
    await _until(lambda: (tenant, "crm-ana") not in cache_b.entries)
    assert cache_b.lookup(tenant, f"phone:{PHONE}") is None
    second = await b.voice({"call_id": "CB2", "from": PHONE})
    assert second["customer"]["id"] not in (None, "crm-ana")
    offer = await desk.next("offer")
    assert offer["customer"]["name"] is None
    await desk.take(offer, "stranger")
    third = await a.voice({"call_id": "CA3", "from": PHONE})
    assert third["customer"]["id"] == second["customer"]["id"]
    await a.close()
    await b.close()


async def test_the_erasure_is_logged_by_id_alone(
    aiohttp_client: AiohttpClient, redis_url: str, tenant: str
) -> None:
    """One ``customers.deleted`` line names the customer id and nothing else of it; no
    number, address or handle is in any line, the refused attempt's included."""
    with json_logs(b"erasure-log-hash-key-0123456789ab") as stream:
        app = create_app(e2e_settings(tenant, redis_url=redis_url))
        api = Api(await aiohttp_client(app), tenant)
        await api.put_customer("crm-ana", 201, **ANA)
        call = await api.voice({"call_id": "CA1", "from": "(415) 555-0100"})
        await _delete(api, "crm-ana", 409)
        await api.call("POST", f"/v1/contacts/{call['id']}/cancel", 200)
        await _delete(api, "crm-ana")
        text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    deleted = [line for line in lines if line["event"] == "customers.deleted"]
    assert len(deleted) == 1
    assert deleted[0]["customer"] == "crm-ana"
    assert set(deleted[0]) <= {"event", "customer", "level", "logger", "timestamp", "tenant",
                               "request_id"}  # fmt: skip
    assert not [s for s in SECRETS if s in text.lower()]


def test_the_document_lists_the_erasure() -> None:
    """/openapi.json has DELETE /v1/customers/{id}: admin only, 204, 404 and 409 problems (and
    the 429 of the rate limit and the 503 of the store, as every authenticated operation)."""
    op = build("0.1.0")["paths"]["/v1/customers/{id}"]["delete"]
    assert op["description"] == "Roles: admin"
    assert set(op["responses"]) == {"204", "401", "403", "404", "409", "429", "503"}
    assert "content" not in op["responses"]["204"]


async def test_the_retention_setting_reaches_the_store(
    aiohttp_client: AiohttpClient, redis_url: str, redis_client: Redis, tenant: str
) -> None:
    """SWITCHBOARD_CONTACT_RETENTION_DAYS is how long an ended contact and its customer's
    history list are kept (7 days here); 0 keeps them for good."""
    keys = Keys(tenant)
    for days, number in ((7, PHONE), (0, "+14155550111")):
        settings = e2e_settings(tenant, redis_url=redis_url, contact_retention_days=days)
        api = Api(await aiohttp_client(create_app(settings)), tenant, redis_client)
        call = await api.voice({"call_id": f"CA{days}", "from": number})
        await api.call("POST", f"/v1/contacts/{call['id']}/cancel", 200)
        customer = call["customer"]["id"]
        for key in (keys.contact(call["id"]), keys.customer_history(customer)):
            ttl = await redis_client.ttl(key)
            assert (7 * 86_400 - 10 <= ttl <= 7 * 86_400) if days else ttl == -1, (key, ttl)
        await api.client.close()
