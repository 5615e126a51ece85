"""Store contract, agent side: profiles, states, selection strategies and per-channel capacity.

Every test runs on both stores (see ``conftest.store``).
"""

from __future__ import annotations

import pytest

from queues.contract import Store
from queues.errors import AgentNotFound, NotFound
from tests.contract.conftest import DEFAULT_CAPACITY, T0, agent, contact, kinds, offers, ready


async def test_new_agent_is_offline(store: Store, tenant: str) -> None:
    """A new agent is created offline, idle, with its capacity and queues as given."""
    out = await store.upsert_agent(tenant, agent("a1", ["q1", "q2"]), T0)
    state, created = out.value
    assert created is True
    assert (state.id, state.state, state.doc) == ("a1", "offline", {"name": "A1"})
    assert (state.capacity, state.load) == (DEFAULT_CAPACITY, {})
    assert (state.queues, state.reservations) == (["q1", "q2"], [])
    assert out.events == []
    snap = (await store.queue_snapshot(tenant, ["q1"], T0))[0]
    assert (snap.staffed, snap.available) == (0, 0)


async def test_update_keeps_state_and_replaces_profile(store: Store, tenant: str) -> None:
    """Upserting an existing agent keeps its state and replaces capacity and document."""
    await ready(store, tenant, agent("a1"))
    spec = agent("a1", capacity={"chat": 5})
    spec.doc = '{"name":"Ana"}'
    state, created = (await store.upsert_agent(tenant, spec, T0 + 10)).value
    assert created is False
    assert (state.state, state.capacity, state.doc) == ("available", {"chat": 5}, {"name": "Ana"})
    assert (await store.agent_status(tenant, "a1")).capacity == {"chat": 5}


async def test_membership_change_moves_agent_between_queues(store: Store, tenant: str) -> None:
    """Dropping q1 and joining q2 moves the agent's staffing and the contacts it is offered."""
    await ready(store, tenant, agent("a1", ["q1"]))
    await store.enqueue(tenant, contact("c1", ["q2"]), T0 + 1)
    out = await store.upsert_agent(tenant, agent("a1", ["q2"]), T0 + 2)
    assert out.value[0].queues == ["q2"]
    assert offers(out.events) == [("a1", "c1", "q2")]
    q1, q2 = await store.queue_snapshot(tenant, ["q1", "q2"], T0 + 3)
    assert (q1.staffed, q1.available, q2.staffed, q2.available) == (0, 0, 1, 1)
    after = await store.enqueue(tenant, contact("c2", ["q1"], channel="chat"), T0 + 4)
    assert (after.value.contact.status, after.events) == ("queued", [])


async def test_available_takes_best_waiting_contact_across_queues(
    store: Store, tenant: str
) -> None:
    """Going available offers at once the lowest sort key among all the agent's queues."""
    await store.upsert_agent(tenant, agent("a1", ["q1", "q2"]), T0)
    await store.enqueue(tenant, contact("c1", ["q1"]), T0 + 1_000)
    await store.enqueue(tenant, contact("c2", ["q2"], priority_ms=5_000), T0 + 2_000)
    out = await store.set_agent_state(tenant, "a1", "available", T0 + 3_000)
    assert out.value[1] is True
    assert kinds(out.events) == ["offer", "state"]  # the state after the offers: their load
    assert out.events[1] == {"t": "state", "a": "a1", "s": "available", "l": {"voice": 1}}
    assert offers(out.events) == [("a1", "c2", "q2")]
    assert (await store.contact_status(tenant, "c1")).status == "queued"


async def test_same_state_is_no_change(store: Store, tenant: str) -> None:
    """Setting the state an agent already has changes nothing and emits nothing."""
    await ready(store, tenant, agent("a1"))
    out = await store.set_agent_state(tenant, "a1", "available", T0 + 5)
    assert (out.value[0].state, out.value[1], out.events) == ("available", False, [])


async def test_away_and_offline_update_staffing(store: Store, tenant: str) -> None:
    """Away agents are staffed but not available; offline agents are neither."""
    await ready(store, tenant, agent("a1"))
    await ready(store, tenant, agent("a2"))
    await store.set_agent_state(tenant, "a2", "away", T0 + 1)
    assert [(s.staffed, s.available) for s in await store.queue_snapshot(tenant, ["q1"], T0)] == [
        (2, 1)
    ]
    await store.set_agent_state(tenant, "a2", "offline", T0 + 2)
    assert [(s.staffed, s.available) for s in await store.queue_snapshot(tenant, ["q1"], T0)] == [
        (1, 1)
    ]


async def test_away_agent_is_not_offered(store: Store, tenant: str) -> None:
    """A contact waits rather than go to an agent who is away."""
    await store.upsert_agent(tenant, agent("a1"), T0)
    await store.set_agent_state(tenant, "a1", "away", T0)
    out = await store.enqueue(tenant, contact("c1"), T0 + 1)
    assert (out.value.contact.status, out.value.contact.position, out.events) == ("queued", 1, [])


async def test_going_offline_rescinds_offers(store: Store, tenant: str) -> None:
    """Offline withdraws pending offers; the contacts go back and find another agent."""
    await ready(store, tenant, agent("a1", capacity={"chat": 2}))
    await store.enqueue(tenant, contact("c1", channel="chat"), T0 + 1)
    await store.enqueue(tenant, contact("c2", channel="chat"), T0 + 2)
    await ready(store, tenant, agent("a2", capacity={"chat": 1}), T0 + 3)
    out = await store.set_agent_state(tenant, "a1", "offline", T0 + 4)
    assert [(e["t"], e.get("r"), e.get("why")) for e in out.events if e["t"] == "rescind"] == [
        ("rescind", "r1", "agent_offline"),
        ("rescind", "r2", "agent_offline"),
    ]
    assert offers(out.events) == [("a2", "c1", "q1")]
    assert (await store.agent_status(tenant, "a1")).load == {}
    c2 = await store.contact_status(tenant, "c2")
    assert (c2.status, c2.position, c2.agent_id) == ("queued", 1, None)


async def test_offline_requeues_best_contact_first(store: Store, tenant: str) -> None:
    """Contacts rescinded together go back best first, so a free agent gets the best of them."""
    await ready(store, tenant, agent("a1", capacity={"chat": 2}))
    await store.enqueue(tenant, contact("c1", channel="chat", now=T0 + 1), T0 + 1)
    later = contact("c2", channel="chat", now=T0 + 2, priority_ms=10_000)
    await store.enqueue(tenant, later, T0 + 2)
    await ready(store, tenant, agent("a2", capacity={"chat": 1}), T0 + 3)
    out = await store.set_agent_state(tenant, "a1", "offline", T0 + 4)
    assert offers(out.events) == [("a2", "c2", "q1")]
    assert (await store.contact_status(tenant, "c1")).position == 1


async def test_longest_idle_picks_agent_idle_longest(store: Store, tenant: str) -> None:
    """longest_idle offers to the agent available the longest, whatever its id."""
    await ready(store, tenant, agent("a2"), T0)
    await ready(store, tenant, agent("a1"), T0 + 1_000)
    await ready(store, tenant, agent("a3"), T0 + 2_000)
    got = []
    for i in range(3):
        got += offers((await store.enqueue(tenant, contact(f"c{i}"), T0 + 5_000 + i)).events)
    assert [a for a, _, _ in got] == ["a2", "a1", "a3"]


async def test_most_skilled_picks_highest_level(store: Store, tenant: str) -> None:
    """most_skilled offers to the highest skill level for the queue, idle time breaking ties."""
    for aid, level, at in [("a1", 3.0, T0), ("a2", 8.0, T0 + 2_000), ("a3", 8.0, T0 + 1_000)]:
        await ready(store, tenant, agent(aid, strategy="most_skilled", level=level), at)
    got = []
    for i in range(3):
        got += offers((await store.enqueue(tenant, contact(f"c{i}"), T0 + 5_000 + i)).events)
    assert [a for a, _, _ in got] == ["a3", "a2", "a1"]


async def test_least_busy_picks_lowest_load_ratio(store: Store, tenant: str) -> None:
    """least_busy offers to the lowest share of capacity in use, idle time breaking ties."""
    await ready(store, tenant, agent("a1", capacity={"chat": 4}, strategy="least_busy"), T0)
    await ready(store, tenant, agent("a2", capacity={"chat": 2}, strategy="least_busy"), T0 + 1)
    got = []
    for i in range(6):
        c = contact(f"c{i}", channel="chat")
        got += offers((await store.enqueue(tenant, c, T0 + 5_000 + i)).events)
    # ratios before each offer: (0,0) (25,0) (25,50) (50,50) (75,50) (75,100)
    assert [a for a, _, _ in got] == ["a1", "a2", "a1", "a1", "a2", "a1"]


async def test_chat_capacity_takes_that_many_chats(store: Store, tenant: str) -> None:
    """An agent with chat capacity 3 is offered three chats at once and no fourth."""
    await ready(store, tenant, agent("a1", capacity={"chat": 3, "voice": 1}))
    got = []
    for i in range(4):
        c = contact(f"c{i}", channel="chat")
        got += offers((await store.enqueue(tenant, c, T0 + 10 + i)).events)
    assert got == [("a1", "c0", "q1"), ("a1", "c1", "q1"), ("a1", "c2", "q1")]
    state = await store.agent_status(tenant, "a1")
    assert (state.load, state.reservations) == ({"chat": 3}, ["r1", "r2", "r3"])
    c3 = await store.contact_status(tenant, "c3")
    assert (c3.status, c3.position) == ("queued", 1)


async def test_voice_contact_blocks_other_channels(store: Store, tenant: str) -> None:
    """With voice exclusive (the default) a call blocks chat offers to that agent."""
    await ready(store, tenant, agent("a1", capacity={"voice": 1, "chat": 3}))
    assert offers((await store.enqueue(tenant, contact("c1"), T0 + 1)).events) == [
        ("a1", "c1", "q1")
    ]
    out = await store.enqueue(tenant, contact("c2", channel="chat"), T0 + 2)
    assert (out.value.contact.status, out.events) == ("queued", [])


async def test_without_exclusive_channels_voice_does_not_block(store: Store, tenant: str) -> None:
    """With no exclusive channels an agent on a call is still offered chats."""
    await ready(store, tenant, agent("a1", capacity={"voice": 1, "chat": 3}, exclusive=[]))
    await store.enqueue(tenant, contact("c1"), T0 + 1)
    out = await store.enqueue(tenant, contact("c2", channel="chat"), T0 + 2)
    assert offers(out.events) == [("a1", "c2", "q1")]
    assert (await store.agent_status(tenant, "a1")).load == {"voice": 1, "chat": 1}


async def test_chat_does_not_block_voice(store: Store, tenant: str) -> None:
    """Only exclusive channels block: an agent on a chat can still be offered a call."""
    await ready(store, tenant, agent("a1", capacity={"voice": 1, "chat": 3}))
    await store.enqueue(tenant, contact("c1", channel="chat"), T0 + 1)
    out = await store.enqueue(tenant, contact("c2"), T0 + 2)
    assert offers(out.events) == [("a1", "c2", "q1")]
    blocked = await store.enqueue(tenant, contact("c3", channel="chat"), T0 + 3)
    assert blocked.events == []


async def test_an_exclusive_channel_blocks_the_others_not_itself(store: Store, tenant: str) -> None:
    """With chat exclusive and a chat capacity of 3, an agent on a chat is offered more chats
    up to its capacity, and no call or email until its chats end ("voice or up to three
    chats"); its capacity alone limits the channel itself."""
    await ready(
        store,
        tenant,
        agent("a1", capacity={"voice": 1, "chat": 3, "email": 1}, exclusive=["chat", "voice"]),
    )
    for n in range(3):
        out = await store.enqueue(tenant, contact(f"c{n}", channel="chat"), T0 + 1 + n)
        assert offers(out.events) == [("a1", f"c{n}", "q1")]
    for n, channel in ((3, "voice"), (4, "email"), (5, "chat")):
        out = await store.enqueue(tenant, contact(f"c{n}", channel=channel), T0 + 10 + n)
        assert (out.value.contact.status, out.events) == ("queued", []), channel
    assert (await store.agent_status(tenant, "a1")).load == {"chat": 3}


async def test_channel_without_capacity_is_never_offered(store: Store, tenant: str) -> None:
    """An agent without email capacity is not offered email, however free it is."""
    await ready(store, tenant, agent("a1", capacity={"voice": 1}))
    out = await store.enqueue(tenant, contact("c1", channel="email"), T0 + 1)
    assert (out.value.contact.status, out.events) == ("queued", [])


async def test_list_agents_ordered_by_id(store: Store, tenant: str) -> None:
    """list_agents returns every agent as (id, document, capacity) in byte order of id."""
    for aid in ["a2", "a10", "a1"]:
        await store.upsert_agent(tenant, agent(aid, capacity={"chat": len(aid)}), T0)
    assert await store.list_agents(tenant) == [
        ("a1", {"name": "A1"}, {"chat": 2}),
        ("a10", {"name": "A10"}, {"chat": 3}),
        ("a2", {"name": "A2"}, {"chat": 2}),
    ]


async def test_unknown_agent_is_not_found(store: Store, tenant: str) -> None:
    """Reading, changing or listing the offers of an unknown agent raises AgentNotFound."""
    with pytest.raises(AgentNotFound) as err:
        await store.agent_status(tenant, "nobody")
    assert isinstance(err.value, NotFound)
    assert err.value.ids == {"agent": "nobody"}
    with pytest.raises(AgentNotFound):
        await store.set_agent_state(tenant, "nobody", "available", T0)
    with pytest.raises(AgentNotFound):
        await store.pending_offers(tenant, "nobody")
