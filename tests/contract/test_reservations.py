"""Store contract, contact side: enqueue, accept, reject, abandon, priority and idempotency.

Every test runs on both stores (see ``conftest.store``).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from queues.contract import Store
from queues.errors import (
    Conflict,
    ContactNotFound,
    ContactNotWaiting,
    Forbidden,
    IdempotencyConflict,
    NotYourReservation,
    ReservationExpired,
    ReservationNotFound,
    ReservationNotPending,
)
from tests.contract.conftest import OFFER_MS, SL_MS, T0, agent, contact, kinds, offers, ready


async def test_enqueue_without_agents_waits(store: Store, tenant: str) -> None:
    """With nobody free the contact is queued at position 1 and nothing is offered."""
    out = await store.enqueue(tenant, contact("c1"), T0)
    c = out.value.contact
    assert out.value.replay is False
    assert (c.id, c.status, c.channel, c.queue) == ("c1", "queued", "voice", "q1")
    assert (c.position, c.staffed, c.agent_id, c.reservation_id) == (1, 0, None, None)
    assert c.doc == {"id": "c1", "channel": "voice"}
    assert out.events == []


async def test_enqueue_reserves_free_agent_at_once(store: Store, tenant: str) -> None:
    """A free agent is reserved in the enqueue call itself, with an offer that expires."""
    await ready(store, tenant, agent("a1"))
    out = await store.enqueue(tenant, contact("c1", now=T0 + 5), T0 + 5)
    assert out.events == [
        {"t": "offer", "a": "a1", "r": "r1", "c": "c1", "x": T0 + 5 + OFFER_MS, "q": "q1"}
    ]
    c = out.value.contact
    assert (c.status, c.agent_id, c.reservation_id, c.position) == ("offered", "a1", "r1", None)
    a1 = await store.agent_status(tenant, "a1")
    assert (a1.load, a1.reservations) == ({"voice": 1}, ["r1"])
    pending = await store.pending_offers(tenant, "a1")
    assert [(p.reservation_id, p.contact_id, p.expires_ms, p.queue, p.view) for p in pending] == [
        ("r1", "c1", T0 + 5 + OFFER_MS, "q1", {"contact": "c1"})
    ]


async def test_accept_assigns_the_contact(store: Store, tenant: str) -> None:
    """Accepting makes the contact assigned and reports the wait against the threshold."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    out = await store.accept(tenant, "r1", "a1", T0 + 4_000)
    assert (out.value.wait_ms, out.value.within_threshold) == (4_000, True)
    assert out.value.contact.status == "assigned"
    assert out.events == [{"t": "assigned", "a": "a1", "r": "r1", "c": "c1"}]
    a1 = await store.agent_status(tenant, "a1")
    assert (a1.load, a1.reservations) == ({"voice": 1}, [])
    assert await store.pending_offers(tenant, "a1") == []


async def test_accept_after_threshold_is_outside_service_level(store: Store, tenant: str) -> None:
    """A contact answered after its service-level threshold is not within it."""
    await store.enqueue(tenant, contact("c1"), T0)
    await ready(store, tenant, agent("a1"), T0 + SL_MS)
    out = await store.accept(tenant, "r1", None, T0 + SL_MS + 1)
    assert (out.value.wait_ms, out.value.within_threshold) == (SL_MS + 1, False)


async def test_accept_by_another_agent_is_forbidden(store: Store, tenant: str) -> None:
    """Only the reserved agent (or an admin) may accept; the offer stays pending."""
    await ready(store, tenant, agent("a1"))
    await store.upsert_agent(tenant, agent("a2"), T0)
    await store.enqueue(tenant, contact("c1"), T0)
    with pytest.raises(NotYourReservation) as err:
        await store.accept(tenant, "r1", "a2", T0 + 1)
    assert isinstance(err.value, Forbidden)
    assert err.value.ids == {"reservation": "r1"}
    assert (await store.contact_status(tenant, "c1")).status == "offered"
    assert (await store.accept(tenant, "r1", None, T0 + 2)).value.contact.agent_id == "a1"


async def _reads(store: Store, tenant: str) -> list[object]:
    """Everything the public reads show of the tenant of the accept tests."""
    return [
        *[await store.contact_status(tenant, c) for c in ("c1", "c2")],
        *[await store.agent_status(tenant, a) for a in ("a1", "a2")],
        await store.pending_offers(tenant, "a1"),
        await store.queue_snapshot(tenant, ["q1"], T0 + 60_000),
        await store.claim_timers(tenant, T0, 10, 0),  # (now T0: nothing is due, nothing leased)
    ]


async def test_accept_again_answers_as_the_first_and_changes_nothing(
    store: Store, tenant: str
) -> None:
    """A repeated accept (a desk retrying after a lost reply), by the agent or an admin, answers
    as the first did, its wait from the recorded answer time even past the offer's expiry and
    the threshold, with no events, nothing counted again and nothing else changed."""
    await ready(store, tenant, agent("a1"))
    await store.upsert_agent(tenant, agent("a2"), T0)
    await store.enqueue(tenant, contact("c1"), T0)
    await store.enqueue(tenant, contact("c2", now=T0 + 1), T0 + 1)
    first = await store.accept(tenant, "r1", "a1", T0 + 4_000)
    assert (first.value.wait_ms, first.value.within_threshold, first.value.replay) == (
        4_000,
        True,
        False,
    )
    before = await _reads(store, tenant)
    assert before[2].contacts == ["c1"]  # type: ignore[attr-defined]
    for acting, now in (("a1", T0 + 4_001), (None, T0 + OFFER_MS + SL_MS), ("a1", T0 + 86_000_000)):
        again = await store.accept(tenant, "r1", acting, now)
        assert again.value == replace(first.value, replay=True)
        assert again.events == []
        assert await _reads(store, tenant) == before


async def test_accept_again_by_another_agent_is_forbidden(store: Store, tenant: str) -> None:
    """Another agent repeating an accepted reservation's accept is refused as before."""
    await ready(store, tenant, agent("a1"))
    await store.upsert_agent(tenant, agent("a2"), T0)
    await store.enqueue(tenant, contact("c1"), T0)
    await store.accept(tenant, "r1", "a1", T0 + 1)
    with pytest.raises(NotYourReservation):
        await store.accept(tenant, "r1", "a2", T0 + 2)


@pytest.mark.parametrize("wrap_ms", [0, 5_000])
async def test_accept_again_once_the_contact_is_done_is_a_conflict(
    store: Store, tenant: str, wrap_ms: int
) -> None:
    """Once its contact is completed (wrapping, then ended), a repeated accept is a conflict."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    await store.accept(tenant, "r1", "a1", T0 + 1)
    await store.complete(tenant, "c1", "a1", wrap_ms, "", T0 + 2)
    with pytest.raises(ReservationNotPending) as err:
        await store.accept(tenant, "r1", "a1", T0 + 3)
    assert isinstance(err.value, Conflict)
    if wrap_ms:
        assert (await store.fire_timer(tenant, "w|c1", T0 + 2 + wrap_ms)).value is True
        with pytest.raises(ReservationNotPending):
            await store.accept(tenant, "r1", None, T0 + 3 + wrap_ms)
    assert (await store.contact_status(tenant, "c1")).status == "completed"


async def test_an_agent_lists_the_contacts_it_holds(store: Store, tenant: str) -> None:
    """An agent's ``contacts`` are those it accepted and still holds, assigned or wrapping, in
    the order accepted; offers are not among them, and each leaves as its contact completes."""
    await ready(store, tenant, agent("a1", capacity={"chat": 3}))
    for i in (1, 2, 3):
        await store.enqueue(tenant, contact(f"c{i}", channel="chat", now=T0 + i), T0 + i)

    async def held() -> list[str]:
        return (await store.agent_status(tenant, "a1")).contacts

    assert await held() == []
    await store.accept(tenant, "r2", "a1", T0 + 10)
    await store.accept(tenant, "r1", None, T0 + 11)
    assert await held() == ["c2", "c1"]
    await store.complete(tenant, "c2", "a1", 5_000, "", T0 + 12)
    assert await held() == ["c2", "c1"]  # wrapping: still its capacity
    state, _ = (await store.set_agent_state(tenant, "a1", "away", T0 + 13)).value
    assert state.contacts == ["c2", "c1"]
    await store.complete(tenant, "c1", None, 0, "", T0 + 14)
    assert await held() == ["c2"]
    await store.fire_timer(tenant, "w|c2", T0 + 12 + 5_000)
    assert await held() == []
    await store.accept(tenant, "r3", "a1", T0 + 20_000)
    state, _ = (
        await store.upsert_agent(tenant, agent("a1", capacity={"chat": 1}), T0 + 20_001)
    ).value
    assert state.contacts == ["c3"]
    offline, _ = (await store.set_agent_state(tenant, "a1", "offline", T0 + 20_002)).value
    assert (offline.contacts, offline.load) == (["c3"], {"chat": 1})


async def test_accept_after_expiry_is_a_conflict(store: Store, tenant: str) -> None:
    """Once the lease has run out the offer cannot be accepted, even before its timer fires."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    with pytest.raises(ReservationExpired) as err:
        await store.accept(tenant, "r1", "a1", T0 + OFFER_MS)
    assert isinstance(err.value, Conflict)
    assert (await store.accept(tenant, "r1", "a1", T0 + OFFER_MS - 1)).value.wait_ms == (
        OFFER_MS - 1
    )


async def test_unknown_reservation_is_not_found(store: Store, tenant: str) -> None:
    """Accepting or rejecting a reservation that never existed raises ReservationNotFound."""
    with pytest.raises(ReservationNotFound):
        await store.accept(tenant, "r42", None, T0)
    with pytest.raises(ReservationNotFound):
        await store.reject(tenant, "r42", "a1", T0)


async def test_reject_keeps_place_and_offers_next_agent(store: Store, tenant: str) -> None:
    """A rejected contact keeps its place in line; the rejecting agent takes the next one."""
    await ready(store, tenant, agent("a1"))
    for i in (1, 2, 3):
        await store.enqueue(tenant, contact(f"c{i}", now=T0 + i), T0 + i)
    out = await store.reject(tenant, "r1", "a1", T0 + 10)
    assert out.value == "c1"
    assert offers(out.events) == [("a1", "c2", "q1")]
    c1, c3 = [await store.contact_status(tenant, c) for c in ("c1", "c3")]
    assert (c1.status, c1.position, c3.position) == ("queued", 1, 2)
    got = await ready(store, tenant, agent("a2"), T0 + 20)
    assert offers(got) == [("a2", "c1", "q1")]


async def test_rejected_contact_never_returns_to_that_agent(store: Store, tenant: str) -> None:
    """After a reject the agent is never offered that contact again, but others are."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    out = await store.reject(tenant, "r1", None, T0 + 1)
    assert kinds(out.events) == []
    await store.set_agent_state(tenant, "a1", "away", T0 + 2)
    back = await store.set_agent_state(tenant, "a1", "available", T0 + 3)
    assert offers(back.events) == []
    await store.enqueue(tenant, contact("c2", now=T0 + 4), T0 + 4)
    a1 = await store.agent_status(tenant, "a1")
    assert (a1.load, a1.reservations) == ({"voice": 1}, ["r2"])
    assert offers(await ready(store, tenant, agent("a2"), T0 + 5)) == [("a2", "c1", "q1")]


async def test_reject_wrong_agent_or_twice(store: Store, tenant: str) -> None:
    """Rejecting another agent's offer is forbidden; rejecting twice is a conflict."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    with pytest.raises(NotYourReservation):
        await store.reject(tenant, "r1", "a2", T0 + 1)
    await store.reject(tenant, "r1", "a1", T0 + 2)
    with pytest.raises(ReservationNotPending):
        await store.reject(tenant, "r1", "a1", T0 + 3)
    with pytest.raises(ReservationNotPending):
        await store.accept(tenant, "r1", "a1", T0 + 4)


async def test_abandon_while_queued(store: Store, tenant: str) -> None:
    """A queued contact that abandons leaves the line and counts as a short abandon."""
    await store.enqueue(tenant, contact("c1"), T0)
    out = await store.abandon(tenant, "c1", T0 + 3_000)
    v = out.value
    assert (v.changed, v.wait_ms, v.short, v.contact.status) == (True, 3_000, True, "abandoned")
    assert out.events == [{"t": "contact", "c": "c1", "s": "abandoned"}]
    (snap,) = await store.queue_snapshot(tenant, ["q1"], T0 + 3_000)
    assert (snap.waiting, snap.oldest_enqueued_ms) == (0, None)
    assert snap.stats == {"offered": 1, "abandoned": 1, "abandoned_short": 1}
    again = await store.abandon(tenant, "c1", T0 + 4_000)
    assert (again.value.changed, again.value.wait_ms, again.events) == (False, 0, [])


async def test_abandon_while_offered_rescinds(store: Store, tenant: str) -> None:
    """Abandoning an offered contact rescinds the offer and the agent takes the next contact."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    await store.enqueue(tenant, contact("c2", now=T0 + 1), T0 + 1)
    out = await store.abandon(tenant, "c1", T0 + SL_MS)
    assert (out.value.changed, out.value.wait_ms, out.value.short) == (True, SL_MS, False)
    assert kinds(out.events) == ["rescind", "contact", "offer"]
    assert out.events[0] == {"t": "rescind", "a": "a1", "r": "r1", "c": "c1", "why": "abandoned"}
    assert offers(out.events) == [("a1", "c2", "q1")]
    with pytest.raises(ReservationNotPending):
        await store.accept(tenant, "r1", "a1", T0 + SL_MS + 1)
    assert (await store.contact_status(tenant, "c1")).agent_id is None


async def test_cancel_withdraws_without_counting_an_abandon(store: Store, tenant: str) -> None:
    """The gateway withdraws a contact: queued or offered, it ends ``cancelled`` (an offer is
    rescinded with that reason), counted apart from abandons; a repeat changes nothing, and an
    abandoned contact cannot be cancelled."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    await store.enqueue(tenant, contact("c2", now=T0 + 1), T0 + 1)
    await store.enqueue(tenant, contact("c3", now=T0 + 2), T0 + 2)
    offered = await store.abandon(tenant, "c1", T0 + 5_000, "cancelled")
    assert (offered.value.changed, offered.value.contact.status) == (True, "cancelled")
    assert offered.events[0] == {
        "t": "rescind",
        "a": "a1",
        "r": "r1",
        "c": "c1",
        "why": "cancelled",
    }
    assert offers(offered.events) == [("a1", "c2", "q1")]
    queued = await store.abandon(tenant, "c3", T0 + 6_000, "cancelled")
    assert queued.events == [{"t": "contact", "c": "c3", "s": "cancelled"}]
    (snap,) = await store.queue_snapshot(tenant, ["q1"], T0 + 6_000)
    assert (snap.waiting, snap.stats.get("abandoned"), snap.stats["cancelled"]) == (0, None, 2)
    again = await store.abandon(tenant, "c3", T0 + 7_000, "cancelled")
    assert (again.value.changed, again.events) == (False, [])
    with pytest.raises(ContactNotWaiting):
        await store.abandon(tenant, "c3", T0 + 7_000)  # cancelled, so not abandoned after


async def test_abandon_after_accept_is_a_conflict(store: Store, tenant: str) -> None:
    """Once an agent has the contact it can no longer abandon the queue."""
    await ready(store, tenant, agent("a1"))
    await store.enqueue(tenant, contact("c1"), T0)
    await store.accept(tenant, "r1", "a1", T0 + 1)
    with pytest.raises(ContactNotWaiting) as err:
        await store.abandon(tenant, "c1", T0 + 2)
    assert isinstance(err.value, Conflict)
    assert err.value.ids == {"contact": "c1"}
    with pytest.raises(ContactNotFound):
        await store.abandon(tenant, "nobody", T0 + 2)


async def test_priority_is_wait_credit(store: Store, tenant: str) -> None:
    """A later contact with more credit (lower enqueued - priority) is served first."""
    await store.upsert_agent(tenant, agent("a1"), T0)
    await store.enqueue(tenant, contact("c1", now=T0), T0)
    later = contact("c2", now=T0 + 10_000, priority_ms=30_000)
    assert (await store.enqueue(tenant, later, T0 + 10_000)).value.contact.position == 1
    assert (await store.contact_status(tenant, "c1")).position == 2
    got = await store.set_agent_state(tenant, "a1", "available", T0 + 11_000)
    assert offers(got.events) == [("a1", "c2", "q1")]


async def test_priority_compares_across_queues(store: Store, tenant: str) -> None:
    """An agent in two queues takes the lowest sort key of either."""
    await store.upsert_agent(tenant, agent("a1", ["q1", "q2"]), T0)
    await store.enqueue(tenant, contact("c1", ["q1"], now=T0), T0)
    await store.enqueue(
        tenant, contact("c2", ["q2"], now=T0 + 1_000, priority_ms=2_000), T0 + 1_000
    )
    got = await store.set_agent_state(tenant, "a1", "available", T0 + 2_000)
    assert offers(got.events) == [("a1", "c2", "q2")]


async def test_equal_sort_keys_break_ties_by_id(store: Store, tenant: str) -> None:
    """Contacts with equal sort keys are served in byte order of their ids."""
    await store.upsert_agent(tenant, agent("a1", capacity={"chat": 2}), T0)
    await store.enqueue(tenant, contact("c9", channel="chat"), T0)
    await store.enqueue(tenant, contact("c10", channel="chat"), T0)
    got = await store.set_agent_state(tenant, "a1", "available", T0 + 1)
    assert offers(got.events) == [("a1", "c10", "q1"), ("a1", "c9", "q1")]


async def test_idempotent_replay_returns_the_same_contact(store: Store, tenant: str) -> None:
    """The same Idempotency-Key and body hash replays the first contact and creates nothing."""
    await ready(store, tenant, agent("a1"))
    first = await store.enqueue(tenant, contact("c1", idempotency=("k1", "h1")), T0)
    again = await store.enqueue(tenant, contact("c2", idempotency=("k1", "h1")), T0 + 1)
    assert (first.value.replay, again.value.replay) == (False, True)
    assert (again.value.contact.id, again.value.contact.status, again.events) == (
        "c1",
        "offered",
        [],
    )
    with pytest.raises(ContactNotFound):
        await store.contact_status(tenant, "c2")


async def test_idempotency_key_with_another_body_conflicts(store: Store, tenant: str) -> None:
    """The same Idempotency-Key with another body hash raises IdempotencyConflict."""
    await store.enqueue(tenant, contact("c1", idempotency=("k1", "h1")), T0)
    with pytest.raises(IdempotencyConflict) as err:
        await store.enqueue(tenant, contact("c2", idempotency=("k1", "h2")), T0 + 1)
    assert isinstance(err.value, Conflict)
    assert err.value.ids == {"contact": "c2", "first": "c1"}  # the contact the key made
    (snap,) = await store.queue_snapshot(tenant, ["q1"], T0 + 1)
    assert snap.waiting == 1


async def test_a_waiting_contacts_view_can_be_replaced(store: Store, tenant: str) -> None:
    """A contact's view (what its offers carry) can be replaced while it waits or is on offer,
    and only from the text it had: an offer made after sees the new view."""
    await store.enqueue(tenant, contact("c1"), T0)
    old = await store.contact_view(tenant, "c1")
    assert old is not None
    assert json.loads(old) == {"contact": "c1"}
    new = json.dumps({"contact": "c1", "customer": {"name": "Ana"}})
    assert await store.replace_view(tenant, "c1", '{"stale":1}', new) is False
    assert await store.replace_view(tenant, "c1", old, new) is True
    assert await store.contact_view(tenant, "c1") == new
    await ready(store, tenant, agent("a1"), T0 + 1)
    (pending,) = await store.pending_offers(tenant, "a1")
    assert pending.view == {"contact": "c1", "customer": {"name": "Ana"}}
    await store.accept(tenant, pending.reservation_id, "a1", T0 + 2)
    assert await store.contact_view(tenant, "c1") is None  # past waiting
    assert await store.replace_view(tenant, "c1", new, old) is False
    assert await store.contact_view(tenant, "nobody") is None
