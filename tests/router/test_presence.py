"""Agent presence across instances: two apps on one Redis, each holding sockets of one agent.

An agent goes offline when it has no socket left on any live instance: not when a socket closes
on one instance while another holds one, nor when an old socket times out after the desk
reconnected elsewhere. An instance that shuts down (or dies) keeps its sockets counted until
another instance sweeps it, a few beats later.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import WSMsgType

from queues.contract import Event, Outcome, Presence
from queues.errors import StoreUnavailable
from queues.memory import MemoryStore
from router import appkeys as k
from router.clock import ManualClock
from router.hub import Hub
from router.presence import Presence as InstancePresence
from tests.contract.conftest import agent
from tests.router.conftest import Api, ApiFactory, bearer


async def test_a_socket_closing_on_one_instance_keeps_the_agent_on_another(
    make_api: ApiFactory,
) -> None:
    """Ann has a tab on A and one on B: closing A's keeps her available with her offer, and
    closing B's, her last, sets her offline."""
    a = await make_api()
    b = await make_api()
    await a.agent("ann", billing=5)
    on_a = await a.ws("ann")
    on_b = await b.ws("ann")
    await on_a.recv("state")
    await on_b.recv("state")
    await a.state("ann", "available")
    contact = await a.contact()
    assert contact["agent_id"] == "ann"
    await on_b.recv("offer")
    await on_a.close()
    await asyncio.sleep(0.5)
    agent = await b.get("/v1/agents/ann")
    assert (agent["state"], agent["reservations"]) == ("available", [contact["reservation_id"]])
    await on_b.silent("rescinded", 0.1)
    await on_b.close()
    agent = await a.until("/v1/agents/ann", lambda x: x["state"] == "offline")
    assert agent["reservations"] == []


async def test_a_dead_socket_timing_out_after_a_reconnect_keeps_the_agent(
    make_api: ApiFactory,
) -> None:
    """The desk loses A's connection (its socket there goes silent) and reconnects to B; when
    A's heartbeat timeout closes the dead socket, the agent stays available."""
    a = await make_api()
    b = await make_api()
    await a.agent("ann", billing=5)
    token = await a.token("ann")
    dead = await a.client.ws_connect("/v1/agents/ann/ws", headers=bearer(token), autoping=False)
    await a.state("ann", "available")
    on_b = await b.ws("ann")
    assert (await on_b.recv("state"))["state"] == "available"
    started = time.monotonic()
    while True:  # never answer a ping: A closes the socket after its heartbeat timeout
        msg = await dead.receive(timeout=5)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            break
    await dead.close()
    assert dead.close_code == 4000
    assert time.monotonic() - started < 3
    await asyncio.sleep(0.5)
    assert (await b.get("/v1/agents/ann"))["state"] == "available"
    await on_b.silent("state", 0.1)


async def test_a_shut_down_instance_is_swept_after_its_timeout(make_api: ApiFactory) -> None:
    """A shuts down: its sockets close without changing any state, the desk that reconnects to
    B stays available, and the one that does not goes offline once B sweeps A."""
    a = await make_api(instance_timeout_seconds=0.6)
    b = await make_api(instance_timeout_seconds=0.6)
    for aid in ("ann", "bob"):
        await a.agent(aid, billing=5)
        desk = await a.ws(aid)
        await desk.recv("state")
        await a.state(aid, "available")
    await a.client.server.close()
    shut = time.monotonic()
    await asyncio.sleep(0.1)
    states = [(await b.get(f"/v1/agents/{aid}"))["state"] for aid in ("ann", "bob")]
    assert states == ["available", "available"]  # nothing went offline at the close
    back = await b.ws("ann")
    assert (await back.recv("state"))["state"] == "available"
    await b.until("/v1/agents/bob", lambda x: x["state"] == "offline", within=5)
    assert time.monotonic() - shut < 3
    # B beats for ann's socket there: she stays available well past B's own timeout
    await asyncio.sleep(1.5)
    assert (await b.get("/v1/agents/ann"))["state"] == "available"


async def test_an_instance_swept_while_alive_sends_its_sockets_again(
    make_api: ApiFactory, api: Api
) -> None:
    """A cut off past its timeout is swept (its agent set offline); at its next beat it records
    its sockets again, so a tab of the agent closing on B later keeps the agent present."""
    a = await make_api(instance_timeout_seconds=0.6)
    await a.agent("ann", billing=5)
    desk = await a.ws("ann")
    await desk.recv("state")
    presence = a.client.app[k.PRESENCE]
    store = presence.store
    await asyncio.sleep(0.5)  # (A beats)
    assert presence.dirty == set()
    # what another instance's timer loop does once A's deadline has passed
    later = presence.clock.now_ms() + 10_000
    assert (await store.fire_timer(api.tenant, f"i|{presence.instance}", later)).value is True
    await a.until("/v1/agents/ann", lambda x: x["state"] == "offline")
    await asyncio.sleep(0.5)  # A beats: unknown, so it sends its sockets
    await a.state("ann", "available")
    tab = await api.ws("ann")
    await tab.recv("state")
    await tab.close()
    await asyncio.sleep(0.3)
    assert (await a.get("/v1/agents/ann"))["state"] == "available"


class _Flaky(MemoryStore):
    """The memory store, with its next socket_closed lost on the way (Redis unreachable)."""

    lose_next_close = True

    async def socket_closed(
        self, tenant: str, agent_id: str, instance: str, sockets: int, now: int
    ) -> Outcome[Presence]:
        if self.lose_next_close:
            self.lose_next_close = False
            raise StoreUnavailable("redis unavailable: test")
        return await super().socket_closed(tenant, agent_id, instance, sockets, now)


async def test_a_close_that_did_not_reach_the_store_is_sent_with_the_next_beat() -> None:
    """A socket_closed that failed is made good by the next beat, which sends the instance's
    sockets: the agent, left with none, goes offline then."""
    store = _Flaky()
    clock = ManualClock(1_700_000_000_000)
    hub = Hub()
    events: list[Event] = []
    presence = InstancePresence(store, clock, hub, "i1", 30.0, events.extend, asyncio.Event())
    core = store.core("t")
    core.upsert_agent(agent("ann"), clock.now_ms())
    core.set_agent_state("ann", "available", clock.now_ms())
    socket: Any = object()  # what the hub holds (the presence calls only count them)
    hub.agents[("t", "ann")].add(socket)
    await presence.opened("t", "ann")
    await presence.beat()
    assert presence.dirty == set()
    hub.remove_agent("t", "ann", socket)
    await presence.closed("t", "ann")
    assert (core.agents["ann"].st, presence.dirty) == ("available", {"t"})
    await presence.beat()
    assert (core.agents["ann"].st, presence.dirty) == ("offline", set())
    assert [e["t"] for e in events] == ["state"]


class _Counting(MemoryStore):
    """The memory store, keeping the socket lists instance_beat was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.synced: list[dict[str, int]] = []

    async def instance_beat(
        self,
        tenant: str,
        instance: str,
        now: int,
        timeout_ms: int,
        sockets: dict[str, int] | None = None,
    ) -> Outcome[Presence]:
        if sockets is not None:
            self.synced.append(dict(sockets))
        return await super().instance_beat(tenant, instance, now, timeout_ms, sockets)


async def test_a_new_instance_does_not_send_all_its_sockets_again() -> None:
    """The first socket of a new instance finds no record of it, which is no loss (each socket
    is told on its own): its beats stay liveness alone, where sending every socket is one long
    script with thousands of agents (it cost the 10,000-agent benchmark a p99 of 12-20 ms
    against 4). Once recorded, a call that finds no record (swept) does send them all."""
    store = _Counting()
    clock = ManualClock(1_700_000_000_000)
    hub = Hub()
    presence = InstancePresence(store, clock, hub, "i1", 30.0, lambda _: None, asyncio.Event())
    core = store.core("t")
    for name in ("ann", "ben"):
        core.upsert_agent(agent(name), clock.now_ms())
        hub.agents[("t", name)].add(object())  # type: ignore[arg-type]
        await presence.opened("t", name)
    await presence.beat()
    await presence.beat()
    assert store.synced == []
    later = clock.now_ms() + 60_000
    assert (await store.fire_timer("t", "i|i1", later)).value is True  # swept
    clock.ms = later
    await presence.beat()
    assert store.synced == [{"ann": 1, "ben": 1}]
