"""Store contract, the reads a config reload checks workflows with: ``list_contacts`` finds the
contacts in line (in queues, for agents by name, held for a callback) and ``workflow_queues``
gives the queues each contact under way may still wait in. Every test runs on both stores.
"""

from __future__ import annotations

from queues.contract import Step, Store
from tests.contract.conftest import T0, agent, contact, ready

ESCALATES = [Step(("q1",), (), 20_000), Step(("q2", "q1"), (), 20_000), Step(("q3",))]


async def test_contacts_in_line_are_listed_once_in_id_order(store: Store, tenant: str) -> None:
    """A contact waiting in two queues is listed once; one in a queue not asked for is not."""
    await store.enqueue(tenant, contact("c2", ("q1", "q2")), T0)
    await store.enqueue(tenant, contact("c1", ("q1",)), T0 + 1)
    await store.enqueue(tenant, contact("c3", ("q3",)), T0 + 2)
    assert await store.list_contacts(tenant, ["q1", "q2"], []) == ["c1", "c2"]
    assert await store.list_contacts(tenant, ["q3"], []) == ["c3"]
    assert await store.list_contacts(tenant, [], []) == []


async def test_contacts_waiting_for_an_agent_by_name_are_listed(store: Store, tenant: str) -> None:
    """A step naming an agent alone puts the contact in no queue's line, but in the agent's."""
    await ready(store, tenant, agent("a1", ()), T0)
    await store.set_agent_state(tenant, "a1", "away", T0)
    steps = [Step((), ("a1",), 20_000), Step(("q2",))]
    await store.enqueue(tenant, contact("c1", steps=steps, channel="chat"), T0)
    assert await store.list_contacts(tenant, ["q2"], []) == []
    assert await store.list_contacts(tenant, [], ["a1", "a2"]) == ["c1"]


async def test_held_callbacks_are_listed(store: Store, tenant: str) -> None:
    """A callback held at a step naming queues is in their held line; one held at a step
    naming an agent alone is in no line, and only ``callbacks`` finds it."""
    await store.upsert_agent(tenant, agent("a1", ("q1",)), T0)  # offline: nobody is free
    await store.enqueue(tenant, contact("c1", ("q1",)), T0)
    await store.request_callback(tenant, "c1", "", T0 + 60_000, T0 + 1)
    await ready(store, tenant, agent("a2", ()), T0)
    await store.set_agent_state(tenant, "a2", "away", T0)
    named = [Step((), ("a2",), 20_000), Step(("q2",))]
    await store.enqueue(tenant, contact("c2", steps=named), T0 + 2)
    await store.request_callback(tenant, "c2", "", T0 + 60_000, T0 + 3)
    assert (await store.contact_status(tenant, "c2")).hold_ms == T0 + 60_000
    assert await store.list_contacts(tenant, ["q1", "q2"], ["a2"]) == ["c1"]
    assert await store.list_contacts(tenant, [], [], callbacks=True) == ["c1", "c2"]


async def test_workflow_queues_are_those_of_the_steps_ahead(store: Store, tenant: str) -> None:
    """The queues of the current step and the later ones, each once; a step passed no more."""
    await store.enqueue(tenant, contact("c1", steps=ESCALATES), T0)
    assert await store.workflow_queues(tenant, ["c1"]) == {"c1": ["q1", "q2", "q3"]}
    await store.fire_timer(tenant, "s|c1|0", T0 + 20_000)
    await store.fire_timer(tenant, "s|c1|1", T0 + 40_000)
    assert await store.workflow_queues(tenant, ["c1"]) == {"c1": ["q3"]}


async def test_workflow_queues_cover_offers_and_leave_out_the_rest(
    store: Store, tenant: str
) -> None:
    """An offered contact has its steps ahead; an assigned, an ended or an unknown one none."""
    await ready(store, tenant, agent("a1", ("q1",), capacity={"chat": 3}), T0)
    for cid in ("c1", "c2", "c3"):
        await store.enqueue(tenant, contact(cid, steps=ESCALATES, channel="chat"), T0)
    await store.accept(tenant, "r2", "a1", T0 + 1)
    await store.abandon(tenant, "c3", T0 + 2)
    got = await store.workflow_queues(tenant, ["c1", "c2", "c3", "ghost"])
    assert got == {"c1": ["q1", "q2", "q3"]}
    assert (await store.contact_status(tenant, "c1")).status == "offered"
