"""Differential property test: random operation sequences on MemoryStore and RedisStore at once.

A hypothesis ``RuleBasedStateMachine`` sends the same operations (upsert agent, state changes,
enqueue with multi-step workflows and targeted agents, accept / reject with right and wrong
ids, abandon, complete with wrap-up, callbacks, time passing and due timers) to both stores and
demands identical decoded results or identical error types. After every step it compares every
status read and checks the invariants of the design on both the decoded statuses and the memory
store's internals: no contact in two states or places, no agent over capacity, at most one
accepted reservation per contact, every contact accounted for, no free agent left beside a
contact it may take, and each offer going to the agent's best contact (largest waited +
priority, ties by id) and, from the contact side, to the best agent of the queue's strategy.

The same machine runs on the memory store alone (offline, with five times the examples).
``SWITCHBOARD_STATEFUL=long`` (or ``soak``) runs more and longer sequences than CI and shrinks
a failure to a minimal sequence (CI reports it unshrunk: shrinking can outlast the timeout).
Deep interleavings need the long profile: on purpose-broken stores CI caught most single-line
mutations, while reordering rescinded contacts needed ``long``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Callable, Coroutine
from dataclasses import replace
from fractions import Fraction
from typing import Any, TypeVar, cast

import hypothesis.strategies as st
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from queues.contract import (
    AGENT_STATES,
    CONTACT_STATUSES,
    AgentSpec,
    AgentState,
    AgentStateName,
    ContactState,
    NewContact,
    Step,
    Store,
)
from queues.embedded import EmbeddedRedis
from queues.errors import StoreError
from queues.memory import MemoryStore, TenantCore, _Agent, _Contact
from queues.redis_store import RedisStore

T = TypeVar("T")

T0 = 1_700_000_000_000
AGENTS = ("a1", "a2", "a3")
QUEUES = ("q1", "q2")
STRATEGIES = ("longest_idle", "most_skilled", "least_busy")
CHANNELS = ("voice", "chat", "chat", "email", "callback")  # chat twice: multi-capacity
OFFER_MS = {"": 20_000, "q1": 30_000, "q2": 45_000}
HELD = ("offered", "assigned", "wrapping")  # statuses that use a unit of agent capacity

Memberships = list[tuple[str, float]]  # (queue, skill level); the strategy is the queue's
# Biased towards agents and contacts that meet: most agents can take most channels and sit in
# a queue or two; most steps name a queue. Empty and zero cases still occur.
CAPACITY = st.fixed_dictionaries(
    {"voice": st.sampled_from([1, 1, 0]), "chat": st.integers(1, 3)},
    optional={"email": st.integers(0, 2)},
)


def mostly(common: st.SearchStrategy[T], rare: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``common`` nine times in ten, else ``rare`` (``a | b`` would draw each half the time)."""
    return st.integers(0, 9).flatmap(lambda n: common if n else rare)


MEMBERSHIPS = mostly(
    st.lists(
        st.tuples(st.sampled_from(QUEUES), st.integers(0, 10).map(float)),
        min_size=1,
        max_size=len(QUEUES),
        unique_by=lambda m: m[0],
    ),
    st.just([]),
)
EXCLUSIVE = st.sampled_from([["voice"], ["voice"], []])
STATE = st.sampled_from(["available", "available", "available", *AGENT_STATES])

STEP = st.builds(
    Step,
    queues=mostly(
        st.lists(st.sampled_from(QUEUES), min_size=1, max_size=2, unique=True).map(tuple),
        st.just(()),
    ),
    agents=st.lists(st.sampled_from(AGENTS), max_size=1).map(tuple),
    timeout_ms=st.sampled_from([1_000, 5_000, 20_000]),
).filter(lambda s: bool(s.queues or s.agents))
Arrival = tuple[str, int, list[Step], tuple[str, str]]
ARRIVAL = st.tuples(
    st.sampled_from(CHANNELS),
    st.sampled_from([0, 0, 2_000, 10_000, 60_000]),  # priority (ms of wait credit)
    st.lists(STEP, min_size=1, max_size=3),
    st.sampled_from([("", "")] * 4 + [("k1", "h1"), ("k1", "h2"), ("k2", "h1")]),
)
POOL = st.sampled_from(["live", "live", "live", "any", "bogus"])
INDEX = st.integers(0, 50)
ACTOR = st.sampled_from(["owner", "owner", "admin", "other"])

# profile: (examples on both stores, steps per example); the memory store alone runs 5x the
# examples. Shrinking a failing sequence can take minutes, past CI's 60 s per-test timeout, so
# CI reports the sequence as found; the longer profiles shrink it.
_PROFILES = {"ci": (40, 40), "long": (300, 60), "soak": (3_000, 100)}
PROFILE = os.environ.get("SWITCHBOARD_STATEFUL", "ci")
EXAMPLES, STEPS = _PROFILES[PROFILE]
SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    phases=[p for p in Phase if PROFILE != "ci" or p is not Phase.shrink],
)
_examples = itertools.count(1)


# ------------------------------------------------------------------------------ oracle


def free_for(ag: _Agent, ch: str) -> bool:
    """The spec of free capacity: available, below capacity, no contact on an exclusive channel."""
    return (
        ag.st == "available"
        and ag.load.get(ch, 0) < ag.cap.get(ch, 0)
        and all(ag.load.get(x, 0) == 0 for x in ag.excl)
    )


def may_take(ag: _Agent, c: _Contact) -> bool:
    """Whether ``ag`` may be offered ``c`` now, from the two records alone (no index sets)."""
    if c.st != "queued" or c.hold != 0 or ag.id in c.decl or not free_for(ag, c.cc):
        return False
    step = c.steps[c.step]
    return ag.id in step.agents or any(q in step.queues for q, _, _ in ag.qs)


def rank(ag: _Agent, strategy: str, level: float) -> tuple[Any, ...]:
    """An agent's place in a queue's line of free agents, lower first, without score packing."""
    if strategy == "most_skilled":
        return (-level, ag.idle)
    if strategy == "least_busy":
        total = sum(ag.cap.values())
        used = sum(ag.load.get(ch, 0) for ch in ag.cap)
        return (Fraction(used, total) if total else Fraction(0), ag.idle)
    return (ag.idle,)


class CheckedCore(TenantCore):
    """A TenantCore that checks every reservation against the routing oracle as it is made."""

    def __init__(self) -> None:
        super().__init__()
        self.contact_side: _Contact | None = None

    def match_contact(self, c: _Contact, now: int, waiting: bool = True) -> bool:
        self.contact_side = c
        try:
            return super().match_contact(c, now, waiting)
        finally:
            self.contact_side = None

    def reserve(self, c: _Contact, ag: _Agent, queue: str, now: int, waiting: bool = True) -> None:
        assert may_take(ag, c), f"{ag.id} offered {c.id} it may not take"
        takeable = [x for x in self.contacts.values() if may_take(ag, x)]
        best = min(takeable, key=lambda x: (x.key, x.id))
        assert best is c, f"{ag.id} offered {c.id} (key {c.key}), best is {best.id} ({best.key})"
        step = c.steps[c.step].wire()
        if self.contact_side is c:
            assert (ag.id, queue) == self.best_agent(c), f"{c.id} not offered to its best agent"
        elif queue == "":
            assert ag.id in step["a"]
        else:
            assert queue in step["q"]
            assert queue in [q for q, _, _ in ag.qs]
        super().reserve(c, ag, queue, now, waiting)

    def best_agent(self, c: _Contact) -> tuple[str, str] | None:
        """The first targeted agent free for it, else the top agent of its first staffed queue."""
        step = c.steps[c.step].wire()
        for aid in step["a"]:
            ag = self.agents.get(aid)
            if ag is not None and aid not in c.decl and free_for(ag, c.cc):
                return aid, ""
        for q in step["q"]:
            line = [
                (rank(ag, strategy, level), ag.id)
                for ag in self.agents.values()
                for mq, strategy, level in ag.qs
                if mq == q and ag.id not in c.decl and free_for(ag, c.cc)
            ]
            if line:
                return min(line)[1], q
        return None


class CheckedMemoryStore(MemoryStore):
    def core(self, tenant: str) -> TenantCore:
        core = self.tenants.get(tenant)
        if core is None:
            core = self.tenants[tenant] = CheckedCore()
        return core


def check_core(core: TenantCore) -> None:
    """The memory store's internals are consistent: every index agrees with the records."""
    contacts, agents, reservations = core.contacts, core.agents, core.reservations
    places: dict[str, set[tuple[str, ...]]] = {cid: set() for cid in contacts}
    for (q, ch), z in core.queue_waiting.items():
        for cid in z:
            places[cid].add(("q", q, ch))
            assert z.score(cid) == contacts[cid].key
    for (aid, ch), z in core.agent_waiting.items():
        for cid in z:
            places[cid].add(("a", aid, ch))
    for q, ages in core.queue_age.items():
        for cid in ages:
            places[cid].add(("age", q))
    due = set(core.timers)
    for c in contacts.values():
        assert c.st in CONTACT_STATUSES
        step = c.steps[c.step].wire()
        want: set[tuple[str, ...]] = set()
        if c.st == "queued" and c.hold == 0:
            want = {("q", q, c.cc) for q in step["q"]} | {("age", q) for q in step["q"]}
            want |= {("a", a, c.cc) for a in step["a"]}
        assert places[c.id] == want, f"{c.id} ({c.st}) is in {places[c.id]}, not {want}"
        mine = [r for r in reservations.values() if r.c == c.id]
        assert sum(r.st == "accepted" for r in mine) <= 1, f"{c.id} accepted twice"
        assert sum(r.st == "pending" for r in mine) == (c.st == "offered")
        if c.st in ("queued", "abandoned"):
            assert (c.agent, c.res) == ("", "")
        if c.st in HELD:
            r = reservations[c.res]
            assert (r.c, r.a, r.st) == (
                c.id,
                c.agent,
                "pending" if c.st == "offered" else "accepted",
            )
        if c.st == "queued" and c.hold:
            assert f"b|{c.id}" in due
        if c.st in ("queued", "offered") and step["t"] > 0:
            assert f"s|{c.id}|{c.step}" in due
        if c.st == "wrapping":
            assert f"w|{c.id}" in due
        if c.st in ("queued", "offered"):
            for aid in c.decl:
                assert c.id in agents[aid].declined
    for rid, r in reservations.items():
        if r.st == "pending":
            assert rid in agents[r.a].offers
            assert f"o|{rid}" in due
    for ag in agents.values():
        assert ag.offers == {
            rid for rid, r in reservations.items() if r.a == ag.id and r.st == "pending"
        }
        for cid in ag.declined:
            assert ag.id in contacts[cid].decl
        held: dict[str, int] = {}
        for c in contacts.values():
            if c.st in HELD and c.agent == ag.id:
                held[c.cc] = held.get(c.cc, 0) + 1
        assert ag.load == held, f"{ag.id} load {ag.load}, holds {held}"
        names = [q for q, _, _ in ag.qs]
        for q in QUEUES:
            assert (ag.id in core.queue_members.get(q, set())) == (q in names)
            staffed = q in names and ag.st != "offline"
            assert (ag.id in core.queue_staffed.get(q, set())) == staffed
            available = q in names and ag.st == "available"
            assert (ag.id in core.queue_available.get(q, set())) == available
        for c in contacts.values():
            assert not may_take(ag, c), f"{ag.id} is free for waiting {c.id} but idle"
    for (q, ch), free in core.queue_free.items():
        for aid in free:
            ag = agents[aid]
            levels = [(s, lvl) for mq, s, lvl in ag.qs if mq == q]
            assert levels, f"{aid} free in {q}, not a member"
            assert free_for(ag, ch), f"{aid} wrongly free in {q}/{ch}"
            assert free.score(aid) == core.agent_score(ag, *levels[0])
    for ag in agents.values():
        for q, _, _ in ag.qs:
            for ch in ag.cap:
                if free_for(ag, ch):
                    assert ag.id in core.queue_free.get((q, ch), ()), f"{ag.id} not free in {q}"


# ------------------------------------------------------------------------------ the machine


class StoreMachine(RuleBasedStateMachine):
    """One example: a fresh tenant on both stores, driven through one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: Redis | None) -> None:
        super().__init__()
        self.loop = loop
        self.memory = CheckedMemoryStore()
        self.stores: list[Store] = [self.memory]
        if client is not None:
            self.stores.append(RedisStore(client))
        self.tenant = f"sm{os.getpid()}-{next(_examples)}"
        self.now = T0
        self.seq = 0
        self.contacts: list[str] = []
        self.agents: list[str] = []
        self.reservations: list[str] = []
        self.reserved_by: dict[str, str] = {}
        self.accepted: set[str] = set()
        self.fired: list[str] = []
        self.last_load: dict[str, dict[str, int]] = {}
        self.strategy = dict.fromkeys(QUEUES, "longest_idle")

    @property
    def core(self) -> TenantCore:
        return self.memory.core(self.tenant)

    def both(self, method: str, *args: Any) -> Any:
        """Call ``method(tenant, *args)`` on every store; results or errors must be identical.

        Returns the memory store's result, or the ``StoreError`` it raised.
        """
        results = []
        for store in self.stores:
            try:
                results.append(self.run(store, getattr(store, method)(self.tenant, *args)))
            except StoreError as exc:
                results.append(exc)
        first = results[0]
        for other in results[1:]:
            if isinstance(first, StoreError):
                assert type(other) is type(first), f"{method}: memory {first!r}, redis {other!r}"
                assert other.ids == first.ids
            else:
                assert other == first, f"{method}:\nmemory {first!r}\nredis  {other!r}"
        self.note_offers(first)
        return first

    def run(self, store: Store, call: Coroutine[Any, Any, Any]) -> Any:
        if store is not self.memory:
            return self.loop.run_until_complete(call)
        # the memory store never suspends: drive it without the loop, which halves the run time
        try:
            call.send(None)
        except StopIteration as done:
            return done.value
        call.close()
        raise AssertionError("the memory store suspended")

    def note_offers(self, result: object) -> None:
        for ev in getattr(result, "events", []):
            if ev["t"] == "offer":
                self.reservations.append(ev["r"])
                self.reserved_by[ev["r"]] = ev["a"]

    def choose(
        self, pool: str, index: int, live: list[str], everything: list[str], bogus: str
    ) -> str:
        """An id from the live ones (that the operation applies to), from all, or unknown."""
        items = live if pool == "live" else everything
        return bogus if pool == "bogus" or not items else items[index % len(items)]

    def live(self, *statuses: str) -> list[str]:
        return [cid for cid in self.contacts if self.core.contacts[cid].st in statuses]

    def actor(self, actor: str, owner: str) -> str | None:
        """The acting agent: the owner, an admin (None) or some other agent."""
        return {"owner": owner, "admin": None, "other": "a2" if owner == "a1" else "a1"}[actor]

    # -------------------------------------------------------------------------- rules

    @initialize(
        strategies=st.tuples(*[st.sampled_from(STRATEGIES)] * len(QUEUES)),
        staff=st.lists(st.tuples(CAPACITY, MEMBERSHIPS, EXCLUSIVE, STATE), min_size=2, max_size=3),
    )
    def staff(
        self,
        strategies: tuple[str, ...],
        staff: list[tuple[dict[str, int], Memberships, list[str], str]],
    ) -> None:
        """Give each queue its strategy and start with two or three agents, most available."""
        self.strategy = dict(zip(QUEUES, strategies, strict=True))
        for aid, (capacity, memberships, exclusive, state) in zip(AGENTS, staff, strict=False):
            self.upsert_agent(aid, capacity, memberships, exclusive)
            self.set_state(aid, cast(AgentStateName, state))

    @rule(
        aid=st.sampled_from(AGENTS), capacity=CAPACITY, memberships=MEMBERSHIPS, exclusive=EXCLUSIVE
    )
    def upsert_agent(
        self,
        aid: str,
        capacity: dict[str, int],
        memberships: Memberships,
        exclusive: list[str],
    ) -> None:
        joined = [(q, self.strategy[q], level) for q, level in memberships]
        spec = AgentSpec(aid, json.dumps({"name": aid}), capacity, joined, exclusive)
        self.both("upsert_agent", spec, self.now)
        if aid not in self.agents:
            self.agents.append(aid)

    @rule(aid=st.sampled_from((*AGENTS, "ghost")), state=STATE)
    def set_state(self, aid: str, state: AgentStateName) -> None:
        self.both("set_agent_state", aid, state, self.now)

    @rule(arrivals=st.lists(ARRIVAL, min_size=1, max_size=3))
    def enqueue(self, arrivals: list[Arrival]) -> None:
        """One to three contacts arrive at the same moment."""
        for channel, priority_ms, steps, (idem_key, idem_hash) in arrivals:
            self.seq += 1
            cid = f"c{self.seq}"
            steps = [*steps[:-1], replace(steps[-1], timeout_ms=0)]  # the last step has no timeout
            new = NewContact(
                id=cid,
                channel=channel,
                capacity_channel="voice" if channel == "callback" else channel,
                sort_key_ms=self.now - priority_ms,
                steps=steps,
                offer_timeouts_ms=OFFER_MS,
                sl_threshold_ms=20_000,
                home_queue=steps[0].queues[0] if steps[0].queues else "",
                doc=json.dumps({"id": cid}),
                view=json.dumps({"v": cid}),
                idempotency_key=idem_key,
                idempotency_hash=idem_hash,
            )
            out = self.both("enqueue", new, self.now)
            if not isinstance(out, StoreError) and not out.value.replay:
                self.contacts.append(cid)

    @rule(pool=POOL, index=INDEX, actor=ACTOR, accept=st.sampled_from([True, True, False]))
    def answer(self, pool: str, index: int, actor: str, accept: bool) -> None:
        pending = [rid for rid, r in self.core.reservations.items() if r.st == "pending"]
        rid = self.choose(pool, index, pending, self.reservations, "r999")
        agent_id = self.actor(actor, self.reserved_by.get(rid, "a1"))
        if accept:
            self.accept(rid, agent_id)
        else:
            self.both("reject", rid, agent_id, self.now)

    def accept(self, rid: str, agent_id: str | None) -> None:
        out = self.both("accept", rid, agent_id, self.now)
        if not isinstance(out, StoreError):
            cid = out.value.contact.id
            assert cid not in self.accepted, f"{cid} accepted a second time ({rid})"
            self.accepted.add(cid)

    @rule(pool=POOL, index=INDEX)
    def abandon(self, pool: str, index: int) -> None:
        cid = self.choose(pool, index, self.live("queued", "offered"), self.contacts, "c999")
        self.both("abandon", cid, self.now)

    @rule(
        pool=POOL,
        index=INDEX,
        actor=ACTOR,
        wrap_ms=st.sampled_from([0, 0, 2_000, 10_000]),
        disposition=st.sampled_from(["", "resolved"]),
    )
    def complete(self, pool: str, index: int, actor: str, wrap_ms: int, disposition: str) -> None:
        cid = self.choose(pool, index, self.live("assigned"), self.contacts, "c999")
        c = self.core.contacts.get(cid)
        agent_id = self.actor(actor, c.agent if c is not None and c.agent else "a1")
        self.both("complete", cid, agent_id, wrap_ms, disposition, self.now)

    @rule(pool=POOL, index=INDEX, delay_ms=st.sampled_from([0, 5_000, 30_000]))
    def request_callback(self, pool: str, index: int, delay_ms: int) -> None:
        cid = self.choose(pool, index, self.live("queued"), self.contacts, "c999")
        at = self.now + delay_ms
        self.both("request_callback", cid, "+15550100", at, self.now)

    @rule()
    def everyone_available(self) -> None:
        """Every agent comes back (agents spend much of their time away or busy otherwise)."""
        for aid in self.agents:
            self.both("set_agent_state", aid, "available", self.now)

    @rule(wrap_ms=st.sampled_from([0, 2_000]))
    def agents_work(self, wrap_ms: int) -> None:
        """Every pending offer is accepted, then every assigned contact completed, in id order."""
        pending = [rid for rid, r in self.core.reservations.items() if r.st == "pending"]
        for rid in sorted(pending, key=lambda rid: (len(rid), rid)):
            if self.core.reservations[rid].st == "pending":
                self.accept(rid, self.reserved_by[rid])
        for cid in self.live("assigned"):
            agent_id = self.core.contacts[cid].agent
            self.both("complete", cid, agent_id, wrap_ms, "", self.now)

    @precondition(lambda self: bool(self.agents))
    @rule(state=STATE)
    def busiest_changes_state(self, state: AgentStateName) -> None:
        """The agent with the most pending offers changes state (offline rescinds them all)."""
        agents = self.core.agents.values()
        busiest = max(agents, key=lambda ag: (len(ag.offers), ag.id)).id
        self.both("set_agent_state", busiest, state, self.now)

    @rule(
        ms=st.sampled_from([0, 1, 999, 1_000, 4_000, 10_000, 30_000]),
        limit=st.integers(1, 8),
    )
    def pass_time(self, ms: int, limit: int) -> None:
        """Time passes; due timers are claimed (at most ``limit``) and fired in due order."""
        self.now += ms
        claim = self.both("claim_timers", self.now, limit, 60_000)
        assert not isinstance(claim, StoreError)
        for timer in claim.timers:
            self.both("fire_timer", timer, self.now)
            self.fired.append(timer)

    @precondition(lambda self: bool(self.fired))
    @rule(index=st.integers(0, 50))
    def fire_again(self, index: int) -> None:
        """A timer fired a second time (another instance's stale lease) changes nothing."""
        timer = self.fired[index % len(self.fired)]
        due = self.core.timers.score(timer)
        out = self.both("fire_timer", timer, self.now)
        assert not isinstance(out, StoreError)
        if due is None or due > self.now:  # not set again since, or set again for later
            assert (out.value, out.events) == (False, [])

    # -------------------------------------------------------------------------- invariants

    @invariant()
    def stores_agree_and_hold_invariants(self) -> None:
        check_core(self.core)
        contacts: dict[str, ContactState] = {}
        for cid in self.contacts:
            got = self.both("contact_status", cid)
            assert isinstance(got, ContactState), f"{cid} lost: {got!r}"
            contacts[cid] = got
        agents: dict[str, AgentState] = {}
        for aid in self.agents:
            got_agent = self.both("agent_status", aid)
            assert isinstance(got_agent, AgentState)
            agents[aid] = got_agent
            self.both("pending_offers", aid)
        snaps = self.both("queue_snapshot", list(QUEUES), self.now)
        assert not isinstance(snaps, StoreError)
        self.both("list_agents")
        self.check_statuses(contacts, agents)
        core = self.core
        for snap in snaps:
            waiting = [
                c
                for c in core.contacts.values()
                if c.st == "queued" and c.hold == 0 and snap.name in c.steps[c.step].queues
            ]
            assert snap.waiting == len(waiting)
            oldest = min((c.enq for c in waiting), default=None)
            assert snap.oldest_enqueued_ms == oldest

    def check_statuses(
        self, contacts: dict[str, ContactState], agents: dict[str, AgentState]
    ) -> None:
        """Invariants visible through the public reads (the same on both stores)."""
        held: dict[str, dict[str, int]] = {aid: {} for aid in agents}
        for c in contacts.values():
            assert c.status in CONTACT_STATUSES
            if c.status == "queued":
                assert (c.agent_id, c.reservation_id) == (None, None)
                assert c.position is not None
                assert c.position >= 1
            if c.status in HELD:
                assert c.agent_id in agents
                assert c.reservation_id is not None
                pending = c.reservation_id in agents[c.agent_id].reservations
                assert pending == (c.status == "offered")
                cc = "voice" if c.channel == "callback" else c.channel
                load = held[c.agent_id]
                load[cc] = load.get(cc, 0) + 1
        for aid, ag in agents.items():
            assert ag.load == held[aid], f"{aid} load {ag.load}, holds {held[aid]}"
            before = self.last_load.get(aid, {})
            for ch, n in ag.load.items():
                # an admin may lower capacity under a busy agent; it must then only drain
                assert n <= ag.capacity.get(ch, 0) or n <= before.get(ch, 0), f"{aid} over {ch}"
            self.last_load[aid] = dict(ag.load)


# ------------------------------------------------------------------------------ the tests


def run_machine(client_of: Callable[[], Redis | None], config: settings) -> None:
    """Run the machine's examples through one event loop and (if any) one Redis client."""
    loop = asyncio.new_event_loop()
    try:
        client = client_of()

        class Machine(StoreMachine):
            def __init__(self) -> None:
                super().__init__(loop, client)

        try:
            run_state_machine_as_test(Machine, settings=config)
        finally:
            if client is not None:
                loop.run_until_complete(client.aclose())
    finally:
        loop.close()


def test_memory_and_redis_agree(redis_server: EmbeddedRedis) -> None:
    """Random operation sequences give identical results on both stores and keep invariants."""
    run_machine(lambda: Redis(unix_socket_path=str(redis_server.socket_path)), SETTINGS)


def test_memory_store_keeps_invariants() -> None:
    """Random sequences on the memory store alone keep every invariant (runs offline)."""
    run_machine(lambda: None, settings(SETTINGS, max_examples=5 * EXAMPLES))
