"""Store contract, reads: queue snapshots, statuses, not-found errors and tenant isolation.

Every test runs on both stores (see ``conftest.store``). The transitions themselves are pinned
in ``test_agents``, ``test_reservations`` and ``test_timers``.
"""

from __future__ import annotations

import pytest

from queues.contract import QueueSnapshot, Step, Store
from queues.errors import AgentNotFound, ContactNotFound, NotFound
from tests.contract.conftest import T0, agent, contact, offers, ready


async def test_queue_snapshot_counts_waiting_staffing_and_stats(store: Store, tenant: str) -> None:
    """A snapshot reports depth, oldest enqueue time, staffing and today's counters."""
    await ready(store, tenant, agent("a1"))
    await ready(store, tenant, agent("a2"))
    await store.set_agent_state(tenant, "a2", "away", T0)
    await store.upsert_agent(tenant, agent("a3"), T0)
    await store.enqueue(tenant, contact("c1", now=T0 + 1_000), T0 + 1_000)
    await store.enqueue(tenant, contact("c2", channel="chat", now=T0 + 2_000), T0 + 2_000)
    await store.enqueue(tenant, contact("c3", channel="chat", now=T0 + 3_000), T0 + 3_000)
    q1, q9 = await store.queue_snapshot(tenant, ["q1", "q9"], T0 + 5_000)
    # (places: two agents staffed, each taking at most 3 on one channel)
    assert q1 == QueueSnapshot("q1", 2, T0 + 2_000, 2, 1, {"offered": 3}, free=0, places=6)
    assert q9 == QueueSnapshot("q9", 0, None, 0, 0, {})
    await store.accept(tenant, "r1", "a1", T0 + 6_000)
    await store.complete(tenant, "c1", "a1", 0, "sold", T0 + 16_000)
    (q1,) = await store.queue_snapshot(tenant, ["q1"], T0 + 16_000)
    assert (q1.waiting, q1.oldest_enqueued_ms) == (0, None)
    assert q1.stats == {
        "offered": 3,
        "answered": 1,
        "answered_sl": 1,
        "wait_ms": 5_000,
        "handled": 1,
        "handle_ms": 10_000,
    }


async def test_queue_snapshot_counts_agents_with_free_capacity(store: Store, tenant: str) -> None:
    """`free` is the most agents with free capacity on one channel: an available agent busy
    to its capacity is available but not free."""
    await ready(store, tenant, agent("a1", capacity={"voice": 1, "chat": 2}))
    await ready(store, tenant, agent("a2", capacity={"chat": 1}))
    (q1,) = await store.queue_snapshot(tenant, ["q1"], T0)
    assert (q1.available, q1.free) == (2, 2)  # both free for chat
    await store.enqueue(tenant, contact("c1", now=T0 + 1), T0 + 1)  # voice: a1 is taken whole
    (q1,) = await store.queue_snapshot(tenant, ["q1"], T0 + 1)
    assert (q1.available, q1.free) == (2, 1)
    await store.enqueue(tenant, contact("c2", channel="chat", now=T0 + 2), T0 + 2)
    (q1,) = await store.queue_snapshot(tenant, ["q1"], T0 + 2)
    assert (q1.available, q1.waiting, q1.free) == (2, 0, 0)


async def test_a_queue_staffs_nobody_for_a_channel_its_members_cannot_take(
    store: Store, tenant: str
) -> None:
    """A waiting contact's `staffed` counts only queues with a member who has capacity on its
    channel (so a chat in a voice-only team gets no estimate), and follows capacity changes."""
    await store.upsert_agent(tenant, agent("a1", capacity={"voice": 1}), T0)
    await store.set_agent_state(tenant, "a1", "away", T0)  # staffed, takes nothing
    await store.enqueue(tenant, contact("c1", channel="chat", now=T0 + 1), T0 + 1)
    await store.enqueue(tenant, contact("c2", now=T0 + 2), T0 + 2)
    c1, c2 = [await store.contact_status(tenant, c) for c in ("c1", "c2")]
    assert (c1.staffed, c2.staffed) == (0, 1)
    await store.upsert_agent(tenant, agent("a1", capacity={"voice": 1, "chat": 2}), T0 + 3)
    assert (await store.contact_status(tenant, "c1")).staffed == 1
    await store.upsert_agent(tenant, agent("a1", ["q2"], capacity={"chat": 2}), T0 + 4)
    c1, c2 = [await store.contact_status(tenant, c) for c in ("c1", "c2")]
    assert (c1.staffed, c2.staffed) == (0, 0)  # a1 left q1


async def test_a_blended_queue_staffs_a_contact_with_its_signed_in_members_of_that_channel(
    store: Store, tenant: str
) -> None:
    """In a queue of voice and chat agents, a call counts only the voice agents signed in: with
    the voice agent offline and a chat agent available nobody is staffed for it (no estimate),
    and it follows sign-ins, sign-outs and capacity changes."""
    await ready(store, tenant, agent("chat1", capacity={"chat": 2}))
    await store.upsert_agent(tenant, agent("voice1", capacity={"voice": 1}), T0)
    await store.enqueue(tenant, contact("c1", now=T0 + 1), T0 + 1)
    assert (await store.contact_status(tenant, "c1")).staffed == 0
    await store.set_agent_state(tenant, "voice1", "away", T0 + 2)
    assert (await store.contact_status(tenant, "c1")).staffed == 1
    await store.set_agent_state(tenant, "voice1", "offline", T0 + 3)
    assert (await store.contact_status(tenant, "c1")).staffed == 0
    # the chat agent gains voice capacity while its state stays; then loses it again
    await store.set_agent_state(tenant, "chat1", "away", T0 + 4)
    await store.upsert_agent(tenant, agent("chat1", capacity={"voice": 1, "chat": 2}), T0 + 5)
    assert (await store.contact_status(tenant, "c1")).staffed == 1
    await store.upsert_agent(tenant, agent("chat1", capacity={"chat": 2}), T0 + 6)
    assert (await store.contact_status(tenant, "c1")).staffed == 0


async def test_a_line_counts_the_capacity_staffed_on_the_contacts_channel(
    store: Store, tenant: str
) -> None:
    """A waiting contact's line carries how many contacts of its channel the agents signed in
    there can hold at once (a chat agent of capacity 3 counts 3, a named agent its own
    capacity), which is what its estimated wait divides by; ``staffed`` stays a count of
    agents."""
    await store.upsert_agent(tenant, agent("a1", capacity={"chat": 3}), T0)
    await store.upsert_agent(tenant, agent("a2", capacity={"chat": 2, "voice": 1}), T0)
    await store.upsert_agent(tenant, agent("a3", capacity={"voice": 1}), T0)
    for aid in ("a1", "a2", "a3"):
        await store.set_agent_state(tenant, aid, "away", T0)
    await store.enqueue(tenant, contact("c1", channel="chat", now=T0 + 1), T0 + 1)
    await store.enqueue(tenant, contact("c2", now=T0 + 2), T0 + 2)
    named = [Step(queues=("q1",), agents=("a1",), timeout_ms=60_000)]
    await store.enqueue(tenant, contact("c3", channel="chat", steps=named, now=T0 + 3), T0 + 3)
    c1, c2, c3 = [await store.contact_status(tenant, c) for c in ("c1", "c2", "c3")]
    assert (c1.staffed, c1.lines) == (2, [("q1", 1, 5)])
    assert (c2.staffed, c2.lines) == (2, [("q1", 1, 2)])
    assert (c3.staffed, c3.lines) == (3, [("q1", 2, 5), ("", 1, 3)])
    await store.set_agent_state(tenant, "a1", "offline", T0 + 4)
    await store.upsert_agent(tenant, agent("a2", capacity={"chat": 4, "voice": 1}), T0 + 5)
    c1, c2, c3 = [await store.contact_status(tenant, c) for c in ("c1", "c2", "c3")]
    assert (c1.staffed, c1.lines) == (1, [("q1", 1, 4)])
    assert (c2.lines, c3.lines) == ([("q1", 1, 2)], [("q1", 2, 4), ("", 1, 0)])


async def test_stats_are_per_day(store: Store, tenant: str) -> None:
    """Counters restart at midnight UTC: yesterday's contacts are not in today's snapshot."""
    day = 86_400_000
    midnight = (T0 // day + 1) * day
    await store.enqueue(tenant, contact("c1", now=midnight - 1), midnight - 1)
    await store.enqueue(tenant, contact("c2", now=midnight), midnight)
    (before,) = await store.queue_snapshot(tenant, ["q1"], midnight - 1)
    (after,) = await store.queue_snapshot(tenant, ["q1"], midnight)
    assert (before.stats, after.stats) == ({"offered": 1}, {"offered": 1})
    assert after.waiting == 2


async def test_contact_status_reports_position_and_staffing(store: Store, tenant: str) -> None:
    """A queued contact reports its position in line and how many agents staff its queue."""
    await ready(store, tenant, agent("a1", capacity={"voice": 1}))
    await store.upsert_agent(tenant, agent("a2"), T0)
    await store.set_agent_state(tenant, "a2", "away", T0)
    for i in (1, 2, 3):
        await store.enqueue(tenant, contact(f"c{i}", now=T0 + i), T0 + i)
    statuses = [await store.contact_status(tenant, f"c{i}") for i in (1, 2, 3)]
    assert [(s.status, s.position, s.staffed, s.agent_id) for s in statuses] == [
        ("offered", None, 0, "a1"),
        ("queued", 1, 2, None),
        ("queued", 2, 2, None),
    ]
    await store.abandon(tenant, "c2", T0 + 10)
    assert (await store.contact_status(tenant, "c3")).position == 1


async def test_position_is_per_capacity_channel(store: Store, tenant: str) -> None:
    """Positions count the contacts of the same channel ahead in the first queue."""
    await store.enqueue(tenant, contact("c1", now=T0), T0)
    await store.enqueue(tenant, contact("c2", channel="chat", now=T0 + 1), T0 + 1)
    await store.enqueue(tenant, contact("c3", now=T0 + 2), T0 + 2)
    got = [(await store.contact_status(tenant, c)).position for c in ("c1", "c2", "c3")]
    assert got == [1, 1, 2]


async def test_unknown_contact_is_not_found(store: Store, tenant: str) -> None:
    """Reading, abandoning, completing or calling back an unknown contact raises NotFound."""
    with pytest.raises(ContactNotFound) as err:
        await store.contact_status(tenant, "nobody")
    assert isinstance(err.value, NotFound)
    assert err.value.ids == {"contact": "nobody"}
    with pytest.raises(ContactNotFound):
        await store.complete(tenant, "nobody", None, 0, "", T0)
    with pytest.raises(ContactNotFound):
        await store.request_callback(tenant, "nobody", "", T0, T0)


async def test_tenants_are_isolated(store: Store, tenant: str) -> None:
    """Agents, contacts, reservations and counters of one tenant are invisible to another."""
    other = f"{tenant}-b"
    await ready(store, tenant, agent("a1"))
    out = await store.enqueue(tenant, contact("c1"), T0 + 1)
    assert offers(out.events) == [("a1", "c1", "q1")]
    theirs = await store.enqueue(other, contact("c1"), T0 + 2)
    assert (theirs.value.contact.status, theirs.events) == ("queued", [])
    assert await store.list_agents(other) == []
    with pytest.raises(AgentNotFound):
        await store.agent_status(other, "a1")
    assert [s.waiting for s in await store.queue_snapshot(other, ["q1"], T0 + 3)] == [1]
    assert [s.waiting for s in await store.queue_snapshot(tenant, ["q1"], T0 + 3)] == [0]
    await ready(store, other, agent("a1"), T0 + 4)
    mine = await store.agent_status(tenant, "a1")
    assert (mine.reservations, (await store.agent_status(other, "a1")).reservations) == (
        ["r1"],
        ["r1"],
    )
    assert (await store.contact_status(other, "c1")).agent_id == "a1"
