"""Store contract: what a change of an agent's profile (upsert_agent) does to its pending offers.

An offer the change leaves invalid is rescinded (reason ``agent_changed``) as going offline
rescinds one: made from a queue the agent left, over its new capacity on the offer's channel,
or blocked by a channel made exclusive. Every test runs on both stores (see
``conftest.store``).
"""

from __future__ import annotations

import pytest

from queues.contract import Event, Step, Store
from queues.errors import ReservationNotPending
from tests.contract.conftest import T0, agent, contact, kinds, offers, ready


def rescinds(events: list[Event]) -> list[tuple[str, str, str]]:
    """(agent, reservation, reason) of every rescind event, in order."""
    return [(e["a"], e["r"], e["why"]) for e in events if e["t"] == "rescind"]


async def test_leaving_the_offers_queue_rescinds_it(store: Store, tenant: str) -> None:
    """An agent taken out of the queue an offer came from loses the offer; the contact goes back
    with its place, and the agent is neither set away nor counted as having declined it."""
    await ready(store, tenant, agent("a1", ["q1"]))
    await store.enqueue(tenant, contact("c1"), T0 + 1)
    await store.enqueue(tenant, contact("c2", now=T0 + 2), T0 + 2)
    out = await store.upsert_agent(tenant, agent("a1", ["q2"]), T0 + 3)
    assert kinds(out.events) == ["rescind"]
    rescind = {"t": "rescind", "a": "a1", "r": "r1", "c": "c1", "why": "agent_changed"}
    assert out.events[0] == rescind
    a1 = out.value[0]
    assert (a1.state, a1.load, a1.reservations) == ("available", {}, [])
    c1 = await store.contact_status(tenant, "c1")
    assert (c1.status, c1.position, c1.agent_id, c1.reservation_id) == ("queued", 1, None, None)
    assert await store.pending_offers(tenant, "a1") == []
    with pytest.raises(ReservationNotPending):
        await store.accept(tenant, "r1", "a1", T0 + 4)
    back = await store.upsert_agent(tenant, agent("a1", ["q1"]), T0 + 5)
    assert offers(back.events) == [("a1", "c1", "q1")]


async def test_a_rescinded_contact_goes_to_another_free_agent(store: Store, tenant: str) -> None:
    """The contact of an offer rescinded by a membership change is offered at once to another
    free agent of the queue."""
    await ready(store, tenant, agent("a1", ["q1"]))
    await store.enqueue(tenant, contact("c1"), T0 + 1)
    await ready(store, tenant, agent("a2", ["q1"]), T0 + 2)
    out = await store.upsert_agent(tenant, agent("a1", ["q2"]), T0 + 3)
    assert rescinds(out.events) == [("a1", "r1", "agent_changed")]
    assert offers(out.events) == [("a2", "c1", "q1")]
    assert (await store.contact_status(tenant, "c1")).agent_id == "a2"


async def test_an_offer_by_name_survives_leaving_every_queue(store: Store, tenant: str) -> None:
    """An offer made to the agent by name (a last_agent step) is not tied to a membership: the
    agent leaving its queues keeps it, and can accept it."""
    await ready(store, tenant, agent("a1", ["q1"]))
    named = [Step((), ("a1",), 20_000), Step(("q1",))]
    out = await store.enqueue(tenant, contact("c1", steps=named), T0 + 1)
    assert offers(out.events) == [("a1", "c1", "")]
    changed = await store.upsert_agent(tenant, agent("a1", []), T0 + 2)
    assert changed.events == []
    assert changed.value[0].reservations == ["r1"]
    accepted = await store.accept(tenant, "r1", "a1", T0 + 3)
    assert accepted.value.contact.status == "assigned"


async def test_a_capacity_cut_rescinds_the_newest_offer_over_it(store: Store, tenant: str) -> None:
    """Capacity cut below what the agent holds plus what it is offered on that channel: the
    newest offers there are rescinded until the rest fits; a contact it holds stays."""
    await ready(store, tenant, agent("a1", capacity={"chat": 3}))
    for n in (1, 2, 3):
        await store.enqueue(tenant, contact(f"c{n}", channel="chat", now=T0 + n), T0 + n)
    await store.accept(tenant, "r1", "a1", T0 + 4)
    out = await store.upsert_agent(tenant, agent("a1", capacity={"chat": 2}), T0 + 5)
    assert rescinds(out.events) == [("a1", "r3", "agent_changed")]
    a1 = out.value[0]
    assert (a1.load, a1.reservations, a1.contacts) == ({"chat": 2}, ["r2"], ["c1"])
    c3 = await store.contact_status(tenant, "c3")
    assert (c3.status, c3.position) == ("queued", 1)
    out = await store.upsert_agent(tenant, agent("a1", capacity={"voice": 1}), T0 + 6)
    assert rescinds(out.events) == [("a1", "r2", "agent_changed")]
    assert (await store.agent_status(tenant, "a1")).load == {"chat": 1}
    assert [(await store.contact_status(tenant, c)).position for c in ("c2", "c3")] == [1, 2]


async def test_a_capacity_cut_that_still_fits_keeps_the_offer(store: Store, tenant: str) -> None:
    """Capacity cut to exactly what the agent holds plus what it is offered keeps every offer."""
    await ready(store, tenant, agent("a1", capacity={"chat": 3}))
    await store.enqueue(tenant, contact("c1", channel="chat"), T0 + 1)
    await store.enqueue(tenant, contact("c2", channel="chat"), T0 + 2)
    await store.accept(tenant, "r1", "a1", T0 + 3)
    out = await store.upsert_agent(tenant, agent("a1", capacity={"chat": 2}), T0 + 4)
    assert out.events == []
    assert (out.value[0].load, out.value[0].reservations) == ({"chat": 2}, ["r2"])
    assert (await store.accept(tenant, "r2", "a1", T0 + 5)).value.contact.status == "assigned"


async def test_a_channel_made_exclusive_rescinds_the_offers_it_blocks(
    store: Store, tenant: str
) -> None:
    """An agent on a call, offered a chat while voice was not exclusive, loses the chat offer
    when voice becomes exclusive; the call stays."""
    spec = agent("a1", capacity={"voice": 1, "chat": 2}, exclusive=[])
    await ready(store, tenant, spec)
    await store.enqueue(tenant, contact("c1"), T0 + 1)
    await store.accept(tenant, "r1", "a1", T0 + 2)
    await store.enqueue(tenant, contact("c2", channel="chat"), T0 + 3)
    spec.exclusive = ["voice"]
    out = await store.upsert_agent(tenant, spec, T0 + 4)
    assert rescinds(out.events) == [("a1", "r2", "agent_changed")]
    assert offers(out.events) == []
    a1 = out.value[0]
    assert (a1.load, a1.reservations, a1.contacts) == ({"voice": 1}, [], ["c1"])


async def test_the_same_profile_again_keeps_every_offer(store: Store, tenant: str) -> None:
    """Upserting an unchanged profile rescinds nothing, even offers a change of exclusive
    channels would now block (a chat offer, then a call offer with voice exclusive)."""
    spec = agent("a1", capacity={"voice": 1, "chat": 2})
    await ready(store, tenant, spec)
    await store.enqueue(tenant, contact("c1", channel="chat"), T0 + 1)
    await store.enqueue(tenant, contact("c2"), T0 + 2)
    out = await store.upsert_agent(tenant, spec, T0 + 3)
    assert out.events == []
    assert out.value[0].reservations == ["r1", "r2"]
