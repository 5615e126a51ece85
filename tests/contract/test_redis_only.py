"""What only ``RedisStore`` has: scripts that survive SCRIPT FLUSH, events on pub/sub, hash-tagged
keys, shared state across stateless instances, and StoreUnavailable when Redis is gone.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from hashlib import sha1
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from queues.customers import CustomerStore
from queues.embedded import EmbeddedRedis
from queues.errors import ReservationNotPending, StoreUnavailable
from queues.keys import Keys, tenant_prefix
from queues.redis_store import RedisStore
from queues.scripts import sources
from tests.contract.conftest import OFFER_MS, T0, agent, contact, offers, ready


async def all_keys(client: Redis) -> set[bytes]:
    """Every key on the server."""
    return {k async for k in client.scan_iter(match="*", count=1_000)}


async def test_scripts_load_up_front(redis_client: Redis) -> None:
    """``load_scripts`` (the app's startup) loads every script, so no first call pays NOSCRIPT."""
    await redis_client.script_flush()
    store = RedisStore(redis_client)
    shas = [sha1(src.encode()).hexdigest() for src in sources().values()]
    assert not any(await redis_client.script_exists(*shas))
    assert await store.load_scripts() == len(shas)
    assert all(await redis_client.script_exists(*shas))


async def test_scripts_survive_script_flush(redis_client: Redis, tenant: str) -> None:
    """After SCRIPT FLUSH (or a failover) every script is reloaded on its next call."""
    store = RedisStore(redis_client)
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    used = ["upsert_agent", "set_agent_state", "enqueue_contact"]
    shas = [sha1(sources()[name].encode()).hexdigest() for name in used]
    assert await redis_client.script_exists(*shas) == [True, True, True]
    await redis_client.script_flush()
    assert await redis_client.script_exists(*shas) == [False, False, False]
    accepted = await store.accept(tenant, "r1", "a1", T0 + 1)
    assert accepted.value.contact.status == "assigned"
    out = await store.enqueue(tenant, contact("c2", now=T0 + 2), T0 + 2)
    assert (out.value.contact.status, out.value.contact.position) == ("queued", 1)
    assert (await store.agent_status(tenant, "a1")).load == {"voice": 1}
    assert await redis_client.script_exists(*shas) == [False, False, True]


async def test_a_fresh_store_instance_reloads_after_flush(redis_client: Redis, tenant: str) -> None:
    """A store created before a flush and one created after both keep working."""
    before = RedisStore(redis_client)
    await before.upsert_agent(tenant, agent("a1"), T0)
    await redis_client.script_flush()
    after = RedisStore(redis_client)
    assert (await after.agent_status(tenant, "a1")).state == "offline"
    assert (await before.set_agent_state(tenant, "a1", "away", T0 + 1)).value[1] is True


async def next_message(pubsub: PubSub) -> dict[str, Any]:
    """The next published message (not a subscription notice), waiting up to two seconds."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if got is not None:
            message: dict[str, Any] = got
            return message
    raise AssertionError("no message published")


async def test_events_are_published_on_the_tenant_channel(redis_client: Redis, tenant: str) -> None:
    """Each transition's events, and the offered contacts' views, go out as one JSON message."""
    store = RedisStore(redis_client)
    await ready(store, tenant, agent("a1"))
    channel = Keys(tenant).events()
    assert channel == f"sb:{{{tenant}}}:ev"
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(channel)
    try:
        confirm = await pubsub.get_message(timeout=1.0)
        assert confirm is not None
        assert confirm["type"] == "subscribe"
        out = await store.enqueue(tenant, contact("c1"), T0 + 5)
        message = await next_message(pubsub)
    finally:
        await pubsub.unsubscribe(channel)
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert message["channel"] == channel.encode()
    body = json.loads(message["data"])
    assert body["ev"] == out.events
    assert body["ev"] == [
        {"t": "offer", "a": "a1", "r": "r1", "c": "c1", "x": T0 + 5 + OFFER_MS, "q": "q1"}
    ]
    assert body["views"] == {"c1": {"contact": "c1"}}


async def test_read_only_calls_publish_nothing(redis_client: Redis, tenant: str) -> None:
    """Transitions without events, and every read, publish no message."""
    store = RedisStore(redis_client)
    await store.upsert_agent(tenant, agent("a1"), T0)
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(Keys(tenant).events())
    try:
        await pubsub.get_message(timeout=1.0)
        await store.enqueue(tenant, contact("c1"), T0)
        await store.contact_status(tenant, "c1")
        await store.agent_status(tenant, "a1")
        await store.queue_snapshot(tenant, ["q1"], T0)
        await store.claim_timers(tenant, T0, 10, 1_000)
        got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert got is None


async def test_every_key_carries_the_tenant_hash_tag(redis_client: Redis, tenant: str) -> None:
    """Every key a tenant's transitions create is under sb:{tenant}: and in one cluster slot."""
    store = RedisStore(redis_client)
    before = await all_keys(redis_client)
    await ready(store, tenant, agent("a1", ["q1", "q2"]))
    await ready(store, tenant, agent("a2", ["q2"], strategy="least_busy"))
    await store.enqueue(tenant, contact("c1", idempotency=("k1", "h1"), customer="u1"), T0)
    await store.enqueue(tenant, contact("c2", ["q2"], channel="chat"), T0 + 1)
    await store.enqueue(tenant, contact("c3", now=T0 + 2), T0 + 2)
    await store.reject(tenant, "r1", "a1", T0 + 3)
    await store.request_callback(tenant, "c1", "", T0 + 50_000, T0 + 4)
    await store.accept(tenant, "r3", None, T0 + 5)
    await store.complete(tenant, "c3", None, 1_000, "", T0 + 6)
    created = await all_keys(redis_client) - before
    prefix = tenant_prefix(tenant).encode()
    assert len(created) >= 20
    assert [k for k in created if not k.startswith(prefix)] == []
    assert {key_slot(k) for k in created} == {key_slot(prefix + b"x")}


async def test_stateless_instances_share_one_state(
    redis_client: Redis, redis_server: EmbeddedRedis, tenant: str
) -> None:
    """Two stores on two connections act on the same contacts (router processes are stateless):
    an accept repeated on both at once answers both as the first did."""
    other_client = Redis(unix_socket_path=str(redis_server.socket_path))
    try:
        one, two = RedisStore(redis_client), RedisStore(other_client)
        await ready(one, tenant, agent("a1"))
        await two.enqueue(tenant, contact("c1"), T0)
        first = await one.accept(tenant, "r1", "a1", T0 + 1)
        assert first.value.contact.status == "assigned"
        assert (await two.contact_status(tenant, "c1")).agent_id == "a1"
        results = await asyncio.gather(
            one.accept(tenant, "r1", "a1", T0 + 2),
            two.accept(tenant, "r1", "a1", T0 + 2),
        )
        again = replace(first.value, replay=True)
        assert [(r.value, r.events) for r in results] == [(again, [])] * 2
    finally:
        await other_client.aclose()


async def test_concurrent_enqueues_never_double_book(redis_client: Redis, tenant: str) -> None:
    """Many enqueues racing for one free agent reserve it exactly once."""
    store = RedisStore(redis_client)
    await ready(store, tenant, agent("a1", capacity={"voice": 1}))
    outs = await asyncio.gather(
        *(store.enqueue(tenant, contact(f"c{i}"), T0 + i) for i in range(20))
    )
    assert sum(len(offers(o.events)) for o in outs) == 1
    assert (await store.agent_status(tenant, "a1")).load == {"voice": 1}


async def test_customer_history_lists_every_contact(redis_client: Redis, tenant: str) -> None:
    """A customer's history shows their newest ``history_length`` contacts, newest first; the
    list behind it names every contact of the customer (erasure reads it), never trimmed."""
    store = RedisStore(redis_client)
    customers = CustomerStore(store)
    key = Keys(tenant).customer_history("cu1")
    for i in range(1, 41):
        new = contact(f"c{i}", customer="cu1", now=T0 + i)
        new.doc = json.dumps({"id": f"c{i}", "channel": "voice", "created_at": f"t{i}"})
        await store.enqueue(tenant, new, T0 + i)
        _, history = await customers.history(tenant, "cu1", 5)
        assert [h.contact_id for h in history] == [f"c{j}" for j in range(i, max(i - 5, 0), -1)]
    assert await redis_client.lrange(key, 0, -1) == [f"c{j}".encode() for j in range(40, 0, -1)]


async def test_ended_reservations_expire(redis_client: Redis, tenant: str) -> None:
    """A reservation's hash is kept while its offer is pending, then for a day once the offer
    has ended however it ended (accepted, rejected, timed out, rescinded), where it still
    answers a late accept; before this, every offer's hash stayed for good."""
    store = RedisStore(redis_client)
    keys = Keys(tenant)
    await ready(store, tenant, agent("a1"))
    await ready(store, tenant, agent("a2"))
    for i in range(1, 5):
        await store.enqueue(tenant, contact(f"c{i}", now=T0 + i), T0 + i)

    async def ttl(rid: str) -> int:
        return int(await redis_client.ttl(keys.reservation(rid)))

    assert [await ttl(rid) for rid in ("r1", "r2")] == [-1, -1]  # pending: kept
    await store.accept(tenant, "r1", "a1", T0 + 10)
    await store.reject(tenant, "r2", "a2", T0 + 11)  # c3 goes to a2 as r3
    await store.abandon(tenant, "c3", T0 + 12)  # rescinds r3; c4 goes to a2 as r4
    assert (await store.fire_timer(tenant, "o|r4", T0 + 12 + OFFER_MS)).value is True
    for rid in ("r1", "r2", "r3", "r4"):
        assert 86_390 <= await ttl(rid) <= 86_400, rid
    with pytest.raises(ReservationNotPending):
        await store.accept(tenant, "r2", "a2", T0 + 20)


async def test_upgrade_layout_counts_staffing_from_the_agents_once(
    redis_client: Redis, tenant: str
) -> None:
    """Data of layout 0 (each queue's staffing one counter q:<queue>:staffed and per-channel
    counts q:<queue>:on, q:<queue>:chans missing on older data) is recounted from the agents
    into layout 1 by ``upgrade_layout``: the same staffing, lines and callbacks as data written
    by these scripts, the old keys gone; a second run changes nothing."""
    store = RedisStore(redis_client)
    keys = Keys(tenant)
    await store.upsert_agent(tenant, agent("a1", ["q1", "q2"], capacity={"voice": 1}), T0)
    await store.upsert_agent(tenant, agent("a2", capacity={"chat": 3}), T0)
    await store.upsert_agent(tenant, agent("a3", capacity={"voice": 1, "chat": 2}), T0)
    await store.upsert_agent(tenant, agent("a4", capacity={"voice": 1}), T0)  # offline
    for aid in ("a1", "a2", "a3"):
        await store.set_agent_state(tenant, aid, "away", T0)
    await store.enqueue(tenant, contact("c1", now=T0 + 1), T0 + 1)
    await store.enqueue(tenant, contact("c2", channel="chat", now=T0 + 2), T0 + 2)
    away = 2**32
    assert await redis_client.hgetall(keys.queue_staffing("q1")) == {
        b'{"voice":1}': str(away).encode(),
        b'{"chat":3}': str(away).encode(),
        b'{"voice":1,"chat":2}': str(away).encode(),
    }

    async def seen() -> tuple[Any, ...]:
        c1, c2 = [await store.contact_status(tenant, c) for c in ("c1", "c2")]
        snaps = await store.queue_snapshot(tenant, ["q1", "q2"], T0 + 3)
        return (
            (c1.staffed, c1.lines),
            (c2.staffed, c2.lines),
            [(s.staffed, s.available, s.places) for s in snaps],
            await redis_client.hgetall(keys.queue_channels("q1")),
        )

    written = await seen()
    assert written[:3] == ((2, [("q1", 1, 2)]), (2, [("q1", 1, 5)]), [(3, 0, 6), (1, 0, 1)])
    assert await store.upgrade_layout(tenant) == (0, 1, 4)  # none recorded yet: counted
    assert await seen() == written
    # the same agents as layout 0 kept them (q:<queue>:chans absent, as on the oldest data)
    await redis_client.delete(
        keys.queue_staffing("q1"),
        keys.queue_staffing("q2"),
        keys.queue_channels("q1"),
        keys.layout(),
    )
    await redis_client.set(keys.queue_staffed("q1"), 3 * away)
    await redis_client.set(keys.queue_staffed("q2"), away)
    await redis_client.hset(keys.queue_signed_in("q1"), mapping={"voice": 2, "chat": 2})
    assert (await store.contact_status(tenant, "c1")).lines == [("q1", 1, 0)]
    assert await store.upgrade_layout(tenant) == (0, 1, 4)
    assert await seen() == written
    assert await redis_client.exists(keys.queue_staffed("q1"), keys.queue_signed_in("q1")) == 0
    assert await redis_client.get(keys.layout()) == b"1"
    before = {k: await redis_client.dump(k) for k in await all_keys(redis_client)}
    assert await store.upgrade_layout(tenant) == (1, 1, 0)
    assert {k: await redis_client.dump(k) for k in await all_keys(redis_client)} == before
    # and the counts go on from there
    await store.set_agent_state(tenant, "a4", "available", T0 + 4)
    c1 = await store.contact_status(tenant, "c1")
    assert (c1.status, c1.agent_id) == ("offered", "a4")
    await store.set_agent_state(tenant, "a2", "offline", T0 + 5)
    assert (await store.contact_status(tenant, "c2")).lines == [("q1", 1, 2)]


async def test_unreachable_server_raises_store_unavailable(tmp_path: Path, tenant: str) -> None:
    """Every call on a Redis that cannot be reached raises StoreUnavailable, not a redis error."""
    # No retries: the default policy backs off for seconds before giving up.
    client = Redis(unix_socket_path=str(tmp_path / "missing.sock"), retry=Retry(NoBackoff(), 0))
    store = RedisStore(client)
    try:
        with pytest.raises(StoreUnavailable) as err:
            await store.enqueue(tenant, contact("c1"), T0)
        assert "redis unavailable" in str(err.value)
        with pytest.raises(StoreUnavailable):
            await store.contact_status(tenant, "c1")
    finally:
        await client.aclose()
