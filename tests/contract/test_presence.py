"""Store contract, presence: agents' sockets per instance, instances' liveness, and the sweep.

An instance records how many sockets of each agent it holds (``socket_opened``,
``socket_closed``: counts set, not added to) and stays live by beating (``instance_beat``); an
agent goes offline only when it has no socket left on any live instance. The sweep timer
``i|<instance>`` drops a dead instance's sockets. Every test runs on both stores.
"""

from __future__ import annotations

import pytest

from queues.contract import Event, Step, Store
from queues.errors import AgentNotFound
from queues.memory import SWEEP_BATCH
from tests.contract.conftest import T0, agent, contact, kinds, offers, ready

#: an instance is live this long after it was last heard from (ms)
TIMEOUT = 30_000
LEASE_MS = 5_000
RESCIND_R1 = {"t": "rescind", "a": "a1", "r": "r1", "c": "c1", "why": "agent_offline"}


async def fire_due(
    store: Store, tenant: str, now: int
) -> tuple[list[str], list[bool], list[Event]]:
    """Claim every timer due at ``now`` and fire each: the timers, whether each fired, and
    all their events."""
    claim = await store.claim_timers(tenant, now, 500, LEASE_MS)
    fired: list[bool] = []
    events: list[Event] = []
    for timer in claim.timers:
        out = await store.fire_timer(tenant, timer, now)
        fired.append(out.value)
        events += out.events
    return claim.timers, fired, events


async def state_of(store: Store, tenant: str, aid: str) -> str:
    return (await store.agent_status(tenant, aid)).state


async def test_opening_records_the_socket_and_changes_no_state(store: Store, tenant: str) -> None:
    """A socket opened leaves the agent's state alone; the instance is known from then on."""
    await store.upsert_agent(tenant, agent("a1"), T0)
    await ready(store, tenant, agent("a2"))
    first = await store.socket_opened(tenant, "a1", "i1", 1, T0, TIMEOUT)
    assert (first.value.known, first.value.offline, first.events) == (False, [], [])
    again = await store.socket_opened(tenant, "a2", "i1", 1, T0 + 1, TIMEOUT)
    assert (again.value.known, again.events) == (True, [])
    assert [await state_of(store, tenant, a) for a in ("a1", "a2")] == ["offline", "available"]


async def test_an_unknown_agent_changes_nothing(store: Store, tenant: str) -> None:
    """Opening or closing a socket of an agent that does not exist (even one a contact waits
    for by name) is AgentNotFound, and the instance stays unknown."""
    steps = [Step(("q1",), ("ghost",), 5_000), Step(("q1",))]
    await store.enqueue(tenant, contact("c1", steps=steps), T0)
    with pytest.raises(AgentNotFound):
        await store.socket_opened(tenant, "ghost", "i1", 1, T0, TIMEOUT)
    with pytest.raises(AgentNotFound):
        await store.socket_closed(tenant, "ghost", "i1", 0, T0)
    beat = await store.instance_beat(tenant, "i1", T0, TIMEOUT)
    assert beat.value.known is False


async def test_a_close_keeps_an_agent_with_a_socket_on_another_live_instance(
    store: Store, tenant: str
) -> None:
    """The last socket on one instance closes while another live instance holds one: the agent
    stays available with its offer."""
    await ready(store, tenant, agent("a1"))
    await store.socket_opened(tenant, "a1", "i1", 1, T0, TIMEOUT)
    await store.socket_opened(tenant, "a1", "i2", 1, T0, TIMEOUT)
    await store.enqueue(tenant, contact("c1"), T0 + 1)
    out = await store.socket_closed(tenant, "a1", "i1", 0, T0 + 2)
    assert (out.value.known, out.value.offline, out.events) == (True, [], [])
    a1 = await store.agent_status(tenant, "a1")
    assert (a1.state, a1.reservations) == ("available", ["r1"])


async def test_the_last_socket_anywhere_sets_the_agent_offline(store: Store, tenant: str) -> None:
    """The agent's last socket closes: offline, its offer rescinded and the contact offered to
    another agent, in the same step."""
    await ready(store, tenant, agent("a1"), T0)
    await store.socket_opened(tenant, "a1", "i1", 2, T0, TIMEOUT)
    await store.enqueue(tenant, contact("c1"), T0 + 1)
    await ready(store, tenant, agent("a2"), T0 + 2)
    kept = await store.socket_closed(tenant, "a1", "i1", 1, T0 + 3)
    assert (kept.value.offline, kept.events) == ([], [])
    out = await store.socket_closed(tenant, "a1", "i1", 0, T0 + 4)
    assert out.value.offline == ["a1"]
    assert kinds(out.events) == ["rescind", "state", "offer"]
    assert out.events[0] == RESCIND_R1
    assert offers(out.events) == [("a2", "c1", "q1")]
    a1 = await store.agent_status(tenant, "a1")
    assert (a1.state, a1.load, a1.reservations) == ("offline", {}, [])
    again = await store.socket_closed(tenant, "a1", "i1", 0, T0 + 5)
    assert (again.value.offline, again.events) == ([], [])


async def test_a_socket_on_a_dead_instance_does_not_count(store: Store, tenant: str) -> None:
    """A socket on an instance past its deadline keeps nobody available."""
    await ready(store, tenant, agent("a1"))
    await store.socket_opened(tenant, "a1", "i1", 1, T0, TIMEOUT)
    await store.socket_opened(tenant, "a1", "i2", 1, T0 + 10_000, TIMEOUT)
    out = await store.socket_closed(tenant, "a1", "i2", 0, T0 + TIMEOUT)
    assert out.value.offline == ["a1"]


async def test_a_beat_keeps_the_instance_live(store: Store, tenant: str) -> None:
    """An instance that beats stays live past its first deadline."""
    await ready(store, tenant, agent("a1"))
    await store.socket_opened(tenant, "a1", "i1", 1, T0, TIMEOUT)
    await store.socket_opened(tenant, "a1", "i2", 1, T0, TIMEOUT)
    beat = await store.instance_beat(tenant, "i1", T0 + 20_000, TIMEOUT)
    assert (beat.value.known, beat.value.offline, beat.events) == (True, [], [])
    out = await store.socket_closed(tenant, "a1", "i2", 0, T0 + 40_000)
    assert (out.value.offline, await state_of(store, tenant, "a1")) == ([], "available")


async def test_an_explicit_offline_stays_with_sockets_open(store: Store, tenant: str) -> None:
    """An agent set offline by hand stays offline with its socket open; opening another socket
    or closing one changes nothing."""
    await ready(store, tenant, agent("a1"))
    await store.socket_opened(tenant, "a1", "i1", 1, T0, TIMEOUT)
    await store.set_agent_state(tenant, "a1", "offline", T0 + 1)
    await store.socket_opened(tenant, "a1", "i1", 2, T0 + 2, TIMEOUT)
    out = await store.socket_closed(tenant, "a1", "i1", 0, T0 + 3)
    assert (out.value.offline, out.events, await state_of(store, tenant, "a1")) == (
        [],
        [],
        "offline",
    )


async def test_the_sweep_sets_a_dead_instances_agents_offline(store: Store, tenant: str) -> None:
    """An instance not heard from by its deadline is swept: its agents with no socket elsewhere
    go offline (offers rescinded); one with a socket on a live instance stays available."""
    await ready(store, tenant, agent("a1", ["q1"]), T0)
    await ready(store, tenant, agent("a2", ["q1"]), T0)
    await ready(store, tenant, agent("a3", ["q2"]), T0)
    for aid in ("a1", "a2"):
        await store.socket_opened(tenant, aid, "i1", 1, T0, TIMEOUT)
    await store.socket_opened(tenant, "a2", "i2", 1, T0, TIMEOUT)
    await store.socket_opened(tenant, "a3", "i2", 1, T0, TIMEOUT)
    await store.enqueue(tenant, contact("c1"), T0 + 1)  # offered to a1 (longest idle)
    await store.instance_beat(tenant, "i2", T0 + 20_000, TIMEOUT)
    early, _, _ = await fire_due(store, tenant, T0 + TIMEOUT - 1)
    assert early == []
    timers, fired, events = await fire_due(store, tenant, T0 + TIMEOUT)
    assert (timers, fired) == (["i|i1"], [True])
    assert events[0] == RESCIND_R1
    assert kinds(events) == ["rescind", "state", "offer"]
    assert offers(events) == [("a2", "c1", "q1")]
    states = [await state_of(store, tenant, a) for a in ("a1", "a2", "a3")]
    assert states == ["offline", "available", "available"]
    # swept: the timer is gone and the instance unknown (its sockets were dropped)
    assert (await fire_due(store, tenant, T0 + TIMEOUT + LEASE_MS))[0] == []
    assert (await store.instance_beat(tenant, "i1", T0 + TIMEOUT + 1, TIMEOUT)).value.known is False


async def test_an_offer_made_and_rescinded_in_one_sweep_leaves_no_timer(
    store: Store, tenant: str
) -> None:
    """A sweep that rescinds an agent's offer may offer the contact to the next agent of the
    same instance, whom it then sets offline too: that offer's timer goes with it (Redis kept
    it, a stale timer that fired later for nothing; found by the long state machine run)."""
    await ready(store, tenant, agent("a1", ["q1"]), T0)
    await ready(store, tenant, agent("a2", ["q1"]), T0 + 1)
    for aid in ("a1", "a2"):
        await store.socket_opened(tenant, aid, "i1", 1, T0 + 1, TIMEOUT)
    await store.enqueue(tenant, contact("c1", now=T0 + 2), T0 + 2)  # offered to a1 as r1
    timers, fired, events = await fire_due(store, tenant, T0 + TIMEOUT + 1)
    assert (timers, fired) == (["i|i1"], [True])
    assert [(e["t"], e.get("r")) for e in events if e["t"] != "state"] == [
        ("rescind", "r1"),
        ("offer", "r2"),
        ("rescind", "r2"),
    ]
    assert (await store.contact_status(tenant, "c1")).status == "queued"
    assert (await fire_due(store, tenant, T0 + TIMEOUT + 60_000))[0] == []


async def test_an_instance_heard_from_since_is_not_swept(store: Store, tenant: str) -> None:
    """A sweep timer claimed just before the instance beat again does nothing but wait for the
    new deadline."""
    await ready(store, tenant, agent("a1"))
    await store.socket_opened(tenant, "a1", "i1", 1, T0, TIMEOUT)
    claim = await store.claim_timers(tenant, T0 + TIMEOUT, 10, LEASE_MS)
    assert claim.timers == ["i|i1"]
    await store.instance_beat(tenant, "i1", T0 + TIMEOUT + 1, TIMEOUT)
    out = await store.fire_timer(tenant, "i|i1", T0 + TIMEOUT + 2)
    assert (out.value, out.events) == (False, [])
    assert await state_of(store, tenant, "a1") == "available"
    later = await store.claim_timers(tenant, T0 + 2 * TIMEOUT, 10, LEASE_MS)
    assert (later.timers, later.next_due_ms) == ([], T0 + 2 * TIMEOUT + 1)


async def test_a_swept_instance_sends_its_sockets_again(store: Store, tenant: str) -> None:
    """An instance swept while it lived on (cut off from Redis) learns it from its next beat,
    and a beat with its sockets restores them: the agent it lists is present again, the one it
    no longer lists and that has no socket elsewhere goes offline."""
    await ready(store, tenant, agent("a1"))
    await ready(store, tenant, agent("a2"))
    await store.socket_opened(tenant, "a1", "i1", 1, T0, TIMEOUT)
    await store.socket_opened(tenant, "a2", "i1", 1, T0, TIMEOUT)
    await fire_due(store, tenant, T0 + TIMEOUT)
    assert [await state_of(store, tenant, a) for a in ("a1", "a2")] == ["offline", "offline"]
    now = T0 + TIMEOUT + 1
    beat = await store.instance_beat(tenant, "i1", now, TIMEOUT)
    assert beat.value.known is False
    await store.set_agent_state(tenant, "a1", "available", now)
    await store.set_agent_state(tenant, "a2", "available", now)
    sync = await store.instance_beat(tenant, "i1", now + 1, TIMEOUT, {"a1": 2, "ghost": 1})
    assert (sync.value.known, sync.value.offline) == (True, [])
    both = await store.instance_beat(tenant, "i1", now + 2, TIMEOUT, {"a1": 2, "a2": 1})
    assert both.value.offline == []
    # a2 no longer listed: it has no socket left anywhere
    resync = await store.instance_beat(tenant, "i1", now + 3, TIMEOUT, {"a1": 1})
    assert resync.value.offline == ["a2"]
    assert kinds(resync.events) == ["state"]
    kept = await store.socket_closed(tenant, "a1", "i1", 0, now + 4)
    assert kept.value.offline == ["a1"]
    with pytest.raises(AgentNotFound):  # the unknown agent was not recorded
        await store.socket_closed(tenant, "ghost", "i1", 0, now + 5)


async def test_a_close_after_the_sweep_reports_the_instance_unknown(
    store: Store, tenant: str
) -> None:
    """A socket closing on an instance swept meanwhile says so (the instance sends its sockets
    again at its next beat)."""
    await ready(store, tenant, agent("a1"))
    await store.socket_opened(tenant, "a1", "i1", 1, T0, TIMEOUT)
    await fire_due(store, tenant, T0 + TIMEOUT)
    out = await store.socket_closed(tenant, "a1", "i1", 0, T0 + TIMEOUT + 1)
    assert (out.value.known, out.value.offline) == (False, [])


async def test_a_large_instance_is_swept_in_batches(store: Store, tenant: str) -> None:
    """A dead instance with more agents than one sweep takes is swept over several firings, the
    timer due again at once until none is left."""
    agents = [f"a{i:03d}" for i in range(SWEEP_BATCH + 20)]
    for aid in agents:
        await ready(store, tenant, agent(aid))
        await store.socket_opened(tenant, aid, "i1", 1, T0, TIMEOUT)
    now = T0 + TIMEOUT
    first = await store.fire_timer(tenant, "i|i1", now)
    assert first.value is True
    assert [e["a"] for e in first.events] == agents[:SWEEP_BATCH]
    claim = await store.claim_timers(tenant, now, 10, LEASE_MS)
    assert claim.timers == ["i|i1"]
    second = await store.fire_timer(tenant, "i|i1", now)
    assert [e["a"] for e in second.events] == agents[SWEEP_BATCH:]
    done = await store.fire_timer(tenant, "i|i1", now)
    assert (done.value, done.events) == (False, [])
    assert {await state_of(store, tenant, a) for a in agents} == {"offline"}


async def test_a_socket_closed_on_a_swept_instance_is_left_to_its_next_beat(
    store: Store, tenant: str
) -> None:
    """An instance swept while it lived on closes one of the two sockets it holds: the store
    does not record the one left (the instance is unknown; it sends every socket it holds with
    its next beat), so a stale second fire of the sweep finds nothing to drop and the agent,
    available again meanwhile, stays so."""
    await ready(store, tenant, agent("a1"))
    await store.socket_opened(tenant, "a1", "i1", 2, T0, TIMEOUT)
    _, fired, _ = await fire_due(store, tenant, T0 + TIMEOUT)
    assert fired == [True]
    assert await state_of(store, tenant, "a1") == "offline"
    await store.set_agent_state(tenant, "a1", "available", T0 + TIMEOUT + 1)
    out = await store.socket_closed(tenant, "a1", "i1", 1, T0 + TIMEOUT + 2)
    assert (out.value.known, out.value.offline) == (False, [])
    again = await store.fire_timer(tenant, "i|i1", T0 + TIMEOUT + 3)
    assert (again.value, again.events) == (False, [])
    assert await state_of(store, tenant, "a1") == "available"
    beat = await store.instance_beat(tenant, "i1", T0 + TIMEOUT + 4, TIMEOUT, {"a1": 1})
    assert (beat.value.known, beat.value.offline) == (False, [])
    _, fired, _ = await fire_due(store, tenant, T0 + TIMEOUT + 5)
    assert fired == []
    assert await state_of(store, tenant, "a1") == "available"
