"""The contract suite's fixtures: one ``store`` per implementation, and builders for its inputs.

Every test in ``tests/contract`` that takes ``store`` runs twice, on ``MemoryStore`` and on
``RedisStore`` over the session's real redis-server; the Redis run is marked ``redis`` so
``-m "not redis"`` keeps the memory run offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence

import pytest
from redis.asyncio import Redis

from queues.contract import AgentSpec, Event, NewContact, Step, Store
from queues.memory import MemoryStore
from queues.redis_store import RedisStore

#: A fixed "now" (ms); tests move time forward from here.
T0 = 1_700_000_000_000
#: Offer timeout every queue gets unless a test says otherwise (ms).
OFFER_MS = 30_000
#: Service-level threshold of every contact (ms).
SL_MS = 20_000
DEFAULT_CAPACITY = {"voice": 1, "chat": 3, "email": 2}


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """The store under test: a fresh ``MemoryStore``, or a ``RedisStore`` on the session server."""
    if request.param == "memory":
        yield MemoryStore()
        return
    client: Redis = request.getfixturevalue("redis_client")
    yield RedisStore(client)


def contact(
    cid: str,
    queues: Sequence[str] = ("q1",),
    *,
    channel: str = "voice",
    priority_ms: int = 0,
    now: int = T0,
    steps: list[Step] | None = None,
    offer_ms: dict[str, int] | None = None,
    idempotency: tuple[str, str] = ("", ""),
    customer: str = "",
) -> NewContact:
    """A contact enqueued at ``now`` with ``priority_ms`` of wait credit.

    Without ``steps`` it has one step over ``queues``; every queue (and the targeted-agent
    entry ``""``) offers for ``OFFER_MS`` unless ``offer_ms`` overrides it.
    """
    if steps is None:
        steps = [Step(queues=tuple(queues))]
    named = {q for s in steps for q in s.queues}
    timeouts = {"": OFFER_MS, **dict.fromkeys(sorted(named), OFFER_MS), **(offer_ms or {})}
    return NewContact(
        id=cid,
        channel=channel,
        capacity_channel="voice" if channel == "callback" else channel,
        sort_key_ms=now - priority_ms,
        steps=steps,
        offer_timeouts_ms=timeouts,
        sl_threshold_ms=SL_MS,
        home_queue=steps[0].queues[0] if steps[0].queues else "",
        doc=json.dumps({"id": cid, "channel": channel}),
        view=json.dumps({"contact": cid}),
        customer_id=customer,
        idempotency_key=idempotency[0],
        idempotency_hash=idempotency[1],
    )


def agent(
    aid: str,
    queues: Iterable[str] = ("q1",),
    *,
    capacity: dict[str, int] | None = None,
    strategy: str = "longest_idle",
    level: float = 0.0,
    memberships: list[tuple[str, str, float]] | None = None,
    exclusive: list[str] | None = None,
) -> AgentSpec:
    """An agent in ``queues`` (all with one strategy and skill level) unless ``memberships``."""
    if memberships is None:
        memberships = [(q, strategy, level) for q in queues]
    return AgentSpec(
        id=aid,
        doc=json.dumps({"name": aid.upper()}),
        capacity=dict(DEFAULT_CAPACITY if capacity is None else capacity),
        memberships=memberships,
        exclusive=["voice"] if exclusive is None else exclusive,
    )


async def ready(store: Store, tenant: str, spec: AgentSpec, now: int = T0) -> list[Event]:
    """Create the agent and make it available at ``now``; the events of going available."""
    await store.upsert_agent(tenant, spec, now)
    out = await store.set_agent_state(tenant, spec.id, "available", now)
    return out.events


def offers(events: list[Event]) -> list[tuple[str, str, str]]:
    """(agent, contact, queue) of every offer event, in order."""
    return [(e["a"], e["c"], e["q"]) for e in events if e["t"] == "offer"]


def offer_of(events: list[Event], cid: str) -> Event:
    """The one offer event for contact ``cid``."""
    found = [e for e in events if e["t"] == "offer" and e["c"] == cid]
    assert len(found) == 1, events
    return found[0]


def kinds(events: list[Event]) -> list[str]:
    """The kind of every event, in order."""
    return [str(e["t"]) for e in events]
