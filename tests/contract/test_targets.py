"""Store contract, steps that name agents (``last_agent``, ``preferred_agents``).

Such a step waits for its agents while one of them could answer. When none can (each is
unknown, offline, without capacity on the contact's channel, or has declined the contact) the
contact moves on to the next step at once instead of waiting the step's timeout out; a last
step stays. Every test runs on both stores (see ``conftest.store``).
"""

from __future__ import annotations

from queues.contract import Step, Store
from tests.contract.conftest import OFFER_MS, T0, agent, contact, offer_of, offers, ready
from tests.contract.test_timers import LEASE_MS

TARGETED = [Step((), ("a1",), 20_000), Step(("q1",))]


async def step_timers(store: Store, tenant: str, now: int) -> list[str]:
    claim = await store.claim_timers(tenant, now, 100, LEASE_MS)
    return [t for t in claim.timers if t.startswith("s|")]


async def test_a_step_for_an_offline_agent_is_passed_at_enqueue(store: Store, tenant: str) -> None:
    await store.upsert_agent(tenant, agent("a1", ()), T0)  # offline
    await ready(store, tenant, agent("a2"), T0)
    out = await store.enqueue(tenant, contact("c1", steps=TARGETED), T0 + 1)
    assert offers(out.events) == [("a2", "c1", "q1")]
    assert await step_timers(store, tenant, T0 + 60_000) == []


async def test_a_step_for_an_unknown_agent_is_passed_at_enqueue(store: Store, tenant: str) -> None:
    out = await store.enqueue(tenant, contact("c1", steps=TARGETED), T0)
    c1 = out.value.contact
    assert (c1.status, c1.queue, c1.position, c1.staffed) == ("queued", "q1", 1, 0)
    (q1,) = await store.queue_snapshot(tenant, ["q1"], T0)
    assert q1.waiting == 1
    assert await step_timers(store, tenant, T0 + 60_000) == []


async def test_a_step_for_an_agent_without_the_channel_is_passed(store: Store, tenant: str) -> None:
    await ready(store, tenant, agent("a1", (), capacity={"chat": 2}), T0)
    await ready(store, tenant, agent("a2"), T0)
    out = await store.enqueue(tenant, contact("c1", steps=TARGETED), T0 + 1)
    assert offers(out.events) == [("a2", "c1", "q1")]


async def test_a_later_step_nobody_can_answer_is_passed_too(store: Store, tenant: str) -> None:
    await store.upsert_agent(tenant, agent("a1", ()), T0)  # offline
    steps = [Step(("q1",), (), 5_000), Step((), ("a1",), 20_000), Step(("q2",))]
    await store.enqueue(tenant, contact("c1", steps=steps), T0)
    assert await step_timers(store, tenant, T0 + 5_000) == ["s|c1|0"]
    await store.fire_timer(tenant, "s|c1|0", T0 + 5_000)
    c1 = await store.contact_status(tenant, "c1")
    assert (c1.status, c1.queue) == ("queued", "q2")
    q1, q2 = await store.queue_snapshot(tenant, ["q1", "q2"], T0 + 5_000)
    assert (q1.waiting, q2.waiting) == (0, 1)
    assert await step_timers(store, tenant, T0 + 60_000) == []


async def test_a_decline_passes_the_step_at_once(store: Store, tenant: str) -> None:
    await ready(store, tenant, agent("a1", ()), T0)
    await ready(store, tenant, agent("a2"), T0)
    out = await store.enqueue(tenant, contact("c1", steps=TARGETED), T0 + 1)
    assert offers(out.events) == [("a1", "c1", "")]
    rid = out.events[0]["r"]
    rejected = await store.reject(tenant, str(rid), "a1", T0 + 2)
    assert offers(rejected.events) == [("a2", "c1", "q1")]
    assert await step_timers(store, tenant, T0 + 60_000) == []


async def test_the_agent_going_offline_passes_the_step(store: Store, tenant: str) -> None:
    """A contact waiting for its busy agent moves on when that agent logs off."""
    await ready(store, tenant, agent("a1", ("q2",)), T0)
    await store.enqueue(tenant, contact("c0", ("q2",)), T0)
    await store.accept(tenant, "r1", "a1", T0 + 1)
    waiting = await store.enqueue(tenant, contact("c1", steps=TARGETED, now=T0 + 2), T0 + 2)
    assert (waiting.value.contact.status, waiting.events) == ("queued", [])
    await ready(store, tenant, agent("a2"), T0 + 3)  # in q1: not for c1's first step
    out = await store.set_agent_state(tenant, "a1", "offline", T0 + 4)
    assert offers(out.events) == [("a2", "c1", "q1")]
    assert await step_timers(store, tenant, T0 + 60_000) == []


async def test_losing_the_channel_passes_the_step(store: Store, tenant: str) -> None:
    await ready(store, tenant, agent("a1", ("q2",)), T0)
    await store.enqueue(tenant, contact("c0", ("q2",)), T0)
    await store.accept(tenant, "r1", "a1", T0 + 1)
    await store.enqueue(tenant, contact("c1", steps=TARGETED, now=T0 + 2), T0 + 2)
    await ready(store, tenant, agent("a2"), T0 + 3)
    out = await store.upsert_agent(tenant, agent("a1", ("q2",), capacity={"chat": 3}), T0 + 4)
    assert offers(out.events) == [("a2", "c1", "q1")]


async def test_an_away_agent_is_still_waited_for(store: Store, tenant: str) -> None:
    """Away is a pause (a break, a missed offer): the step keeps its timeout for the agent."""
    await store.upsert_agent(tenant, agent("a1", ()), T0)
    await store.set_agent_state(tenant, "a1", "away", T0)
    await ready(store, tenant, agent("a2"), T0)
    out = await store.enqueue(tenant, contact("c1", steps=TARGETED), T0 + 1)
    assert (out.value.contact.status, out.value.contact.staffed, out.events) == ("queued", 1, [])
    back = await store.set_agent_state(tenant, "a1", "available", T0 + 2)
    assert offers(back.events) == [("a1", "c1", "")]


async def test_a_last_step_nobody_can_answer_still_waits(store: Store, tenant: str) -> None:
    await store.upsert_agent(tenant, agent("a1", ()), T0)
    out = await store.enqueue(tenant, contact("c1", steps=[Step((), ("a1",))]), T0)
    assert (out.value.contact.status, out.value.contact.staffed) == ("queued", 0)
    back = await store.set_agent_state(tenant, "a1", "available", T0 + 1)
    assert offers(back.events) == [("a1", "c1", "")]


async def test_another_named_agent_keeps_the_step(store: Store, tenant: str) -> None:
    """preferred_agents: the step waits while any of its agents could still answer."""
    await store.upsert_agent(tenant, agent("a1", ()), T0)  # offline
    await ready(store, tenant, agent("a3", ("q2",)), T0)
    await store.enqueue(tenant, contact("c0", ("q2",)), T0)  # a3 busy
    await ready(store, tenant, agent("a2"), T0)
    steps = [Step((), ("a1", "a3"), 20_000), Step(("q1",))]
    out = await store.enqueue(tenant, contact("c1", steps=steps, now=T0 + 1), T0 + 1)
    assert out.events == []
    assert await step_timers(store, tenant, T0 + 20_001) == ["s|c1|0"]


async def test_a_callback_for_an_agent_without_voice_passes_the_step(
    store: Store, tenant: str
) -> None:
    """A chat waiting for its chat-only agent becomes a voice callback that agent cannot make."""
    await ready(store, tenant, agent("a1", ("q2",), capacity={"chat": 1}), T0)
    await store.enqueue(tenant, contact("c0", ("q2",), channel="chat"), T0)
    await store.accept(tenant, "r1", "a1", T0 + 1)
    await store.enqueue(tenant, contact("c1", channel="chat", steps=TARGETED, now=T0 + 2), T0 + 2)
    await ready(store, tenant, agent("a2"), T0 + 3)
    out = await store.request_callback(tenant, "c1", "+14155550100", T0 + 4, T0 + 4)
    assert offers(out.events) == [("a2", "c1", "q1")]


async def test_position_counts_the_line_of_a_named_agent(store: Store, tenant: str) -> None:
    """A contact waiting in a queue and for a named agent is as far along as its best place:
    first for the agent, though third in the queue."""
    await store.upsert_agent(tenant, agent("a1"), T0)
    await store.set_agent_state(tenant, "a1", "away", T0)
    await store.enqueue(tenant, contact("c1"), T0)
    await store.enqueue(tenant, contact("c2", now=T0 + 1), T0 + 1)
    steps = [Step(("q1",), ("a1",))]
    out = await store.enqueue(tenant, contact("c3", steps=steps, now=T0 + 2), T0 + 2)
    c3 = out.value.contact
    assert (c3.position, c3.staffed, c3.lines) == (1, 2, [("q1", 3, 1), ("", 1, 1)])
    assert (await store.contact_status(tenant, "c3")) == c3


async def test_an_offer_by_name_names_no_queue(store: Store, tenant: str) -> None:
    """A pending offer made by name names no queue, even to a member of the next step's queue;
    one made from a queue names it (a config reload reads these to find the queues it would
    leave offered contacts stranded in)."""
    await ready(store, tenant, agent("a1"), T0)  # a member of q1
    await ready(store, tenant, agent("a2"), T0)
    await store.enqueue(tenant, contact("c1", steps=TARGETED), T0 + 1)
    await store.enqueue(tenant, contact("c2"), T0 + 2)
    by_name = await store.pending_offers(tenant, "a1")
    from_queue = await store.pending_offers(tenant, "a2")
    assert [(p.contact_id, p.queue) for p in by_name] == [("c1", "")]
    assert [(p.contact_id, p.queue) for p in from_queue] == [("c2", "q1")]


async def test_an_offer_by_name_stands_for_its_steps_own_time(store: Store, tenant: str) -> None:
    """A step that names agents may set how long an offer to them stands; a step that does not
    uses the contact's default for offers by name, and a queue's offer its queue's time."""
    await ready(store, tenant, agent("a1", ()), T0)
    own = [Step((), ("a1",), 60_000, agent_offer_ms=40_000), Step(("q1",))]
    out = await store.enqueue(tenant, contact("c1", steps=own), T0 + 1)
    assert offer_of(out.events, "c1")["x"] == T0 + 1 + 40_000
    # (waiting first, for an agent away: the offer made when it comes back takes the step's
    # time too)
    await store.upsert_agent(tenant, agent("a2", ()), T0)
    await store.set_agent_state(tenant, "a2", "away", T0)
    waits = [Step((), ("a2",), 60_000, agent_offer_ms=25_000), Step(("q1",))]
    await store.enqueue(tenant, contact("c2", steps=waits), T0 + 2)
    back = await store.set_agent_state(tenant, "a2", "available", T0 + 3)
    assert offer_of(back.events, "c2")["x"] == T0 + 3 + 25_000
    await ready(store, tenant, agent("a3", ()), T0)
    default = [Step((), ("a3",), 60_000), Step(("q1",))]
    out = await store.enqueue(tenant, contact("c3", steps=default), T0 + 4)
    assert offer_of(out.events, "c3")["x"] == T0 + 4 + OFFER_MS
