"""What an ended contact keeps, and for how long: no callback number once it has ended (both
stores); in Redis, the retention period as an expiry on the contact and on its customer's
history list, which names every contact of the customer and is pruned when long.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from queues.contract import Store
from queues.customers import CustomerStore
from queues.errors import ContactNotAssigned, ContactNotWaiting
from queues.keys import Keys
from queues.memory import MemoryStore
from queues.redis_store import RedisStore
from tests.contract.conftest import T0, agent, contact, ready

NUMBER = "+15550100"
DAY = 86_400


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _fields(store: Store, tenant: str, cid: str) -> dict[str, Any]:
    """The contact's stored callback number and view (absent when not kept)."""
    if isinstance(store, MemoryStore):
        c = store.core(tenant).contacts[cid]
        out: dict[str, Any] = {"st": c.st}
        if c.cb:
            out["cb"] = c.cb
        if c.view is not None:
            out["view"] = c.view
        return out
    assert isinstance(store, RedisStore)
    raw = await store.client.hmget(Keys(tenant).contact(cid), "st", "cb", "view")
    names = ("st", "cb", "view")
    return {k: _text(v) for k, v in zip(names, raw, strict=True) if v is not None}


async def _callback_waiting(store: Store, tenant: str, cid: str, now: int) -> None:
    """Contact ``cid`` waits as a callback to NUMBER (no agent is available)."""
    await store.enqueue(tenant, contact(cid, customer="cu1", now=now), now)
    await store.request_callback(tenant, cid, NUMBER, now, now)
    assert (await _fields(store, tenant, cid))["cb"] == NUMBER


async def _taken(store: Store, tenant: str, cid: str, now: int) -> None:
    """The waiting callback ``cid`` is offered to a1 (made available) and accepted."""
    await ready(store, tenant, agent("a1"), now)
    rid = (await store.agent_status(tenant, "a1")).reservations[0]
    await store.accept(tenant, rid, "a1", now)


async def test_an_ended_contact_keeps_no_callback_number(store: Store, tenant: str) -> None:
    """The number a callback was to be made to goes with the view when the contact ends,
    however it ends: completed, completed after wrap-up, abandoned (waiting or offered),
    cancelled."""
    await store.upsert_agent(tenant, agent("a1"), T0)
    await _callback_waiting(store, tenant, "c1", T0)
    await _taken(store, tenant, "c1", T0 + 1)
    await store.complete(tenant, "c1", "a1", 0, "", T0 + 2)

    await store.set_agent_state(tenant, "a1", "away", T0 + 2)
    await _callback_waiting(store, tenant, "c2", T0 + 3)
    await store.set_agent_state(tenant, "a1", "available", T0 + 3)
    rid = (await store.agent_status(tenant, "a1")).reservations[0]
    await store.accept(tenant, rid, "a1", T0 + 4)
    await store.complete(tenant, "c2", "a1", 5_000, "", T0 + 5)
    assert (await _fields(store, tenant, "c2"))["cb"] == NUMBER  # wrapping: not ended yet
    assert (await store.fire_timer(tenant, "w|c2", T0 + 5_005)).value is True

    await store.set_agent_state(tenant, "a1", "away", T0 + 5_006)
    await _callback_waiting(store, tenant, "c3", T0 + 5_007)
    await store.abandon(tenant, "c3", T0 + 5_008)
    await _callback_waiting(store, tenant, "c4", T0 + 5_009)
    await store.abandon(tenant, "c4", T0 + 5_010, "cancelled")
    await _callback_waiting(store, tenant, "c5", T0 + 5_011)
    await store.set_agent_state(tenant, "a1", "available", T0 + 5_012)  # offered to a1
    assert (await _fields(store, tenant, "c5"))["st"] == "offered"
    await store.abandon(tenant, "c5", T0 + 5_013)

    ended = ["completed", "completed", "abandoned", "cancelled", "abandoned"]
    for i, status in enumerate(ended, 1):
        assert await _fields(store, tenant, f"c{i}") == {"st": status}, f"c{i}"


async def test_an_ended_contact_keeps_only_what_is_read_once_it_has_ended(
    redis_client: Redis, tenant: str
) -> None:
    """An ended contact (completed, after wrap-up, abandoned waiting or offered) keeps no
    workflow, current step or sort key in Redis: most of what it would keep for the retention
    period. Everything that may still meet it answers as before: its status, a replayed or late
    abandon, complete, callback, and the stale timers of its step and wrap-up."""
    keys = Keys(tenant)
    store = RedisStore(redis_client)
    await ready(store, tenant, agent("a1", capacity={"chat": 3}))
    for i in (1, 2, 3):
        await store.enqueue(tenant, contact(f"c{i}", channel="chat", customer="cu1"), T0 + i)
    await store.accept(tenant, "r1", "a1", T0 + 4)
    await store.accept(tenant, "r2", "a1", T0 + 4)
    await store.complete(tenant, "c1", "a1", 0, "done", T0 + 5)
    await store.complete(tenant, "c2", "a1", 1_000, "", T0 + 5)
    assert (await store.fire_timer(tenant, "w|c2", T0 + 1_005)).value is True
    await store.abandon(tenant, "c3", T0 + 1_006)  # while offered
    await store.set_agent_state(tenant, "a1", "away", T0 + 1_007)
    await store.enqueue(tenant, contact("c4", customer="cu1"), T0 + 1_008)
    await store.abandon(tenant, "c4", T0 + 1_009)  # while waiting

    ended = {"c1": "completed", "c2": "completed", "c3": "abandoned", "c4": "abandoned"}
    for cid, status in ended.items():
        kept = {_text(f) for f in await redis_client.hkeys(keys.contact(cid))}
        assert kept, cid
        assert kept.isdisjoint({"steps", "cur", "key", "view", "cb"}), (cid, sorted(kept))
        state = await store.contact_status(tenant, cid)
        assert (state.status, state.position) == (status, None), cid
        with pytest.raises(ContactNotAssigned):
            await store.complete(tenant, cid, "a1", 0, "", T0 + 2_000)
        with pytest.raises(ContactNotWaiting):
            await store.request_callback(tenant, cid, NUMBER, T0 + 2_000, T0 + 2_000)
        assert (await store.fire_timer(tenant, f"s|{cid}|0", T0 + 2_000)).value is False
        assert (await store.fire_timer(tenant, f"w|{cid}", T0 + 2_000)).value is False
    assert (await store.abandon(tenant, "c4", T0 + 2_001)).value.changed is False
    with pytest.raises(ContactNotWaiting):
        await store.abandon(tenant, "c1", T0 + 2_001)
    assert (await store.contact_status(tenant, "c1")).disposition == "done"


async def test_ended_contacts_and_their_history_expire_after_the_retention(
    redis_client: Redis, tenant: str
) -> None:
    """A contact that ended (completed, after wrap-up, abandoned) expires the retention period
    after it ended, and its customer's history list then too; live contacts, and everything
    with a retention of 0, are kept for good."""
    keys = Keys(tenant)
    hist = keys.customer_history("cu1")
    store = RedisStore(redis_client, 30)
    await ready(store, tenant, agent("a1", capacity={"chat": 3}))
    for i in (1, 2, 3):
        new = contact(f"c{i}", channel="chat", customer="cu1", now=T0 + i)
        await store.enqueue(tenant, new, T0 + i)
    await store.accept(tenant, "r1", "a1", T0 + 4)
    await store.accept(tenant, "r2", "a1", T0 + 4)
    assert [await redis_client.ttl(k) for k in (keys.contact("c1"), hist)] == [-1, -1]

    await store.complete(tenant, "c1", "a1", 0, "", T0 + 5)
    await store.complete(tenant, "c2", "a1", 1_000, "", T0 + 5)
    assert 30 * DAY - 10 <= await redis_client.ttl(keys.contact("c1")) <= 30 * DAY
    assert 30 * DAY - 10 <= await redis_client.ttl(hist) <= 30 * DAY
    assert await redis_client.ttl(keys.contact("c2")) == -1  # wrapping
    await redis_client.persist(hist)
    await store.fire_timer(tenant, "w|c2", T0 + 1_005)
    assert 30 * DAY - 10 <= await redis_client.ttl(keys.contact("c2")) <= 30 * DAY
    assert 30 * DAY - 10 <= await redis_client.ttl(hist) <= 30 * DAY
    await redis_client.persist(hist)
    await store.abandon(tenant, "c3", T0 + 1_006)
    assert 30 * DAY - 10 <= await redis_client.ttl(keys.contact("c3")) <= 30 * DAY
    assert 30 * DAY - 10 <= await redis_client.ttl(hist) <= 30 * DAY

    # a new contact lifts the list's expiry while it lives (else the list, and the erasure's
    # way to it, could expire under it), and sets it again when it ends
    await store.enqueue(tenant, contact("c6", customer="cu1"), T0 + 1_007)
    assert await redis_client.ttl(hist) == -1
    await store.abandon(tenant, "c6", T0 + 1_008)
    assert 30 * DAY - 10 <= await redis_client.ttl(hist) <= 30 * DAY

    forever = RedisStore(redis_client, 0)
    await forever.enqueue(tenant, contact("c4", channel="chat", customer="cu2"), T0 + 2_000)
    await forever.accept(tenant, "r4", "a1", T0 + 2_001)
    await forever.complete(tenant, "c4", "a1", 0, "", T0 + 2_002)
    await forever.enqueue(tenant, contact("c5", customer="cu2"), T0 + 2_003)
    await forever.abandon(tenant, "c5", T0 + 2_004)
    for key in (keys.contact("c4"), keys.contact("c5"), keys.customer_history("cu2")):
        assert await redis_client.ttl(key) == -1, key


async def test_a_long_history_loses_the_ids_of_expired_contacts(
    redis_client: Redis, tenant: str
) -> None:
    """When a contact of a customer whose list is longer than 256 ends, the ids at the list's
    old end whose contact has expired go (16 at most, a kept one staying in its place); while
    the oldest is still kept, nothing is looked at."""
    store = RedisStore(redis_client, 1)
    hist = Keys(tenant).customer_history("cu1")
    await store.enqueue(tenant, contact("c0", customer="cu1"), T0)
    # ids of contacts that expired: 290 newer than c0, 10 older
    await redis_client.rpush(hist, *[f"g{i}" for i in range(291, 301)])
    await redis_client.lpush(hist, *[f"g{i}" for i in range(290, 0, -1)])
    for i in (1, 2, 3):
        await store.enqueue(tenant, contact(f"c{i}", customer="cu1", now=T0 + i), T0 + i)
    assert await redis_client.llen(hist) == 304

    await store.abandon(tenant, "c1", T0 + 10)
    want = ["c3", "c2", "c1", *[f"g{i}" for i in range(1, 286)], "c0"]
    assert [_text(x) for x in await redis_client.lrange(hist, 0, -1)] == want
    await store.abandon(tenant, "c2", T0 + 11)  # the oldest, c0, is kept: nothing goes
    assert await redis_client.llen(hist) == len(want)


async def test_a_takeover_keeps_the_expiry_of_the_histories_it_merges(
    redis_client: Redis, tenant: str
) -> None:
    """The history a profile PUT merges from a placeholder's expires when the placeholder's
    would have (the longest of the lists merged), not never."""
    store = RedisStore(redis_client, 30)
    customers = CustomerStore(store)
    ident = "phone:+15550100"
    found = await customers.resolve(tenant, ident, "", ("cu0123456789abcdef", {"id": "x"}), 5)
    await store.enqueue(tenant, contact("c1", customer=found.id), T0)
    await store.abandon(tenant, "c1", T0 + 1)
    doc = {"id": "crm-ana", "phones": ["+15550100"], "emails": [], "chat_handles": []}
    assert (await customers.upsert(tenant, "crm-ana", doc, [ident])).merged == [found.id]
    hist = Keys(tenant).customer_history("crm-ana")
    assert await redis_client.lrange(hist, 0, -1) == [b"c1"]
    assert 30 * DAY - 10 <= await redis_client.ttl(hist) <= 30 * DAY
