"""The customer cache: returning customers routed without a Redis round trip, never stale.

A customer is served from an instance's cache only while every contact in its history has
ended (completed or abandoned) and nothing else touched it; otherwise resolution goes to Redis
as before. Two instances on one Redis keep each other right through notices on pub/sub: a
profile written on one, or a contact created on one, drops the other's entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from queues.contract import ContactState
from router import appkeys as k
from router.app import create_app
from router.customers import CustomerCache, Customers, Resolved
from tests.e2e.conftest import Api, e2e_settings
from tests.support import count_calls

ANA: dict[str, Any] = {
    "name": "Ana García",
    "phones": ["+1 415 555 0100"],
    "chat_handles": ["ana_92"],
    "value": 2500.0,
    "churn_risk": 0.1,
}
PHONE = "+14155550100"


def _count_resolutions(api: Api) -> list[int]:
    """Count the Redis resolutions of this app's customers (``resolve_customer`` scripts)."""
    customers: Customers = api.client.app[k.SERVICE].customers
    assert customers.store is not None
    return count_calls(customers.store, "resolve")


def _brief(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(h["channel"], h["status"], h["agent_id"], h["disposition"]) for h in history]


async def _until(check: Callable[[], bool], seconds: float = 3.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110 (state set by other tasks, no event to await)
            await asyncio.sleep(0.01)


async def _two_instances(
    aiohttp_client: AiohttpClient, redis_url: str, tenant: str
) -> tuple[Api, Api, CustomerCache, CustomerCache]:
    """Two apps on one Redis whose caches have heard of each other (past B's grace: B
    announced itself after A), and their caches."""
    a = Api(await aiohttp_client(create_app(e2e_settings(tenant, redis_url=redis_url))), tenant)
    b = Api(await aiohttp_client(create_app(e2e_settings(tenant, redis_url=redis_url))), tenant)
    cache_a = a.client.app[k.SERVICE].customers.cache
    cache_b = b.client.app[k.SERVICE].customers.cache
    assert cache_a is not None
    assert cache_b is not None
    await _until(lambda: cache_a.shared and cache_b.shared)
    await asyncio.sleep(cache_b.grace_seconds)
    return a, b, cache_a, cache_b


async def test_returning_customer_is_routed_from_the_cache(api: Api) -> None:
    """After PUT, and after each contact ends here, the next contact needs no resolution in
    Redis, and the agent sees the same history ``GET /v1/customers`` gives."""
    calls = _count_resolutions(api)
    await api.put_customer("cu-ana", **ANA)
    desk = await api.desk("olga", {"billing": 5}, {"voice": 1, "chat": 1})

    await api.voice({"call_id": "CA1", "from": PHONE})
    first = await desk.next("offer")
    assert first["customer"]["id"] == "cu-ana"
    assert _brief(first["customer"]["history"]) == [("voice", "queued", None, None)]
    await desk.take(first, "kept")

    await api.voice({"call_id": "CA2", "from": "(415) 555-0100"})
    second = await desk.next("offer")
    assert calls[0] == 0
    assert second["customer"]["id"] == "cu-ana"
    assert second["customer"]["segment"] == "gold"
    history = second["customer"]["history"]
    assert _brief(history) == [
        ("voice", "queued", None, None),
        ("voice", "completed", "olga", "kept"),
    ]
    await desk.take(second, "sold")
    stored = (await api.customer("cu-ana"))["history"]
    assert stored[1] == history[1]  # the cached line is the line Redis gives
    assert _brief(stored)[0] == ("voice", "completed", "olga", "sold")


async def test_customer_with_a_contact_under_way_is_resolved_in_redis(api: Api) -> None:
    """A contact that has not ended may change anywhere: the next contact asks Redis."""
    calls = _count_resolutions(api)
    await api.put_customer("cu-ana", **ANA)
    desk = await api.desk("olga", {"billing": 5}, {"voice": 2})
    await api.voice({"call_id": "CA1", "from": PHONE})
    first = await desk.next("offer")
    await desk.send({"type": "accept", "reservation_id": first["reservation_id"]})
    await desk.next("accepted")
    await api.voice({"call_id": "CA2", "from": PHONE})
    assert calls[0] == 1
    customer = await api.customer("cu-ana")
    assert _brief(customer["history"])[1] == ("voice", "assigned", "olga", None)


async def test_profile_change_is_seen_at_once(api: Api) -> None:
    """PUT /v1/customers replaces the cached profile: the next contact has the new segment."""
    await api.put_customer("cu-ana", **ANA)
    desk = await api.desk("olga", {"billing": 5}, {"voice": 1})
    await api.voice({"call_id": "CA1", "from": PHONE})
    await desk.take(await desk.next("offer"), "kept")
    await api.put_customer("cu-ana", 200, **{**ANA, "value": 15000.0})
    await api.voice({"call_id": "CA2", "from": PHONE})
    offer = await desk.next("offer")
    assert offer["customer"]["segment"] == "platinum"
    assert offer["customer"]["value"] == 15000.0


async def test_a_released_identity_is_no_longer_cached(api: Api) -> None:
    """A phone dropped from a profile resolves to a new customer, not the cached one."""
    await api.put_customer("cu-ana", **ANA)
    await api.put_customer("cu-ana", 200, **{**ANA, "phones": []})
    first = await api.voice({"call_id": "CA1", "from": PHONE})
    assert first["customer"]["id"] not in (None, "cu-ana")


@pytest.mark.redis
async def test_two_instances_keep_each_others_caches_right(
    aiohttp_client: AiohttpClient, redis_url: str, tenant: str
) -> None:
    """Contacts and profile changes made on one instance show on the other's next offer."""
    a, b, cache_a, _ = await _two_instances(aiohttp_client, redis_url, tenant)

    await a.put_customer("cu-ana", **ANA)
    desk = await a.desk("olga", {"billing": 5}, {"voice": 1})
    await a.voice({"call_id": "CA1", "from": PHONE})
    await desk.take(await desk.next("offer"), "kept")
    assert (tenant, "cu-ana") in cache_a.entries

    # a contact created on B drops A's entry; A's next offer lists it
    await b.voice({"call_id": "CB1", "from": PHONE})
    await desk.take(await desk.next("offer"), "done on b")
    await _until(lambda: (tenant, "cu-ana") not in cache_a.entries)
    await a.voice({"call_id": "CA2", "from": PHONE})
    offer = await desk.next("offer")
    assert _brief(offer["customer"]["history"]) == [
        ("voice", "queued", None, None),
        ("voice", "completed", "olga", "done on b"),
        ("voice", "completed", "olga", "kept"),
    ]
    await desk.take(offer, "third")

    # a profile written on B drops it again
    await a.voice({"call_id": "CA3", "from": PHONE})
    await desk.take(await desk.next("offer"), "fourth")
    assert (tenant, "cu-ana") in cache_a.entries
    await b.put_customer("cu-ana", 200, **{**ANA, "value": 15000.0})
    await _until(lambda: (tenant, "cu-ana") not in cache_a.entries)
    await a.voice({"call_id": "CA4", "from": PHONE})
    assert (await desk.next("offer"))["customer"]["segment"] == "platinum"
    await a.close()


@pytest.mark.redis
async def test_a_takeover_on_one_instance_drops_the_placeholder_on_the_other(
    aiohttp_client: AiohttpClient, redis_url: str, tenant: str
) -> None:
    """A CRM profile PUT on A that takes over the placeholder B made for a first-time caller
    drops B's cached placeholder: B's next call from the number is the CRM customer's, with
    the first call in its history."""
    a, b, _, cache_b = await _two_instances(aiohttp_client, redis_url, tenant)

    desk = await b.desk("olga", {"billing": 5}, {"voice": 1})
    first = await b.voice({"call_id": "CB1", "from": PHONE})
    placeholder = first["customer"]["id"]
    await desk.take(await desk.next("offer"), "kept")
    hit = cache_b.lookup(tenant, f"phone:{PHONE}")
    assert hit is not None
    assert hit.id == placeholder  # B would route the number from its cache

    await a.put_customer("cu-ana", **ANA)
    await _until(lambda: (tenant, placeholder) not in cache_b.entries)
    second = await b.voice({"call_id": "CB2", "from": PHONE})
    assert second["customer"]["id"] == "cu-ana"
    offer = await desk.next("offer")
    assert [h["contact_id"] for h in offer["customer"]["history"]] == [second["id"], first["id"]]
    assert offer["customer"]["history"][1]["agent_id"] == "olga"
    await a.close()
    await b.close()


# ------------------------------------------------------------------------------ unit


def _state(cid: str, status: str, agent: str | None = None, disp: str | None = None) -> Any:
    return ContactState(
        cid, {"id": cid, "created_at": "2026-01-01T00:00:00Z"}, status, "voice", "billing",
        agent, None, None, 0, disp,
    )  # fmt: skip


def _live(size: int = 10) -> CustomerCache:
    cache = CustomerCache(size, history_length=3)
    cache.live, cache.fill_after = True, 0.0
    return cache


def _fresh(cache: CustomerCache, cid: str = "cu1", ident: str = "phone:+1") -> Resolved:
    return Resolved(cid, {"value": 1.0}, None, [], ident, cache.begin())


def test_cache_serves_only_ended_histories() -> None:
    cache = _live()
    cache.created("t", _fresh(cache), _state("c1", "offered", "a1"), replay=False)
    assert cache.lookup("t", "phone:+1") is None  # c1 under way
    cache.contact_changed("t", _state("c1", "completed", "a1", "ok"))
    hit = cache.lookup("t", "phone:+1")
    assert hit is not None
    assert hit.cached
    assert hit.last_agent == "a1"
    assert [(h["contact_id"], h["status"], h["disposition"]) for h in hit.history] == [
        ("c1", "completed", "ok")
    ]
    for n in (2, 3, 4):  # the history keeps history_length lines, newest first
        found = cache.lookup("t", "phone:+1")
        assert found is not None
        cache.created("t", found, _state(f"c{n}", "queued"), replay=False)
        cache.contact_changed("t", _state(f"c{n}", "abandoned"))
    found = cache.lookup("t", "phone:+1")
    assert found is not None
    assert [h["contact_id"] for h in found.history] == ["c4", "c3", "c2"]


def test_concurrent_changes_drop_the_entry() -> None:
    cache = _live()
    cache.created("t", _fresh(cache), _state("c1", "completed"), replay=False)
    one, two = cache.lookup("t", "phone:+1"), cache.lookup("t", "phone:+1")
    assert one is not None
    assert two is not None
    cache.created("t", one, _state("c2", "completed"), replay=False)
    cache.created("t", two, _state("c3", "completed"), replay=False)  # raced with c2
    assert cache.lookup("t", "phone:+1") is None
    assert ("t", "cu1") not in cache.entries


def test_replays_failures_and_lost_subscription() -> None:
    cache = _live()
    cache.created("t", _fresh(cache), _state("c1", "completed"), replay=True)
    assert cache.lookup("t", "phone:+1") is None  # a replay adds nothing
    cache.created("t", _fresh(cache), _state("c1", "completed"), replay=False)
    assert cache.lookup("t", "phone:+1") is not None
    cache.disconnected()
    assert cache.lookup("t", "phone:+1") is None
    assert not cache.entries
    assert cache.begin() == -1  # nothing read meanwhile is kept


def test_notices_from_others_drop_entries_and_mark_sharing() -> None:
    cache = _live()
    cache.created("t", _fresh(cache), _state("c1", "completed"), replay=False)
    mine = b'{"k": "customer", "i": "%s", "t": "t", "cu": "cu1"}' % cache.instance.encode()
    cache.on_notice(mine)
    assert cache.lookup("t", "phone:+1") is not None  # its own notice
    assert not cache.shared
    cache.on_notice(b'{"k": "hello", "i": "other"}')
    assert cache.shared
    cache.on_notice(b'{"k": "customer", "i": "other", "t": "t", "cu": "cu1"}')
    assert cache.lookup("t", "phone:+1") is None


def test_an_entry_is_served_for_max_age_after_it_was_read() -> None:
    """What changes in Redis without a notice (an ended contact expiring after the retention
    period) is seen once the entry is older than max_age_seconds: it is dropped, and the next
    contact resolves in Redis; adding this instance's own contacts does not make it younger."""
    cache = _live()
    cache.created("t", _fresh(cache), _state("c1", "completed"), replay=False)
    found = cache.lookup("t", "phone:+1")
    assert found is not None
    cache.created("t", found, _state("c2", "completed"), replay=False)
    entry = cache.entries[("t", "cu1")]
    entry.read_at -= cache.max_age_seconds - 5.0
    assert cache.lookup("t", "phone:+1") is not None
    entry.read_at -= 10.0
    assert cache.lookup("t", "phone:+1") is None
    assert ("t", "cu1") not in cache.entries
    assert ("t", "phone:+1") not in cache.identities
    cache.created("t", _fresh(cache), _state("c3", "completed"), replay=False)  # read afresh
    assert cache.lookup("t", "phone:+1") is not None


def test_cache_is_bounded() -> None:
    cache = _live(size=3)
    for n in range(10):
        found = _fresh(cache, f"cu{n}", f"phone:+{n}")
        cache.created("t", found, _state(f"c{n}", "queued"), replay=False)
    assert len(cache.entries) == 3
    assert len(cache.identities) == 3
    assert len(cache.open) <= 12


async def test_hello_decides_sharing() -> None:
    cache = CustomerCache(10, 3)
    sent: list[bytes] = []

    async def alone(channel: str, data: bytes) -> int:
        sent.append(data)
        return 1

    await cache.connected(alone)
    assert cache.live
    assert not cache.shared
    assert cache.begin() >= 0
    assert sent

    async def crowded(channel: str, data: bytes) -> int:
        return 2

    other = CustomerCache(10, 3)
    await other.connected(crowded)
    assert other.shared
    assert other.begin() == -1
