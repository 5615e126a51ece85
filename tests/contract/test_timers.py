"""Store contract, timers: offer timeouts, wrap-up, workflow steps and scheduled callbacks.

Timers are claimed with ``claim_timers`` and run with ``fire_timer``, as the server's timer
loop does. Every test runs on both stores (see ``conftest.store``).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from queues.contract import Event, Step, Store
from queues.errors import (
    CallbackUnavailable,
    ContactNotAssigned,
    ContactNotWaiting,
    NotYourContact,
)
from tests.contract.conftest import OFFER_MS, T0, agent, contact, kinds, offers, ready

LEASE_MS = 60_000


async def fire_due(store: Store, tenant: str, now: int) -> tuple[list[str], list[Event]]:
    """Claim every timer due at ``now`` and fire each; the timers and all their events."""
    claim = await store.claim_timers(tenant, now, 100, LEASE_MS)
    events: list[Event] = []
    for timer in claim.timers:
        out = await store.fire_timer(tenant, timer, now)
        assert out.value is True, timer
        events += out.events
    return claim.timers, events


async def test_claim_leases_due_timers(store: Store, tenant: str) -> None:
    """Claiming returns due timers in due order and pushes them back by the lease."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1", steps=[Step(("q1",), (), 5_000), Step(("q2",))]), T0)
    early = await store.claim_timers(tenant, T0 + 4_999, 10, LEASE_MS)
    assert (early.timers, early.next_due_ms) == ([], T0 + 5_000)
    claim = await store.claim_timers(tenant, T0 + OFFER_MS, 10, LEASE_MS)
    assert (claim.timers, claim.next_due_ms) == (["s|c1|0", "o|r1"], T0 + OFFER_MS + LEASE_MS)
    again = await store.claim_timers(tenant, T0 + OFFER_MS, 10, LEASE_MS)
    assert again.timers == []


async def test_offer_timeout_requeues_in_place_and_sets_agent_away(
    store: Store, tenant: str
) -> None:
    """An unanswered offer is rescinded, the agent set away, the contact back in its place."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1", now=T0 + 1), T0 + 1)
    await store.enqueue(tenant, contact("c2", now=T0 + 2), T0 + 2)
    timers, events = await fire_due(store, tenant, T0 + 1 + OFFER_MS)
    assert timers == ["o|r1"]
    assert events == [
        {"t": "rescind", "a": "a1", "r": "r1", "c": "c1", "why": "timeout"},
        {"t": "state", "a": "a1", "s": "away", "l": {}},
    ]
    c1, c2 = [await store.contact_status(tenant, c) for c in ("c1", "c2")]
    assert (c1.status, c1.position, c1.agent_id, c2.position) == ("queued", 1, None, 2)
    a1 = await store.agent_status(tenant, "a1")
    assert (a1.state, a1.load, a1.reservations) == ("away", {}, [])
    assert offers(await ready(store, tenant, agent("a2"), T0 + OFFER_MS + 10)) == [
        ("a2", "c1", "q1")
    ]


async def test_offer_timeout_reoffers_to_a_free_agent(store: Store, tenant: str) -> None:
    """A timed-out contact goes at once to another free agent."""
    await ready(store, tenant, agent("a1"), T0)
    await ready(store, tenant, agent("a2"), T0 + 1)
    await store.enqueue(tenant, contact("c1", now=T0 + 2), T0 + 2)
    await store.enqueue(tenant, contact("c2", now=T0 + 3), T0 + 3)
    await store.accept(tenant, "r2", "a2", T0 + 4)
    await store.complete(tenant, "c2", "a2", 0, "", T0 + 5)
    timers, events = await fire_due(store, tenant, T0 + 2 + OFFER_MS)
    assert timers == ["o|r1"]
    assert kinds(events) == ["rescind", "state", "offer"]
    assert offers(events) == [("a2", "c1", "q1")]


async def test_timer_that_no_longer_applies_does_nothing(store: Store, tenant: str) -> None:
    """Firing an offer timer early, or after the offer was answered, changes nothing."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    early = await store.fire_timer(tenant, "o|r1", T0 + OFFER_MS - 1)
    assert (early.value, early.events) == (False, [])
    await store.accept(tenant, "r1", "a1", T0 + 1)
    late = await store.fire_timer(tenant, "o|r1", T0 + OFFER_MS)
    assert (late.value, late.events) == (False, [])
    assert (await store.contact_status(tenant, "c1")).status == "assigned"
    assert (await store.claim_timers(tenant, T0 + 10 * OFFER_MS, 10, LEASE_MS)).timers == []


async def test_complete_with_wrap_up_then_next_contact(store: Store, tenant: str) -> None:
    """Complete starts wrap-up; its timer frees the agent, who takes the next contact."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    await store.enqueue(tenant, contact("c2", now=T0 + 1), T0 + 1)
    await store.accept(tenant, "r1", "a1", T0 + 1_000)
    out = await store.complete(tenant, "c1", "a1", 5_000, "resolved", T0 + 61_000)
    c1 = out.value.contact
    assert (out.value.handle_ms, c1.status, c1.disposition) == (60_000, "wrapping", "resolved")
    assert out.events == [{"t": "contact", "c": "c1", "s": "wrapping"}]
    assert (await store.agent_status(tenant, "a1")).load == {"voice": 1}
    assert (await store.contact_status(tenant, "c2")).status == "queued"
    timers, events = await fire_due(store, tenant, T0 + 66_000)
    assert timers == ["w|c1"]
    assert events == [
        {"t": "offer", "a": "a1", "r": "r2", "c": "c2", "x": T0 + 66_000 + OFFER_MS, "q": "q1"},
        {"t": "state", "a": "a1", "s": "available", "l": {"voice": 1}},  # the offer's load in it
        {"t": "contact", "c": "c1", "s": "completed"},
    ]
    assert (await store.contact_status(tenant, "c1")).status == "completed"
    (snap,) = await store.queue_snapshot(tenant, ["q1"], T0 + 66_000)
    assert snap.stats == {
        "offered": 2,
        "answered": 1,
        "answered_sl": 1,
        "wait_ms": 1_000,
        "handled": 1,
        "handle_ms": 60_000,
        "wrap_ms": 5_000,
    }


async def test_complete_without_wrap_up_frees_at_once(store: Store, tenant: str) -> None:
    """Complete with no wrap-up completes the contact and frees capacity in the same call."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    await store.accept(tenant, "r1", "a1", T0 + 1)
    out = await store.complete(tenant, "c1", None, 0, "", T0 + 2)
    assert (out.value.contact.status, out.value.contact.disposition) == ("completed", None)
    assert kinds(out.events) == ["state", "contact"]
    assert (await store.agent_status(tenant, "a1")).load == {}


async def test_complete_refusals(store: Store, tenant: str) -> None:
    """Complete before accept, by another agent, or twice is refused."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    with pytest.raises(ContactNotAssigned):
        await store.complete(tenant, "c1", "a1", 0, "", T0 + 1)
    await store.accept(tenant, "r1", "a1", T0 + 2)
    with pytest.raises(NotYourContact) as err:
        await store.complete(tenant, "c1", "a2", 0, "", T0 + 3)
    assert err.value.ids == {"contact": "c1"}
    await store.complete(tenant, "c1", "a1", 1_000, "", T0 + 4)
    with pytest.raises(ContactNotAssigned):
        await store.complete(tenant, "c1", "a1", 0, "", T0 + 5)


async def test_step_escalation_joins_further_queues(store: Store, tenant: str) -> None:
    """When a step times out the contact joins the next step's queues and is offered there."""
    await ready(store, tenant, agent("a2", ["q2"]))
    steps = [Step(("q1",), (), 10_000), Step(("q1", "q2"))]
    out = await store.enqueue(tenant, contact("c1", steps=steps), T0)
    assert (out.value.contact.status, out.events) == ("queued", [])
    q2 = (await store.queue_snapshot(tenant, ["q2"], T0))[0]
    assert q2.waiting == 0
    timers, events = await fire_due(store, tenant, T0 + 10_000)
    assert timers == ["s|c1|0"]
    assert offers(events) == [("a2", "c1", "q2")]
    assert (await store.contact_status(tenant, "c1")).queue == "q2"


async def test_an_offered_contact_escalates_without_leaving_its_offer_queue(
    store: Store, tenant: str
) -> None:
    """A step that times out while the contact is on an offer moves it on (an offer that
    fails goes to the next step), but the offer still belongs to the queue that made it: the
    contact reports that queue, and an accept counts there, not in the next step's queue."""
    await ready(store, tenant, agent("a1", ["q1"]))
    steps = [Step(("q1",), (), 10_000), Step(("q2",))]
    out = await store.enqueue(tenant, contact("c1", steps=steps, offer_ms={"q1": 30_000}), T0)
    assert offers(out.events) == [("a1", "c1", "q1")]
    timers, _ = await fire_due(store, tenant, T0 + 10_000)
    assert timers == ["s|c1|0"]
    assert (await store.contact_status(tenant, "c1")).queue == "q1"
    accepted = await store.accept(tenant, "r1", "a1", T0 + 11_000)
    assert accepted.value.contact.queue == "q1"
    q1, q2 = await store.queue_snapshot(tenant, ["q1", "q2"], T0 + 11_000)
    assert (q1.stats.get("answered"), q2.stats.get("answered")) == (1, None)


async def test_an_offer_that_fails_after_escalation_waits_in_the_new_step(
    store: Store, tenant: str
) -> None:
    """When the offer made by the old step's queue fails after the step moved on, the contact
    waits in the new step's queue and reports it (an abandon then counts there)."""
    await ready(store, tenant, agent("a1", ["q1"]))
    steps = [Step(("q1",), (), 10_000), Step(("q2",))]
    await store.enqueue(tenant, contact("c1", steps=steps, offer_ms={"q1": 30_000}), T0)
    await fire_due(store, tenant, T0 + 10_000)
    await store.reject(tenant, "r1", "a1", T0 + 11_000)
    c1 = await store.contact_status(tenant, "c1")
    assert (c1.status, c1.queue, c1.position) == ("queued", "q2", 1)
    await store.abandon(tenant, "c1", T0 + 12_000)
    q1, q2 = await store.queue_snapshot(tenant, ["q1", "q2"], T0 + 12_000)
    assert (q1.stats.get("abandoned"), q2.stats.get("abandoned")) == (None, 1)


async def test_step_escalation_without_agents_waits_in_both(store: Store, tenant: str) -> None:
    """After escalating, the waiting contact is counted in every queue of the new step."""
    steps = [Step(("q1",), (), 10_000), Step(("q1", "q2"))]
    await store.enqueue(tenant, contact("c1", steps=steps), T0)
    await fire_due(store, tenant, T0 + 10_000)
    q1, q2 = await store.queue_snapshot(tenant, ["q1", "q2"], T0 + 10_000)
    assert (q1.waiting, q2.waiting, q2.oldest_enqueued_ms) == (1, 1, T0)
    c1 = await store.contact_status(tenant, "c1")
    assert (c1.status, c1.position, c1.queue) == ("queued", 1, "q1")
    stale = await store.fire_timer(tenant, "s|c1|0", T0 + 20_000)
    assert stale.value is False


async def test_targeted_agent_is_offered_first(store: Store, tenant: str) -> None:
    """A last_agent step offers only to that agent, though another has waited longer."""
    await ready(store, tenant, agent("a2"), T0)
    await ready(store, tenant, agent("a1"), T0 + 1)
    steps = [Step((), ("a1",), 5_000), Step(("q1",))]
    out = await store.enqueue(tenant, contact("c1", steps=steps), T0 + 2)
    assert offers(out.events) == [("a1", "c1", "")]


async def test_targeted_contact_waits_for_its_agent(store: Store, tenant: str) -> None:
    """A targeted contact waits for its busy agent, then widens to the queue at the step."""
    await ready(store, tenant, agent("a1"), T0)
    await store.enqueue(tenant, contact("c0"), T0)
    await ready(store, tenant, agent("a2"), T0 + 1)
    steps = [Step((), ("a1",), 5_000), Step(("q1",))]
    out = await store.enqueue(tenant, contact("c1", steps=steps, now=T0 + 2), T0 + 2)
    c1 = out.value.contact
    assert (c1.status, c1.position, c1.staffed, out.events) == ("queued", 1, 1, [])
    _, events = await fire_due(store, tenant, T0 + 5_002)
    assert offers(events) == [("a2", "c1", "q1")]


async def test_targeted_agent_takes_its_contact_when_free(store: Store, tenant: str) -> None:
    """The targeted agent takes the contact waiting for it as soon as it frees up."""
    await ready(store, tenant, agent("a1"), T0)
    await store.enqueue(tenant, contact("c0"), T0)
    steps = [Step((), ("a1",), 5_000), Step(("q1",))]
    await store.enqueue(tenant, contact("c1", steps=steps, now=T0 + 2), T0 + 2)
    await store.accept(tenant, "r1", "a1", T0 + 3)
    out = await store.complete(tenant, "c0", "a1", 0, "", T0 + 4)
    assert offers(out.events) == [("a1", "c1", "")]


async def test_callback_keeps_place_and_waits_until_due(store: Store, tenant: str) -> None:
    """A scheduled callback leaves the line but keeps its place, and rejoins when due."""
    await store.upsert_agent(tenant, agent("a1"), T0)  # offline, able to call back
    for i in (1, 2, 3):
        await store.enqueue(tenant, contact(f"c{i}", now=T0 + i), T0 + i)
    out = await store.request_callback(tenant, "c2", "+15550100", T0 + 60_000, T0 + 10)
    c2 = out.value
    assert (c2.status, c2.channel, c2.position, c2.hold_ms) == (
        "queued",
        "callback",
        2,
        T0 + 60_000,
    )
    assert (await store.contact_status(tenant, "c2")).hold_ms == T0 + 60_000
    assert (await store.contact_status(tenant, "c3")).hold_ms == 0
    snap = (await store.queue_snapshot(tenant, ["q1"], T0 + 10))[0]
    assert (snap.waiting, snap.held) == (2, 1)  # the scheduled one is counted apart
    assert offers(await ready(store, tenant, agent("a1"), T0 + 20)) == [("a1", "c1", "q1")]
    assert offers(await ready(store, tenant, agent("a2"), T0 + 30)) == [("a2", "c3", "q1")]
    assert offers(await ready(store, tenant, agent("a3"), T0 + 40)) == []
    await store.accept(tenant, "r1", "a1", T0 + 50)
    await store.accept(tenant, "r2", "a2", T0 + 50)
    timers, events = await fire_due(store, tenant, T0 + 60_000)
    assert timers == ["b|c2"]
    assert offers(events) == [("a3", "c2", "q1")]
    assert (await store.contact_status(tenant, "c2")).hold_ms == 0  # released: no longer held
    assert (await store.queue_snapshot(tenant, ["q1"], T0 + 60_000))[0].held == 0


async def test_a_scheduled_callback_is_counted_where_it_will_come_back(
    store: Store, tenant: str
) -> None:
    """A held callback counts in the queues of its current step: it moves with a step
    escalation, is counted once when rescheduled, and not at all once abandoned."""
    await store.upsert_agent(tenant, agent("a1", ["q1", "q2"]), T0)  # offline, able to call back
    steps = [Step(("q1",), (), 5_000), Step(("q2",), (), 0)]
    await store.enqueue(tenant, contact("c1", steps=steps), T0)
    await store.request_callback(tenant, "c1", "", T0 + 60_000, T0 + 1)
    await store.request_callback(tenant, "c1", "", T0 + 90_000, T0 + 2)  # rescheduled

    async def held(now: int) -> tuple[int, int]:
        q1, q2 = await store.queue_snapshot(tenant, ["q1", "q2"], now)
        assert q1.waiting == q2.waiting == 0
        return q1.held, q2.held

    assert await held(T0 + 2) == (1, 0)
    timers, _ = await fire_due(store, tenant, T0 + 5_000)
    assert timers == ["s|c1|0"]
    assert await held(T0 + 5_000) == (0, 1)
    await store.abandon(tenant, "c1", T0 + 6_000)
    assert await held(T0 + 6_000) == (0, 0)


async def test_a_scheduled_callback_waits_from_when_it_is_due(store: Store, tenant: str) -> None:
    """The hour the customer chose to wait for the call is no wait for an agent: speed of
    answer, service level and the queue's oldest wait count from the time it was due (its
    place in line is still its first)."""
    await store.upsert_agent(tenant, agent("a1"), T0)  # offline, able to call back
    await store.enqueue(tenant, contact("c1"), T0)
    await store.request_callback(tenant, "c1", "", T0 + 3_600_000, T0 + 1_000)
    await store.enqueue(tenant, contact("c2", now=T0 + 3_000_000), T0 + 3_000_000)
    await fire_due(store, tenant, T0 + 3_600_500)  # the timer runs half a second late
    (q1,) = await store.queue_snapshot(tenant, ["q1"], T0 + 3_600_500)
    assert (q1.waiting, q1.oldest_enqueued_ms) == (2, T0 + 3_000_000)
    assert offers(await ready(store, tenant, agent("a1"), T0 + 3_605_000)) == [("a1", "c1", "q1")]
    out = await store.accept(tenant, "r1", "a1", T0 + 3_605_000)
    assert (out.value.wait_ms, out.value.within_threshold) == (5_000, True)


async def test_callback_now_is_offered_at_once(store: Store, tenant: str) -> None:
    """A callback for as soon as possible stays in line and goes to a free agent at once."""
    await store.enqueue(tenant, contact("c1", channel="chat"), T0)
    await ready(store, tenant, agent("a1", capacity={"voice": 1}), T0 + 1)
    out = await store.request_callback(tenant, "c1", "", T0, T0 + 2)
    assert offers(out.events) == [("a1", "c1", "q1")]
    assert (await store.agent_status(tenant, "a1")).load == {"voice": 1}
    with pytest.raises(ContactNotWaiting):
        await store.request_callback(tenant, "c1", "", T0, T0 + 3)


async def test_stale_callback_timer_does_not_release_early(store: Store, tenant: str) -> None:
    """A callback rescheduled after its timer was claimed is not released by that claim."""
    await store.upsert_agent(tenant, agent("a1"), T0)  # offline, able to call back
    await store.enqueue(tenant, contact("c1"), T0)
    await store.request_callback(tenant, "c1", "", T0 + 10_000, T0 + 1)
    claim = await store.claim_timers(tenant, T0 + 10_000, 10, LEASE_MS)
    assert claim.timers == ["b|c1"]
    await store.request_callback(tenant, "c1", "", T0 + 50_000, T0 + 10_000)
    stale = await store.fire_timer(tenant, "b|c1", T0 + 10_001)
    assert (stale.value, stale.events) == (False, [])
    assert (await store.queue_snapshot(tenant, ["q1"], T0 + 10_001))[0].waiting == 0
    timers, _ = await fire_due(store, tenant, T0 + 50_000)
    assert timers == ["b|c1"]
    assert (await store.queue_snapshot(tenant, ["q1"], T0 + 50_000))[0].waiting == 1


async def test_a_callback_offer_tells_the_agent_which_number(store: Store, tenant: str) -> None:
    """The offer's view opens with a callback note: the number asked for, or null for the
    contact's own; asking again replaces the note."""
    await store.upsert_agent(tenant, agent("a1"), T0)  # offline, able to call back
    view = '{"contact":{"id":"c1","from":"+15550199"},"customer":{"id":"cu1"}}'
    await store.enqueue(tenant, replace(contact("c1"), view=view), T0)
    await store.request_callback(tenant, "c1", "+15550100", T0 + 60_000, T0 + 1)
    await store.request_callback(tenant, "c1", "", T0 + 60_000, T0 + 2)  # replaces it
    await store.request_callback(tenant, "c1", "+15550111", T0 + 60_000, T0 + 3)
    await ready(store, tenant, agent("a1"), T0 + 4)
    await fire_due(store, tenant, T0 + 60_000)
    [pending] = await store.pending_offers(tenant, "a1")
    assert pending.view == {
        "contact": {"callback": {"number": "+15550111"}, "id": "c1", "from": "+15550199"},
        "customer": {"id": "cu1"},
    }
    await store.accept(tenant, pending.reservation_id, "a1", T0 + 60_001)
    await store.enqueue(tenant, replace(contact("c2", now=T0 + 5), view=view), T0 + 60_002)
    await store.request_callback(tenant, "c2", "", T0, T0 + 60_003)
    await ready(store, tenant, agent("a2"), T0 + 60_004)
    [second] = await store.pending_offers(tenant, "a2")
    assert second.view["contact"] == {"callback": {"number": None}, "id": "c1", "from": "+15550199"}


async def test_position_is_the_best_place_among_the_queues_it_waits_in(
    store: Store, tenant: str
) -> None:
    """After a step escalation a contact waits in two queues and is served by whichever reaches
    it first: its position is its best place (first in q2, third in q1), each line listed with
    its own place and staffing; held for a callback, it keeps those places."""
    await store.upsert_agent(tenant, agent("a1"), T0)
    await store.set_agent_state(tenant, "a1", "away", T0)  # staffed, takes nothing
    for aid in ("a2", "a3"):
        await store.upsert_agent(tenant, agent(aid, ["q2"]), T0)
        await store.set_agent_state(tenant, aid, "away", T0)
    await store.enqueue(tenant, contact("c1"), T0)
    await store.enqueue(tenant, contact("c2", now=T0 + 1), T0 + 1)
    steps = [Step(("q1",), (), 5_000), Step(("q1", "q2"))]
    out = await store.enqueue(tenant, contact("c3", steps=steps, now=T0 + 2), T0 + 2)
    c3 = out.value.contact
    assert (c3.position, c3.staffed, c3.lines) == (3, 1, [("q1", 3, 1)])
    timers, _ = await fire_due(store, tenant, T0 + 5_002)
    assert timers == ["s|c3|0"]
    c3 = await store.contact_status(tenant, "c3")
    assert (c3.position, c3.staffed, c3.lines) == (1, 2, [("q1", 3, 1), ("q2", 1, 2)])
    held = await store.request_callback(tenant, "c3", "", T0 + 60_000, T0 + 5_003)
    assert (held.value.position, held.value.lines) == (1, [("q1", 3, 1), ("q2", 1, 2)])
    assert (await store.contact_status(tenant, "c2")).lines == [("q1", 2, 1)]


async def test_position_leaves_out_a_line_nobody_staffs(store: Store, tenant: str) -> None:
    """First in a queue nobody is signed in to, third in one somebody staffs: its position is
    3 (the first line cannot serve it now); with nobody staffing either, its best place."""
    await store.upsert_agent(tenant, agent("a1"), T0)
    await store.set_agent_state(tenant, "a1", "away", T0)  # staffs q1, takes nothing
    await store.upsert_agent(tenant, agent("a2", ["q2"]), T0)  # q2's only member: offline
    await store.enqueue(tenant, contact("c1"), T0)
    await store.enqueue(tenant, contact("c2", now=T0 + 1), T0 + 1)
    out = await store.enqueue(tenant, contact("c3", steps=[Step(("q1", "q2"))], now=T0 + 2), T0 + 2)
    c3 = out.value.contact
    assert (c3.position, c3.staffed, c3.lines) == (3, 1, [("q1", 3, 1), ("q2", 1, 0)])
    await store.set_agent_state(tenant, "a1", "offline", T0 + 3)
    c3 = await store.contact_status(tenant, "c3")
    assert (c3.position, c3.staffed, c3.lines) == (1, 0, [("q1", 3, 0), ("q2", 1, 0)])


async def test_a_callback_nobody_could_make_is_refused(store: Store, tenant: str) -> None:
    """A callback is a voice call: with no member of a queue of the contact's current or later
    steps, nor an agent they name, having voice capacity, it is refused and nothing changes.
    A member with voice capacity, even offline, or a later step's queue, makes it possible."""
    await ready(store, tenant, agent("a1", capacity={"chat": 2}), T0)
    await store.enqueue(tenant, contact("c1"), T0)
    named = [Step(("q1",), ("a1",))]
    await store.enqueue(tenant, contact("c2", steps=named, now=T0 + 1), T0 + 1)
    later = [Step(("q1",), (), 5_000), Step(("q2",))]
    await store.enqueue(tenant, contact("c3", steps=later, now=T0 + 2), T0 + 2)
    before = [await store.contact_status(tenant, c) for c in ("c1", "c2", "c3")]
    for cid in ("c1", "c2", "c3"):
        for not_before in (T0, T0 + 60_000):
            with pytest.raises(CallbackUnavailable):
                await store.request_callback(tenant, cid, "+15550100", not_before, T0 + 3)
    assert [await store.contact_status(tenant, c) for c in ("c1", "c2", "c3")] == before
    (q1,) = await store.queue_snapshot(tenant, ["q1"], T0 + 3)
    assert (q1.waiting, q1.held) == (3, 0)
    claim = await store.claim_timers(tenant, T0 + 60_000, 100, LEASE_MS)
    assert [t for t in claim.timers if t.startswith("b|")] == []
    await store.upsert_agent(tenant, agent("a2", ["q2"], capacity={"voice": 1}), T0 + 4)
    out = await store.request_callback(tenant, "c3", "", T0 + 60_000, T0 + 5)
    assert (out.value.channel, out.value.hold_ms) == ("callback", T0 + 60_000)
    with pytest.raises(CallbackUnavailable):
        await store.request_callback(tenant, "c1", "", T0, T0 + 6)
    await store.upsert_agent(tenant, agent("a3", capacity={"voice": 1}), T0 + 7)  # offline
    for cid in ("c1", "c2"):
        out = await store.request_callback(tenant, cid, "", T0 + 60_000, T0 + 8)
        assert out.value.channel == "callback"
    # an agent the step names, with voice capacity, can make it too
    await store.upsert_agent(tenant, agent("a4", (), capacity={"voice": 1}), T0 + 9)
    await store.enqueue(tenant, contact("c4", steps=[Step((), ("a4",))], now=T0 + 9), T0 + 9)
    out = await store.request_callback(tenant, "c4", "", T0, T0 + 10)
    assert (out.value.status, out.value.channel) == ("queued", "callback")
