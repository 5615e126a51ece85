"""Differential property test: random operation sequences on MemoryStore and RedisStore at once.

A hypothesis ``RuleBasedStateMachine`` sends the same operations (upsert agent, state changes,
enqueue with multi-step workflows and targeted agents, accept / reject with right and wrong
ids, accepts repeated, abandon, complete with wrap-up, callbacks, sockets opened and closed on
two instances, instance beats and sweeps, time passing and due timers) to both stores and
demands identical decoded results or identical error types; a repeated accept must answer as
the first did and change nothing. After every step it compares every status read and checks
the invariants of the design on both the decoded statuses and the memory store's internals: no
contact in two states or places, no agent over capacity, at most one accepted reservation per
contact, every contact accounted for, each agent listing exactly the contacts assigned to it or
wrapping, no ended contact keeping its view or a callback's number, no free agent left beside
a contact it may take, no offer pending from a queue the agent has left or over its capacity
on the offer's channel (an upsert rescinds those, and those a channel it made exclusive
blocks), and each offer going to the agent's best contact (largest waited + priority, ties by
id) and, from the contact side, to the best agent of the queue's strategy. Presence is held to
a model of what the store should record (sockets per instance, each instance's deadline): an
agent goes offline through a socket closing, a beat or a sweep exactly when it is left with no
socket on a live instance, so never because of a close elsewhere while a live instance holds
one of its sockets.

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
from typing import Any, cast

import hypothesis.strategies as st
from hypothesis import settings
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
    CONTACT_STATUSES,
    AgentSpec,
    AgentState,
    AgentStateName,
    ContactState,
    NewContact,
    Presence,
    Store,
)
from queues.embedded import EmbeddedRedis
from queues.errors import AgentNotFound, CallbackUnavailable, StoreError
from queues.memory import TenantCore
from queues.redis_store import RedisStore
from tests.contract.machine_inputs import (
    ACTOR,
    AGENTS,
    ARRIVAL,
    CAPACITY,
    EXAMPLES,
    EXCLUSIVE,
    INDEX,
    INSTANCES,
    MEMBERSHIPS,
    OFFER_MS,
    POOL,
    PRESENCE_MS,
    REPORTED,
    SETTINGS,
    STATE,
    STRATEGIES,
    T0,
    Arrival,
    Memberships,
)
from tests.contract.oracle import (
    HELD,
    QUEUES,
    CheckedMemoryStore,
    check_core,
    could_call_back,
    lines_of,
    present,
)

_examples = itertools.count(1)


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
        #: reservation -> the first accept's answer (a repeat must give it again)
        self.first_accept: dict[str, Any] = {}
        self.fired: list[str] = []
        self.last_load: dict[str, dict[str, int]] = {}
        self.strategy = dict.fromkeys(QUEUES, "longest_idle")
        # presence: the sockets each instance holds (its own count), what the store should
        # record of them, and each instance's deadline (ms)
        self.held: dict[tuple[str, str], int] = {}
        self.recorded: dict[tuple[str, str], int] = {}
        self.deadlines: dict[str, int] = {}

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

    def states(self) -> dict[str, str]:
        return {aid: ag.st for aid, ag in self.core.agents.items()}

    def record(self, inst: str, aid: str, n: int) -> None:
        if n > 0:
            self.recorded[(inst, aid)] = n
        else:
            self.recorded.pop((inst, aid), None)

    def expect_offline(self, aids: list[str], before: dict[str, str]) -> list[str]:
        """Of the agents whose sockets an operation dropped, those it must set offline: left
        with no socket on a live instance, and not offline already."""
        return [
            aid
            for aid in aids
            if before[aid] != "offline"
            and not present(self.recorded, self.deadlines, aid, self.now)
        ]

    def check_states(self, before: dict[str, str], gone: list[str]) -> None:
        """The agents in ``gone`` went offline; no other agent's state changed."""
        after = self.states()
        for aid, state in before.items():
            assert after[aid] == ("offline" if aid in gone else state), (aid, state, after[aid])

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
        before = self.core.agents.get(aid)
        gained = [x for x in exclusive if before is None or x not in before.excl]
        kept = set() if before is None else set(before.offers)
        self.both("upsert_agent", spec, self.now)
        if aid not in self.agents:
            self.agents.append(aid)
        # no offer it had is left blocked by a channel this change made exclusive: none of its
        # other contacts (held, or offered before the change) is on such a channel, other than
        # the offer's own (an exclusive channel blocks the others, not itself)
        core = self.core
        mine = [c for c in core.contacts.values() if c.agent == aid and c.st in HELD]
        for rid in core.agents[aid].offers & kept:
            ch = next(c.cc for c in mine if c.res == rid)
            others = [c.cc for c in mine if c.res != rid and (c.st != "offered" or c.res in kept)]
            blocking = (set(others) & set(gained)) - {ch}
            assert not blocking, f"{rid} ({ch}) kept beside {others}, {gained} exclusive"

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
        r = self.core.reservations.get(rid)
        again = r is not None and r.st == "accepted"
        before = self.reads() if again else None
        # (the oracle: a repeat is answered while the contact is still the reserved agent's)
        c = self.core.contacts[r.c] if r is not None else None
        owner = r is not None and agent_id in (None, r.a)
        answered = again and owner and c is not None and (c.st, c.res) == ("assigned", rid)
        out = self.both("accept", rid, agent_id, self.now)
        if isinstance(out, StoreError):
            assert not answered, f"accepting {rid} again refused: {out!r}"
            assert before is None or self.reads() == before, f"a refused accept of {rid} changed"
            return
        assert answered or not again, f"accepting {rid} again answered: {out!r}"
        if again:
            # a repeat: the first answer again, no events, nothing changed
            assert out.value == replace(self.first_accept[rid].value, replay=True)
            assert out.events == []
            assert self.reads() == before, f"accepting {rid} again changed the stores"
            return
        assert not out.value.replay
        cid = out.value.contact.id
        assert cid not in self.accepted, f"{cid} accepted a second time ({rid})"
        self.accepted.add(cid)
        self.first_accept[rid] = out

    def reads(self) -> list[Any]:
        """What both stores show (compared between them) and the memory store's timers."""
        out: list[Any] = [self.both("contact_status", cid) for cid in self.contacts]
        out += [self.both("agent_status", aid) for aid in self.agents]
        out.append(self.both("queue_snapshot", list(QUEUES), self.now))
        timers = self.core.timers
        out.append(sorted((member, timers.score(member)) for member in timers))
        return out

    @precondition(lambda self: bool(self.first_accept))
    @rule(index=INDEX, actor=ACTOR)
    def accept_again(self, index: int, actor: str) -> None:
        """An accepted reservation accepted again (a retry after a lost reply, or late): the
        first answer while the contact is still assigned to the agent, else refused."""
        rids = list(self.first_accept)
        rid = rids[index % len(rids)]
        self.accept(rid, self.actor(actor, self.reserved_by[rid]))

    @rule(pool=POOL, index=INDEX, why=st.sampled_from(["abandoned", "abandoned", "cancelled"]))
    def abandon(self, pool: str, index: int, why: str) -> None:
        cid = self.choose(pool, index, self.live("queued", "offered"), self.contacts, "c999")
        self.both("abandon", cid, self.now, why)

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
        """A callback is refused, changing nothing, exactly when nobody could ever make it."""
        cid = self.choose(pool, index, self.live("queued"), self.contacts, "c999")
        at = self.now + delay_ms
        c = self.core.contacts.get(cid)
        able = c is not None and c.st == "queued" and could_call_back(self.core, c)
        before = self.reads() if c is not None and c.st == "queued" and not able else None
        out = self.both("request_callback", cid, "+15550100", at, self.now)
        if before is not None:
            assert isinstance(out, CallbackUnavailable), f"{cid}: nobody could call back: {out!r}"
            assert self.reads() == before, f"a refused callback of {cid} changed the stores"
        else:
            assert not isinstance(out, CallbackUnavailable), f"{cid} could be called back"

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
        aid=st.sampled_from((*AGENTS, "ghost")), inst=st.sampled_from(INSTANCES), reported=REPORTED
    )
    def open_socket(self, aid: str, inst: str, reported: bool) -> None:
        """An instance opens one more socket of the agent: no state changes. Unreported: the
        call never reached the store (Redis was unreachable), which only a beat with the
        instance's sockets puts right."""
        n = self.held.get((inst, aid), 0) + 1
        if not reported:
            if aid in self.core.agents:
                self.held[(inst, aid)] = n
            return
        before = self.states()
        out = self.both("socket_opened", aid, inst, n, self.now, PRESENCE_MS)
        if aid not in before:
            assert isinstance(out, AgentNotFound), out
            return
        assert out.value == Presence(inst in self.deadlines, [])
        assert out.events == []
        self.held[(inst, aid)] = n
        self.record(inst, aid, n)
        self.deadlines[inst] = self.now + PRESENCE_MS
        self.check_states(before, [])

    @precondition(lambda self: any(self.held.values()))
    @rule(index=INDEX, reported=REPORTED)
    def close_socket(self, index: int, reported: bool) -> None:
        """An instance closes one of the sockets it holds: the agent goes offline exactly when
        it has no socket left on any live instance (unreported: as for ``open_socket``)."""
        holding = sorted(key for key, n in self.held.items() if n > 0)
        inst, aid = holding[index % len(holding)]
        n = self.held[(inst, aid)] - 1
        self.held[(inst, aid)] = n
        if not reported:
            return
        known = inst in self.deadlines
        before = self.states()
        if known or n == 0:  # (a swept instance's sockets wait for its next beat)
            self.record(inst, aid, n)
        out = self.both("socket_closed", aid, inst, n, self.now)
        gone = self.expect_offline([aid] if n == 0 else [], before)
        assert out.value == Presence(known, gone), (out.value, gone)
        self.check_states(before, gone)

    @rule(inst=st.sampled_from(INSTANCES), sync=st.booleans())
    def beat(self, inst: str, sync: bool) -> None:
        """An instance beats, with its sockets (as after a sweep or a failed call) or not."""
        sockets = None
        if sync:
            sockets = {aid: n for (i, aid), n in sorted(self.held.items()) if i == inst and n}
        known = inst in self.deadlines
        before = self.states()
        self.deadlines[inst] = self.now + PRESENCE_MS
        dropped: list[str] = []
        if sockets is not None:
            for aid, n in sockets.items():
                self.record(inst, aid, n)
            dropped = sorted(a for i, a in self.recorded if i == inst and a not in sockets)
            for aid in dropped:
                self.record(inst, aid, 0)
        out = self.both("instance_beat", inst, self.now, PRESENCE_MS, sockets)
        gone = self.expect_offline(dropped, before)
        assert out.value == Presence(known, gone), (out.value, gone)
        self.check_states(before, gone)

    def fire(self, timer: str) -> Any:
        """Fire a claimed timer on both stores; a sweep ``i|<instance>`` is held to the model."""
        if not timer.startswith("i|"):
            return self.both("fire_timer", timer, self.now)
        inst = timer[2:]
        before = self.states()
        due = self.deadlines.get(inst)
        fired, gone = False, []
        if due is None or due <= self.now:  # dead: its record and sockets go
            self.deadlines.pop(inst, None)
            agents = sorted(a for i, a in self.recorded if i == inst)
            for aid in agents:
                self.record(inst, aid, 0)
            fired = due is not None or bool(agents)
            gone = self.expect_offline(agents, before)
        out = self.both("fire_timer", timer, self.now)
        assert out.value is fired, (timer, out.value, fired)
        self.check_states(before, gone)
        return out

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
            self.fire(timer)
            self.fired.append(timer)

    @precondition(lambda self: bool(self.deadlines))
    @rule(ms=st.sampled_from([10_000, 30_000]))
    def time_passes_unswept(self, ms: int) -> None:
        """Time passes before any timer loop runs: an instance may be past its deadline and
        not yet swept (its sockets count for nobody)."""
        self.now += ms

    @precondition(lambda self: bool(self.fired))
    @rule(index=st.integers(0, 50))
    def fire_again(self, index: int) -> None:
        """A timer fired a second time (another instance's stale lease) changes nothing."""
        timer = self.fired[index % len(self.fired)]
        due = self.core.timers.score(timer)
        out = self.fire(timer)
        assert not isinstance(out, StoreError)
        if due is None or due > self.now:  # not set again since, or set again for later
            assert (out.value, out.events) == (False, [])

    # -------------------------------------------------------------------------- invariants

    @invariant()
    def stores_agree_and_hold_invariants(self) -> None:
        check_core(self.core)
        sockets = self.core.agent_sockets
        recorded = {(inst, aid): n for aid, socks in sockets.items() for inst, n in socks.items()}
        assert recorded == self.recorded, (recorded, self.recorded)
        assert self.core.instances == self.deadlines
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
        self.check_listed(contacts)
        self.check_statuses(contacts, agents)
        core = self.core
        for snap in snaps:
            waiting = [
                c
                for c in core.contacts.values()
                if c.st == "queued" and c.hold == 0 and snap.name in c.steps[c.step].queues
            ]
            assert snap.waiting == len(waiting)
            held = [
                c
                for c in core.contacts.values()
                if c.st == "queued" and c.hold > 0 and snap.name in c.steps[c.step].queues
            ]
            assert snap.held == len(held)
            oldest = min((c.enq for c in waiting), default=None)
            assert snap.oldest_enqueued_ms == oldest

    def check_listed(self, contacts: dict[str, ContactState]) -> None:
        """Every queued contact is in a line ``list_contacts`` reads (a queue's, an agent's
        or, held, the callbacks'), and ``workflow_queues`` gives each contact under way the
        queues of its steps from the current one on."""
        listed = self.both("list_contacts", list(QUEUES), list(AGENTS), True)
        queued = sorted(cid for cid, c in contacts.items() if c.status == "queued")
        assert listed == queued, (listed, queued)
        ahead = self.both("workflow_queues", [*self.contacts, "c999"])
        expected = {}
        for cid, c in contacts.items():
            if c.status in ("queued", "offered"):
                record = self.core.contacts[cid]
                named = [q for s in record.steps[record.step :] for q in s.queues]
                expected[cid] = list(dict.fromkeys(named))
        assert ahead == expected, (ahead, expected)

    def check_statuses(
        self, contacts: dict[str, ContactState], agents: dict[str, AgentState]
    ) -> None:
        """Invariants visible through the public reads (the same on both stores)."""
        held: dict[str, dict[str, int]] = {aid: {} for aid in agents}
        holds: dict[str, set[str]] = {aid: set() for aid in agents}
        for c in contacts.values():
            assert c.status in CONTACT_STATUSES
            if c.status == "queued":
                assert (c.agent_id, c.reservation_id) == (None, None)
                expected = lines_of(self.core, self.core.contacts[c.id])
                assert (c.position, c.staffed, c.lines) == expected, (c.id, c, expected)
            if c.status in HELD:
                assert c.agent_id in agents
                assert c.reservation_id is not None
                pending = c.reservation_id in agents[c.agent_id].reservations
                assert pending == (c.status == "offered")
                cc = "voice" if c.channel == "callback" else c.channel
                load = held[c.agent_id]
                load[cc] = load.get(cc, 0) + 1
                if c.status != "offered":
                    holds[c.agent_id].add(c.id)
        for aid, ag in agents.items():
            assert ag.load == held[aid], f"{aid} load {ag.load}, holds {held[aid]}"
            assert sorted(ag.contacts) == sorted(holds[aid]), f"{aid} lists {ag.contacts}"
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
