"""MemoryStore: the Lua scripts of ``queues/lua`` mirrored in Python, branch for branch.

``TenantCore`` holds one tenant's state and has one method per helper of ``lib.lua`` and one
per script, in the same order and with the same names, so the two can be read side by side.
Each script method returns the raw reply ``[code, payload, events]`` the Lua script returns
(after JSON decoding), except that the contact and agent records in a payload come already
decoded: ``contact_view`` and ``agent_out`` build the ``ContactState`` / ``AgentState`` that
the decoders of ``queues.contract`` build from the script's reply, which saves building a dict
per decision only to decode it again.

The simulator drives ``TenantCore`` directly (synchronously, in virtual time); ``MemoryStore``
wraps it in the async ``Store`` contract.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import orjson

from queues import contract as c_
from queues.contract import (
    CAPACITY_CHANNELS,
    Abandoned,
    Accepted,
    AgentSpec,
    AgentState,
    AgentStateName,
    Completed,
    ContactState,
    EndReason,
    Enqueued,
    NewContact,
    Outcome,
    PendingOffer,
    Presence,
    QueueSnapshot,
    Step,
    Store,
    TimerClaim,
)
from queues.errors import Code
from queues.zset import FreeSet, MinSet, Ticket, ZSet

Reply = list[Any]
# what replies carry for a contact when TenantCore(views=False): the simulator reads records
_NO_VIEW = ContactState("", {}, "", "", "", None, None, None, 0, None)
_rid_order = c_._rid_order  # the order of an agent's reservations in its AgentState
_NEVER = float("inf")  # MinSet.lowest() of an empty set
#: agents one sweep_instance call drops at most (sweep_instance.lua's SWEEP_BATCH)
SWEEP_BATCH = 100


def _parse(doc: str) -> dict[str, Any]:
    """A stored document, parsed as the Redis store parses its replies (orjson, else json)."""
    try:
        parsed: dict[str, Any] = orjson.loads(doc)
    except orjson.JSONDecodeError:  # one orjson cannot read (NaN, a huge integer)
        parsed = json.loads(doc)
    return parsed


class _Agent:
    __slots__ = (
        "cap", "contacts", "counts", "declined", "doc", "excl", "free_sets", "id", "idle", "lb",
        "listed", "load", "offers", "parsed", "qnames", "qs", "st", "wait_sets",
    )  # fmt: skip

    def __init__(self, aid: str, now: int) -> None:
        self.id = aid
        self.st = "offline"
        self.cap: dict[str, int] = {}
        self.load: dict[str, int] = {}
        self.qs: list[tuple[str, str, float]] = []
        self.qnames: list[str] = []  # the queues of ``qs``, as replies list them
        self.excl: list[str] = []
        self.idle = now
        self.doc = "{}"
        self.offers: set[str] = set()
        #: the contacts it holds, assigned or wrapping, in the order accepted (the script's 'cs')
        self.contacts: list[str] = []
        self.declined: set[str] = set()
        # channel -> the ticket it is listed with in its queues' free sets: [(idle, load %)],
        # the key of its scores there (see FreeSet)
        self.listed: dict[str, Ticket] = {}
        self.lb = False  # in some least-busy queue: its scores depend on its load
        # per channel, its queues' sets, bound once by upsert_agent: (free set, strategy, level)
        # and the waiting lines (labelled with their queue)
        self.free_sets: dict[str, list[tuple[FreeSet, str, float]]] = {}
        self.wait_sets: dict[str, list[ZSet]] = {}
        self.counts: list[_QueueCount] = []  # its queues' staffing counters, one per queue
        self.parsed: dict[str, Any] | None = None


class _Contact:
    __slots__ = (
        "agent", "ans", "cb", "cc", "ch", "cust", "decl", "disp", "doc", "ended", "enq", "hold",
        "id", "key", "ot", "parsed", "places", "queue", "res", "slt", "st", "step", "steps", "view",
    )  # fmt: skip

    def __init__(self, new: NewContact, now: int) -> None:
        self.id = new.id
        self.doc = new.doc
        self.st = "queued"
        self.ch = new.channel
        self.cc = new.capacity_channel
        self.key = new.sort_key_ms
        self.enq = now
        self.step = 0
        self.steps = new.steps
        self.ot = new.offer_timeouts_ms
        self.slt = new.sl_threshold_ms
        self.cust = new.customer_id
        self.view: str | None = new.view
        self.queue = new.home_queue
        self.agent = ""
        self.res = ""
        # (decl and places share one empty tuple until they have members: a contact record
        # outlives its routing, and every list it keeps is one more object for the collector)
        self.decl: Sequence[str] = ()
        self.hold = 0
        self.disp = ""
        self.ans = 0
        self.ended = 0
        self.cb = ""
        self.parsed: dict[str, Any] | None = None
        # the waiting sets add_waiting put it in (its lines and queue ages), for remove_waiting
        self.places: Sequence[ZSet | MinSet] = ()


_VIEW_HEAD = '{"contact":{'
_OLD_NOTE = re.compile(r'^"callback":\{[^{}]*\},')


def _callback_view(view: str | None, number: str) -> str | None:
    """request_callback.lua's note in the offer's view: call back, and which number."""
    if view is None or not view.startswith(_VIEW_HEAD):
        return view
    rest = _OLD_NOTE.sub("", view[len(_VIEW_HEAD) :], count=1)
    note = json.dumps(number) if number else "null"
    return f'{_VIEW_HEAD}"callback":{{"number":{note}}},{rest}'


class _QueueCount:
    """A queue's staffing: how many of its agents are not offline, and how many available.

    The script's ``q:<queue>:staffing`` holds these counts per capacity of the members (a field
    per capacity, each the two counts in one integer: staffed * 2**32 + available); ``on`` and
    ``slots`` are what the script sums from the fields naming a channel.
    """

    __slots__ = ("available", "channels", "on", "places", "slots", "staffed")

    def __init__(self) -> None:
        self.staffed = 0
        self.available = 0
        #: members with capacity on each channel, whatever their state (q:<queue>:chans)
        self.channels: dict[str, int] = {}
        #: members not offline with capacity on each channel: the agents staffed for a contact
        #: on that channel
        self.on: dict[str, int] = {}
        #: the contacts on each channel those members can hold at once (their capacities)
        self.slots: dict[str, int] = {}
        #: the members not offline, each counted for its largest capacity on one channel
        self.places = 0


class _Reservation:
    __slots__ = ("a", "c", "q", "st", "x")

    def __init__(self, c: str, a: str, x: int, q: str) -> None:
        self.c, self.a, self.st, self.x, self.q = c, a, "pending", x, q


def _zset(table: dict[Any, ZSet], key: Any, queue: str = "") -> ZSet:
    """The waiting line ``key`` of ``table``, labelled with its queue ("" for an agent's)."""
    z = table.get(key)
    if z is None:
        z = table[key] = ZSet(queue)
    return z


def _minset(table: dict[Any, MinSet], key: Any) -> MinSet:
    z = table.get(key)
    if z is None:
        z = table[key] = MinSet()
    return z


def _freeset(table: dict[Any, FreeSet], key: Any) -> FreeSet:
    z = table.get(key)
    if z is None:
        z = table[key] = FreeSet()
    return z


class TenantCore:
    """One tenant's contacts, agents, queues and timers, with the scripts as methods."""

    def __init__(self, views: bool = True) -> None:
        # views=False: replies carry no contact view (the simulator reads the records instead)
        self.views = views
        self.seq = 0
        self.contacts: dict[str, _Contact] = {}
        self.agents: dict[str, _Agent] = {}
        self.reservations: dict[str, _Reservation] = {}
        self.idempotency: dict[str, tuple[str, str, int]] = {}
        self.queue_waiting: dict[tuple[str, str], ZSet] = {}
        self.agent_waiting: dict[tuple[str, str], ZSet] = {}
        self.queue_free: dict[tuple[str, str], FreeSet] = {}
        self.queue_age: dict[str, MinSet] = {}
        #: queue -> scheduled callbacks of its current step, out of line until their time
        self.queue_held: dict[str, set[str]] = {}
        self.queue_members: dict[str, set[str]] = {}
        self.queue_count: dict[str, _QueueCount] = {}
        self.stats: dict[tuple[str, int], dict[str, int]] = {}
        self.stats_day = -1
        self.day_stats: dict[str, dict[str, int]] = {}  # today's entries of ``stats``
        self.history: dict[str, list[str]] = {}
        self.timers = MinSet()
        self.ev: list[c_.Event] = []
        # presence: agent -> instance -> sockets it holds; instance -> its agents; instance ->
        # the deadline (ms) until which it is live
        self.agent_sockets: dict[str, dict[str, int]] = {}
        self.instance_agents: dict[str, set[str]] = {}
        self.instances: dict[str, int] = {}

    # -------------------------------------------------------------------------- lib.lua

    def emit(self, ev: c_.Event) -> None:
        self.ev.append(ev)

    def finish(self, code: Code, payload: Any = None) -> Reply:
        ev, self.ev = self.ev, []
        return [int(code), payload if payload is not None else False, ev]

    def ok(self, payload: Any) -> Reply:
        """``finish(Code.OK, payload)`` for a payload that is never None."""
        ev, self.ev = self.ev, []
        return [0, payload, ev]

    def save_agent_load(self, ag: _Agent) -> None:
        pass  # the agent object is the stored state

    def can_take(self, ag: _Agent, ch: str) -> bool:
        if ag.st != "available":
            return False
        load = ag.load
        if load.get(ch, 0) >= ag.cap.get(ch, 0):
            return False
        # (a contact on an exclusive channel blocks the other channels; its own, the capacity)
        for x in ag.excl:  # noqa: SIM110 (a loop is cheaper than any() on this hot path)
            if x != ch and load.get(x, 0) > 0:
                return False
        return True

    def agent_score(self, ag: _Agent, strategy: str, level: float) -> float:
        if strategy == "most_skilled":
            return ag.idle - level * 1e13
        if strategy == "least_busy":
            return ag.idle + self.busy_pct(ag) * 1e13
        return ag.idle

    def refresh_free(self, ag: _Agent) -> None:
        """List ``ag`` in the free sets of its queues for each channel it can take, or unlist it.

        ``ag.listed`` remembers what each channel is listed with, so a call that would write
        the same scores again touches no set; unlisting a channel empties its ticket, which
        withdraws the agent from all those sets at once.
        """
        load, aid, listed = ag.load, ag.id, ag.listed
        ready = ag.st == "available"
        # (the exclusive channel the agent has a contact on, which blocks every other channel;
        # "" for none, and None when two do, which blocks every channel: see can_take)
        only: str | None = ""
        if ready:
            for x in ag.excl:
                if load.get(x, 0) > 0:
                    only = None if only else x
                    if only is None:
                        break
        key: tuple[int, int] | None = None
        for ch, cap in ag.cap.items():
            if ready and load.get(ch, 0) < cap and (only == "" or only == ch):
                if key is None:
                    key = (ag.idle, self.busy_pct(ag) if ag.lb else 0)
                ticket = listed.get(ch)
                if ticket is not None:
                    if ticket[0] == key:
                        continue
                    ticket.clear()
                ticket = listed[ch] = [key]
                for z, strategy, level in ag.free_sets[ch]:
                    if strategy == "longest_idle":
                        z.add(aid, float(ag.idle), ticket)
                    else:
                        z.add(aid, self.agent_score(ag, strategy, level), ticket)
            else:
                ticket = listed.pop(ch, None)
                if ticket is not None:
                    ticket.clear()

    def busy_pct(self, ag: _Agent) -> int:
        used, total = 0, 0
        for ch, n in ag.cap.items():
            total += n
            used += ag.load.get(ch, 0)
        return math.floor(used * 100 / total) if total > 0 else 0

    def agent_out(self, aid: str) -> AgentState | None:
        """The agent as ``contract.agent_state`` decodes the script's reply (built directly)."""
        ag = self.agents.get(aid)
        if ag is None:
            return None
        doc = ag.parsed
        if doc is None:
            doc = ag.parsed = _parse(ag.doc)
        offers = sorted(ag.offers, key=_rid_order) if len(ag.offers) > 1 else list(ag.offers)
        return AgentState(
            aid, doc, ag.st, dict(ag.cap), dict(ag.load), list(ag.qnames), offers, list(ag.contacts)
        )

    def emit_state(self, ag: _Agent) -> None:
        self.ev.append({"t": "state", "a": ag.id, "s": ag.st, "l": dict(ag.load)})

    def current_step(self, c: _Contact) -> Step:
        return c.steps[c.step]

    def add_waiting(self, c: _Contact) -> None:
        s = c.steps[c.step]
        cid, cc, key = c.id, c.cc, c.key
        places: list[ZSet | MinSet] = []
        for aid in s.agents:
            z = _zset(self.agent_waiting, (aid, cc))
            z.add(cid, key)
            places.append(z)
        for q in s.queues:
            z = _zset(self.queue_waiting, (q, cc), q)
            z.add(cid, key)
            age = _minset(self.queue_age, q)
            age.add(cid, c.enq)
            places += (z, age)
        c.places = places

    def remove_waiting(self, c: _Contact) -> None:
        # the sets add_waiting recorded: those of the step and channel the contact waits with
        cid = c.id
        for z in c.places:
            z.remove(cid)
        c.places = ()

    def add_held(self, c: _Contact) -> None:
        for q in c.steps[c.step].queues:
            self.queue_held.setdefault(q, set()).add(c.id)

    def remove_held(self, c: _Contact) -> None:
        for q in c.steps[c.step].queues:
            self.queue_held.get(q, set()).discard(c.id)

    def place_in(self, z: ZSet | None, c: _Contact) -> int:
        if z is None:  # (a set never made: empty)
            return 1
        if not c.hold:
            rank = z.rank(c.id)
            if rank is not None:
                return rank + 1
        return z.count_upto(c.key) + 1

    def waiting_out(self, c: _Contact) -> tuple[int, int, list[tuple[str, int, int]]]:
        s = c.steps[c.step]
        staffed = 0
        pos: int | None = None  # its best place, and among the lines somebody staffs
        best: int | None = None
        lines: list[tuple[str, int, int]] = []
        counts = self.queue_count
        for q in s.queues:
            here = slots = 0
            n = counts.get(q)
            if n is not None:
                # (its members signed in with capacity on its channel, and that capacity)
                here = n.on.get(c.cc, 0)
                slots = n.slots.get(c.cc, 0)
                staffed = max(staffed, here)
            at = self.place_in(self.queue_waiting.get((q, c.cc)), c)
            if pos is None or at < pos:
                pos = at
            if here > 0 and (best is None or at < best):
                best = at
            lines.append((q, at, slots))
        if s.agents:
            named = 0
            for aid in s.agents:
                ag = self.agents.get(aid)
                slots = ag.cap.get(c.cc, 0) if ag is not None and ag.st != "offline" else 0
                named += slots > 0
                at = self.place_in(self.agent_waiting.get((aid, c.cc)), c)
                if pos is None or at < pos:
                    pos = at
                if slots > 0 and (best is None or at < best):
                    best = at
                lines.append(("", at, slots))
            staffed += named
        return best or pos or 1, staffed, lines

    def count(self, queue: str, now: int, field: str, by: int = 1) -> None:
        stats = self.counters(queue, now)
        stats[field] = stats.get(field, 0) + by

    def counters(self, queue: str, now: int) -> dict[str, int]:
        """Today's counters of ``queue``; a throwaway dict for no queue (lib.lua ``count``)."""
        if queue == "":
            return {}
        day = now // 86400000
        if day != self.stats_day:
            self.stats_day, self.day_stats = day, {}
        stats = self.day_stats.get(queue)
        if stats is None:
            stats = self.stats.get((queue, day))
            if stats is None:
                stats = self.stats[(queue, day)] = {}
            self.day_stats[queue] = stats
        return stats

    def contact_out(self, cid: str) -> ContactState | None:
        c = self.contacts.get(cid)
        return None if c is None else self.contact_view(c)

    def contact_view(self, c: _Contact) -> ContactState:
        """The contact as ``contract.contact_state`` decodes the script's reply (built directly)."""
        if not self.views:
            return _NO_VIEW
        doc = c.parsed  # parsed once per contact
        if doc is None:
            doc = c.parsed = _parse(c.doc)
        st = c.st
        if st != "queued":
            return ContactState(
                doc["id"], doc, st, c.ch, c.queue, c.agent or None, c.res or None, None, 0,
                c.disp or None,
            )  # fmt: skip
        pos, staffed, lines = self.waiting_out(c)
        return ContactState(
            doc["id"], doc, st, c.ch, c.queue, c.agent or None, c.res or None, pos, staffed,
            c.disp or None, c.hold, lines,
        )  # fmt: skip

    def reserve(self, c: _Contact, ag: _Agent, queue: str, now: int, waiting: bool = True) -> None:
        self.seq += 1
        rid = f"r{self.seq}"
        if waiting:
            self.remove_waiting(c)
        ot = c.ot
        if queue:
            exp = now + ot.get(queue, ot[""])
        else:  # (an offer by name: its step's own time, else the contact's default)
            exp = now + (c.steps[c.step].agent_offer_ms or ot[""])
        if queue != "":
            c.queue = queue
        c.st, c.agent, c.res = "offered", ag.id, rid
        self.reservations[rid] = _Reservation(c.id, ag.id, exp, queue)
        ag.offers.add(rid)
        ag.load[c.cc] = ag.load.get(c.cc, 0) + 1
        self.refresh_free(ag)
        self.timers.add("o|" + rid, exp)
        self.ev.append({"t": "offer", "a": ag.id, "r": rid, "c": c.id, "x": exp, "q": queue})

    def match_contact(self, c: _Contact, now: int, waiting: bool = True) -> bool:
        """Reserve the best free agent for ``c``; ``waiting``: c is in its waiting sets."""
        s = c.steps[c.step]
        decl = c.decl
        for aid in s.agents:
            if aid not in decl:
                ag = self.agents.get(aid)
                if ag is not None and self.can_take(ag, c.cc):
                    self.reserve(c, ag, "", now, waiting)
                    return True
        free = self.queue_free
        for q in s.queues:
            z = free.get((q, c.cc))
            if z is None:
                continue
            for _, aid in z.head(len(decl) + 1):
                if aid not in decl:
                    self.reserve(c, self.agents[aid], q, now, waiting)
                    return True
        return False

    def match_agent(self, ag: _Agent, now: int) -> None:
        declined = ag.declined
        while True:
            best: str | None = None
            best_key = 0.0
            best_queue = ""
            for ch in ag.cap:
                if not self.can_take(ag, ch):
                    continue
                lines = ag.wait_sets[ch]
                own = self.agent_waiting.get((ag.id, ch)) if self.agent_waiting else None
                if own:
                    lines = [own, *lines]
                for z in lines:
                    # the script reads ZRANGE 0 #declined: the same first undeclined contact
                    top = z.first_not_in(declined) if declined else z.first
                    if top is not None:
                        score, cid = top
                        if best is None or score < best_key or (score == best_key and cid < best):
                            best, best_key, best_queue = cid, score, z.label
            if best is None:
                return
            self.reserve(self.contacts[best], ag, best_queue, now)

    def step_timer(self, c: _Contact) -> str:
        return f"s|{c.id}|{c.step}"

    def step_queue(self, c: _Contact) -> str:
        queues = c.steps[c.step].queues
        return queues[0] if queues and c.queue not in queues else c.queue

    def step_dead(self, c: _Contact) -> bool:
        s = c.steps[c.step]
        if s.queues or not s.agents:
            return False
        for aid in s.agents:
            if aid not in c.decl:
                ag = self.agents.get(aid)
                if ag is not None and ag.st != "offline" and ag.cap.get(c.cc, 0) > 0:
                    return False
        return True

    def pass_dead(self, c: _Contact) -> bool:
        last = len(c.steps) - 1
        if c.step >= last:
            return False
        c.step += 1
        while c.step < last and self.step_dead(c):
            c.step += 1
        c.queue = self.step_queue(c)
        return True

    def leave_dead_step(self, c: _Contact, now: int) -> bool:
        if not self.step_dead(c) or c.step + 1 >= len(c.steps):
            return False
        held = c.hold > 0
        if held:
            self.remove_held(c)
        else:
            self.remove_waiting(c)
        self.timers.remove(self.step_timer(c))
        self.pass_dead(c)
        s = c.steps[c.step]
        if s.timeout_ms > 0:
            self.set_timer(now + s.timeout_ms, self.step_timer(c))
        if held:
            self.add_held(c)
        else:
            self.add_waiting(c)
        return True

    def match_best_first(self, cs: list[_Contact], now: int) -> None:
        for c in sorted(cs, key=lambda c: (c.key, c.id)):
            self.match_contact(c, now)

    def leave_agent_lines(
        self, aid: str, channels: Sequence[str], now: int, moved: list[_Contact]
    ) -> None:
        for ch in channels:
            z = self.agent_waiting.get((aid, ch))
            if z is None:
                continue
            for cid in list(z):
                c = self.contacts[cid]
                if c.st == "queued" and c.hold == 0 and self.leave_dead_step(c, now):
                    moved.append(c)

    def requeue(self, c: _Contact, now: int) -> None:
        c.st, c.agent, c.res = "queued", "", ""
        c.queue = self.step_queue(c)  # (its step may have moved on while it was on offer)
        if c.hold == 0:
            self.add_waiting(c)
        self.leave_dead_step(c, now)

    def release_capacity(self, ag: _Agent, ch: str, now: int) -> None:
        n = ag.load.get(ch, 0) - 1
        if n <= 0:
            ag.load.pop(ch, None)
        else:
            ag.load[ch] = n
        ag.idle = now

    def end_offer(
        self, rid: str, status: str, now: int, ag: _Agent | None = None
    ) -> tuple[_Contact, _Agent]:
        r = self.reservations[rid]
        r.st = status
        self.timers.remove("o|" + rid)
        self.agents[r.a].offers.discard(rid)
        c = self.contacts[r.c]
        ag = ag or self.agents[r.a]
        self.release_capacity(ag, c.cc, now)
        return c, ag

    def forget_declines(self, c: _Contact) -> None:
        for aid in c.decl:
            self.agents[aid].declined.discard(c.id)

    def set_timer(self, due: int, member: str) -> None:
        self.timers.add(member, due)

    def set_agent_state_sets(self, ag: _Agent, state: str) -> None:
        old, ag.st = ag.st, state
        staffed = (state != "offline") - (old != "offline")  # -1, 0 or 1
        available = (state == "available") - (old == "available")
        if staffed or available:
            for n in ag.counts:
                n.staffed += staffed
                n.available += available
        if staffed:
            most = max(ag.cap.values(), default=0)
            for n in ag.counts:
                n.places += staffed * most
                for ch, cap in ag.cap.items():
                    if cap > 0:
                        n.on[ch] = n.on.get(ch, 0) + staffed
                        n.slots[ch] = n.slots.get(ch, 0) + staffed * cap

    def queue_counts(self, queue: str) -> tuple[int, int]:
        """(staffed, available) of ``queue``: the sums of the script's q:<queue>:staffing."""
        n = self.queue_count.get(queue)
        return (0, 0) if n is None else (n.staffed, n.available)

    def keep_ended(self, c: _Contact) -> None:
        """The script's retention: Redis expires the ended contact (and its customer's history
        list) after the retention period, and prunes ids of expired contacts from a long list.
        The memory store keeps contacts for its lifetime, so no id of a list is ever gone."""

    def close_contact(self, c: _Contact, now: int) -> None:
        c.st, c.ended = "completed", now
        c.view, c.cb = None, ""
        self.keep_ended(c)
        if c.decl:
            self.forget_declines(c)
        ag = self.agents[c.agent]
        if c.id in ag.contacts:  # (the script drops what is there)
            ag.contacts.remove(c.id)
        self.release_capacity(ag, c.cc, now)
        self.match_agent(ag, now)
        self.emit_state(ag)  # after the offers: the load they take is in it
        self.refresh_free(ag)  # after matching: what it reserved is listed once

    def rescind_invalid(self, ag: _Agent, gained: list[str], now: int) -> list[_Contact]:
        out: list[_Contact] = []
        if not ag.offers:
            return out
        member = set(ag.qnames)
        for rid in sorted(ag.offers, key=_rid_order, reverse=True):  # newest first
            r = self.reservations[rid]
            ch = self.contacts[r.c].cc
            load = ag.load
            invalid = (r.q != "" and r.q not in member) or load.get(ch, 0) > ag.cap.get(ch, 0)
            for x in gained:
                if x != ch and load.get(x, 0) > 0:
                    invalid = True
            if invalid:
                c, _ = self.end_offer(rid, "rescinded", now, ag)
                self.emit({"t": "rescind", "a": ag.id, "r": rid, "c": c.id, "why": "agent_changed"})
                out.append(c)
        return out

    def go_offline(self, ag: _Agent, now: int) -> None:
        aid = ag.id
        requeued = []
        for rid in sorted(ag.offers):
            c, _ = self.end_offer(rid, "rescinded", now, ag)
            self.emit({"t": "rescind", "a": aid, "r": rid, "c": c.id, "why": "agent_offline"})
            requeued.append(c)
        self.set_agent_state_sets(ag, "offline")
        self.refresh_free(ag)
        self.emit_state(ag)
        # back in line once the agent is offline: a step waiting for it alone is passed
        for c in requeued:
            self.requeue(c, now)
        self.leave_agent_lines(aid, CAPACITY_CHANNELS, now, requeued)
        self.match_best_first(requeued, now)

    def instance_seen(self, inst: str, now: int, timeout: int) -> bool:
        known = inst in self.instances
        self.instances[inst] = now + timeout
        self.set_timer(now + timeout, "i|" + inst)
        return known

    def set_sockets(self, aid: str, inst: str, n: int) -> None:
        if n > 0:
            self.agent_sockets.setdefault(aid, {})[inst] = n
            self.instance_agents.setdefault(inst, set()).add(aid)
        else:
            socks = self.agent_sockets.get(aid)
            if socks is not None:
                socks.pop(inst, None)
                if not socks:
                    del self.agent_sockets[aid]
            agents = self.instance_agents.get(inst)
            if agents is not None:
                agents.discard(aid)
                if not agents:
                    del self.instance_agents[inst]

    def has_live_socket(self, aid: str, now: int) -> bool:
        for inst in self.agent_sockets.get(aid, {}):
            due = self.instances.get(inst)
            if due is not None and due > now:
                return True
        return False

    def leave_if_absent(self, aid: str, now: int, gone: list[str]) -> None:
        if self.has_live_socket(aid, now):
            return
        ag = self.agents.get(aid)
        if ag is not None and ag.st != "offline":
            self.go_offline(ag, now)
            gone.append(aid)

    # -------------------------------------------------------------------------- scripts

    def enqueue_contact(self, new: NewContact, now: int) -> Reply:
        idem = new.idempotency_key
        if idem != "":
            prev = self.idempotency.get(idem)
            if prev is not None and prev[2] > now:
                if prev[0] != new.idempotency_hash:
                    return self.finish(Code.IDEMPOTENCY_CONFLICT, {"first": prev[1]})
                return self.ok({"replay": True, "contact": self.contact_out(prev[1])})
            self.idempotency[idem] = (
                new.idempotency_hash,
                new.id,
                now + new.idempotency_ttl_s * 1000,
            )
        c = _Contact(new, now)
        self.contacts[c.id] = c
        if c.cust != "":
            hist = self.history.get(c.cust)
            if hist is None:
                hist = self.history[c.cust] = []
            hist.insert(0, c.id)  # (every contact of the customer: erasure reads them all)
        stats = self.counters(c.queue, now)
        stats["offered"] = stats.get("offered", 0) + 1
        # Matched at once, it never joins the waiting sets; otherwise it waits there (from the
        # first step somebody can answer).
        matched = self.match_contact(c, now, waiting=False)
        if not matched and self.step_dead(c) and self.pass_dead(c):
            matched = self.match_contact(c, now, waiting=False)
        step = c.steps[c.step]
        if step.timeout_ms > 0:
            self.set_timer(now + step.timeout_ms, self.step_timer(c))
        if not matched:
            self.add_waiting(c)
        return self.ok({"replay": False, "contact": self.contact_view(c)})

    def _check_reservation(self, rid: str, aid: str, now: int) -> Code:
        r = self.reservations.get(rid)
        if r is None:
            return Code.RESERVATION_NOT_FOUND
        if aid != "" and r.a != aid:
            return Code.NOT_YOUR_RESERVATION
        if r.st != "pending":
            return Code.RESERVATION_NOT_PENDING
        if now >= r.x:
            return Code.RESERVATION_EXPIRED
        return Code.OK

    def accept_reservation(self, rid: str, aid: str, now: int) -> Reply:
        code = self._check_reservation(rid, aid, now)
        if code == Code.RESERVATION_NOT_PENDING:
            r = self.reservations[rid]
            c = self.contacts[r.c]
            if r.st == "accepted" and c.st == "assigned" and c.agent == r.a and c.res == rid:
                # accepted again while still the agent's: the first answer, nothing changed
                wait = c.ans - c.enq
                out = {"contact": self.contact_view(c), "wait": wait, "within": wait <= c.slt}
                return self.ok({**out, "replay": True})
        if code != Code.OK:
            return self.finish(code)
        r = self.reservations[rid]
        c = self.contacts[r.c]
        r.st = "accepted"
        ag = self.agents[r.a]
        ag.offers.discard(rid)
        ag.contacts.append(c.id)
        timers = self.timers
        timers.remove("o|" + rid)
        if c.steps[c.step].timeout_ms > 0:  # only a step with a timeout has a timer
            timers.remove(f"s|{c.id}|{c.step}")
        if c.decl:
            self.forget_declines(c)
            c.decl = ()
        c.st, c.ans = "assigned", now
        wait = now - c.enq
        within = wait <= c.slt
        stats = self.counters(c.queue, now)
        stats["answered"] = stats.get("answered", 0) + 1
        stats["wait_ms"] = stats.get("wait_ms", 0) + wait
        if within:
            stats["answered_sl"] = stats.get("answered_sl", 0) + 1
        self.ev.append({"t": "assigned", "a": r.a, "r": rid, "c": c.id})
        out = {"contact": self.contact_view(c), "wait": wait, "within": within, "replay": False}
        return self.ok(out)

    def reject_reservation(self, rid: str, aid: str, now: int) -> Reply:
        code = self._check_reservation(rid, aid, now)
        if code != Code.OK:
            return self.finish(code)
        c, ag = self.end_offer(rid, "rejected", now)
        c.decl = [*c.decl, ag.id]
        ag.declined.add(c.id)
        self.requeue(c, now)
        self.save_agent_load(ag)
        self.refresh_free(ag)
        self.match_contact(c, now)
        self.match_agent(ag, now)
        return self.ok({"contact_id": c.id})

    def timeout_offer(self, rid: str, now: int) -> Reply:
        r = self.reservations.get(rid)
        if r is None or r.st != "pending":
            self.timers.remove("o|" + rid)
            return self.ok({"fired": False})
        if now < r.x:
            return self.ok({"fired": False})
        c, ag = self.end_offer(rid, "timeout", now)
        self.set_agent_state_sets(ag, "away")
        self.save_agent_load(ag)
        self.refresh_free(ag)
        self.emit({"t": "rescind", "a": ag.id, "r": rid, "c": c.id, "why": "timeout"})
        self.emit_state(ag)
        self.requeue(c, now)
        self.match_contact(c, now)
        return self.ok({"fired": True, "contact_id": c.id, "agent_id": ag.id})

    def abandon_contact(self, cid: str, now: int, why: str = "abandoned") -> Reply:
        c = self.contacts.get(cid)
        if c is None:
            return self.finish(Code.CONTACT_NOT_FOUND)
        if c.st == why:
            out = {"contact": self.contact_out(cid), "changed": False, "wait": 0, "short": False}
            return self.ok(out)
        ag = None
        if c.st == "offered":
            rid = c.res
            c, ag = self.end_offer(rid, "rescinded", now)
            self.save_agent_load(ag)
            self.refresh_free(ag)
            self.emit({"t": "rescind", "a": ag.id, "r": rid, "c": cid, "why": why})
        elif c.st == "queued":
            if c.hold > 0:
                self.remove_held(c)
            else:
                self.remove_waiting(c)
        else:
            return self.finish(Code.CONTACT_NOT_WAITING)
        c.st, c.ended, c.agent, c.res = why, now, "", ""
        c.view, c.cb = None, ""
        self.keep_ended(c)
        self.timers.remove(self.step_timer(c))
        self.timers.remove("b|" + cid)
        self.forget_declines(c)
        wait = now - c.enq
        short = wait < c.slt
        if why == "abandoned":
            self.count(c.queue, now, "abandoned")
            if short:
                self.count(c.queue, now, "abandoned_short")
        else:
            self.count(c.queue, now, "cancelled")
        self.emit({"t": "contact", "c": cid, "s": why})
        if ag is not None:
            self.match_agent(ag, now)
        out = {"contact": self.contact_out(cid), "changed": True, "wait": wait, "short": short}
        return self.ok(out)

    def complete_contact(self, cid: str, aid: str, wrap: int, disp: str, now: int) -> Reply:
        c = self.contacts.get(cid)
        if c is None:
            return self.finish(Code.CONTACT_NOT_FOUND)
        if c.st != "assigned":
            return self.finish(Code.CONTACT_NOT_ASSIGNED)
        if aid != "" and c.agent != aid:
            return self.finish(Code.NOT_YOUR_CONTACT)
        handle = now - c.ans
        stats = self.counters(c.queue, now)
        stats["handled"] = stats.get("handled", 0) + 1
        stats["handle_ms"] = stats.get("handle_ms", 0) + handle
        c.disp = disp
        if wrap > 0:
            stats["wrap_ms"] = stats.get("wrap_ms", 0) + wrap
            c.st = "wrapping"
            self.set_timer(now + wrap, "w|" + cid)
            self.emit({"t": "contact", "c": cid, "s": "wrapping"})
        else:
            self.close_contact(c, now)
            self.emit({"t": "contact", "c": cid, "s": "completed"})
        return self.ok({"contact": self.contact_view(c), "handle": handle})

    def end_wrapup(self, cid: str, now: int) -> Reply:
        self.timers.remove("w|" + cid)
        c = self.contacts.get(cid)
        if c is None or c.st != "wrapping":
            return self.ok({"fired": False})
        self.close_contact(c, now)
        self.emit({"t": "contact", "c": cid, "s": "completed"})
        return self.ok({"fired": True})

    def advance_step(self, cid: str, idx: int, now: int) -> Reply:
        self.timers.remove(f"s|{cid}|{idx}")
        c = self.contacts.get(cid)
        if (
            c is None
            or c.step != idx
            or (c.st != "queued" and c.st != "offered")
            or c.step + 1 >= len(c.steps)
        ):
            return self.ok({"fired": False, "step": -1})
        waiting = c.st == "queued" and c.hold == 0
        held = c.st == "queued" and c.hold > 0
        if waiting:
            self.remove_waiting(c)
        if held:
            self.remove_held(c)
        c.step += 1
        s = self.current_step(c)
        if s.queues and c.st != "offered":  # an offer's queue stays: an accept counts there
            c.queue = s.queues[0]
        if held:
            self.add_held(c)
        if waiting:
            self.add_waiting(c)
        if not ((waiting or held) and self.leave_dead_step(c, now)) and s.timeout_ms > 0:
            self.set_timer(now + s.timeout_ms, self.step_timer(c))
        if waiting:
            self.match_contact(c, now)
        return self.ok({"fired": True, "step": c.step})

    def voice_reachable(self, s: Step) -> bool:
        for q in s.queues:
            n = self.queue_count.get(q)
            if n is not None and n.channels.get("voice", 0) > 0:
                return True
        for aid in s.agents:
            ag = self.agents.get(aid)
            if ag is not None and ag.cap.get("voice", 0) > 0:
                return True
        return False

    def can_call_back(self, c: _Contact) -> bool:
        return any(self.voice_reachable(s) for s in c.steps[c.step :])

    def request_callback(self, cid: str, number: str, not_before: int, now: int) -> Reply:
        c = self.contacts.get(cid)
        if c is None:
            return self.finish(Code.CONTACT_NOT_FOUND)
        if c.st != "queued":
            return self.finish(Code.CONTACT_NOT_WAITING)
        if not self.can_call_back(c):
            return self.finish(Code.CALLBACK_UNAVAILABLE)
        if c.hold > 0:
            self.remove_held(c)
        else:
            self.remove_waiting(c)
        c.cc = "voice"
        c.ch, c.cb = "callback", number
        c.view = _callback_view(c.view, number)
        if not_before > now:
            c.hold = not_before
            self.add_held(c)
            self.set_timer(not_before, "b|" + cid)
            self.leave_dead_step(c, now)
        else:
            c.hold = 0
            self.timers.remove("b|" + cid)
            self.add_waiting(c)
            self.leave_dead_step(c, now)
            self.match_contact(c, now)
        return self.ok({"contact": self.contact_out(cid)})

    def release_callback(self, cid: str, now: int) -> Reply:
        c = self.contacts.get(cid)
        if c is not None and c.st == "queued" and c.hold > now:
            return self.ok({"fired": False})
        self.timers.remove("b|" + cid)
        if c is None or c.st != "queued" or c.hold == 0:
            return self.ok({"fired": False})
        self.remove_held(c)
        c.enq = max(c.enq, c.hold)  # its wait counts from when it was due
        c.hold = 0
        self.add_waiting(c)
        self.leave_dead_step(c, now)
        self.match_contact(c, now)
        return self.ok({"fired": True})

    def set_agent_state(self, aid: str, state: str, now: int) -> Reply:
        ag = self.agents.get(aid)
        if ag is None:
            return self.finish(Code.AGENT_NOT_FOUND)
        if ag.st == state:
            return self.ok({"agent": self.agent_out(aid), "changed": False})
        if state == "offline":  # (agent_offline.lua)
            self.go_offline(ag, now)
            return self.ok({"agent": self.agent_out(aid), "changed": True})
        self.set_agent_state_sets(ag, state)
        if state == "available":
            ag.idle = now
            self.match_agent(ag, now)
            self.emit_state(ag)  # after the offers: the load they take is in it
            self.refresh_free(ag)  # after matching: what it reserved is listed once
            return self.ok({"agent": self.agent_out(aid), "changed": True})
        self.refresh_free(ag)
        self.emit_state(ag)
        return self.ok({"agent": self.agent_out(aid), "changed": True})

    def upsert_agent(self, spec: AgentSpec, now: int) -> Reply:
        ag = self.agents.get(spec.id)
        created = ag is None
        if ag is None:
            ag = self.agents[spec.id] = _Agent(spec.id, now)
        keep = {m[0] for m in spec.memberships}
        for ticket in ag.listed.values():
            ticket.clear()  # out of every free set
        for q, _, _ in ag.qs:
            if q not in keep:
                self.queue_members.setdefault(q, set()).discard(ag.id)
        staffed, available = ag.st != "offline", ag.st == "available"
        for n in ag.counts:  # counted again below, in its new queues
            n.staffed -= staffed
            n.available -= available
            n.places -= staffed * max(ag.cap.values(), default=0)
            for ch, cap in ag.cap.items():
                n.channels[ch] -= cap > 0
                if staffed and cap > 0:
                    n.on[ch] -= 1
                    n.slots[ch] -= cap
        # the channels made exclusive by this change
        gained = [x for x in spec.exclusive if x not in ag.excl] if ag.offers else []
        ag.cap = dict(spec.capacity)
        ag.qs = [(q, s, float(level)) for q, s, level in spec.memberships]
        ag.qnames = [q for q, _, _ in ag.qs]
        ag.lb = any(s == "least_busy" for _, s, _ in ag.qs)
        levels = {q: (s, lvl) for q, s, lvl in ag.qs}  # one entry per set: the last, as ZADD
        ag.free_sets = {
            ch: [(_freeset(self.queue_free, (q, ch)), s, lvl) for q, (s, lvl) in levels.items()]
            for ch in ag.cap
        }
        ag.wait_sets = {
            ch: [_zset(self.queue_waiting, (q, ch), q) for q, _, _ in ag.qs] for ch in ag.cap
        }
        counts = self.queue_count
        ag.counts = [counts.setdefault(q, _QueueCount()) for q in levels]
        for n in ag.counts:
            n.staffed += staffed
            n.available += available
            n.places += staffed * max(ag.cap.values(), default=0)
            for ch, cap in ag.cap.items():
                n.channels[ch] = n.channels.get(ch, 0) + (cap > 0)
                if staffed and cap > 0:
                    n.on[ch] = n.on.get(ch, 0) + 1
                    n.slots[ch] = n.slots.get(ch, 0) + cap
        ag.excl = list(spec.exclusive)
        rescinded = self.rescind_invalid(ag, gained, now)
        ag.doc = spec.doc
        ag.parsed = None
        ag.listed = {}  # unlisted everywhere above
        for q, _, _ in ag.qs:
            self.queue_members.setdefault(q, set()).add(ag.id)
        self.refresh_free(ag)
        if ag.st == "available":
            self.match_agent(ag, now)
        # the contacts of the rescinded offers back in line, once the agent took what waits
        for c in rescinded:
            self.requeue(c, now)
        # contacts waiting for it by name on a channel it no longer has capacity on
        lost = [ch for ch in CAPACITY_CHANNELS if ag.cap.get(ch, 0) == 0]
        self.leave_agent_lines(ag.id, lost, now, rescinded)
        self.match_best_first(rescinded, now)
        return self.ok({"agent": self.agent_out(ag.id), "created": created})

    def claim_timers(self, now: int, limit: int, lease: int) -> Reply:
        due = self.timers.range_by_score(now, limit)
        for member in due:
            self.timers.update_existing(member, now + lease)
        first = self.timers.lowest()
        return self.ok({"timers": due, "next": -1 if first == _NEVER else first})

    def contact_status(self, cid: str) -> Reply:
        out = self.contact_out(cid)
        if out is None:
            return self.finish(Code.CONTACT_NOT_FOUND)
        return self.ok({"contact": out})

    def agent_status(self, aid: str) -> Reply:
        out = self.agent_out(aid)
        if out is None:
            return self.finish(Code.AGENT_NOT_FOUND)
        return self.ok({"agent": out})

    def queue_snapshot(self, queues: list[str], channels: list[str], now: int) -> Reply:
        out = []
        for q in queues:
            waiting = free = 0
            for ch in channels:
                waiting += len(self.queue_waiting.get((q, ch), ()))
                free = max(free, len(self.queue_free.get((q, ch), ())))
            age = self.queue_age.get(q)
            first = _NEVER if age is None else age.lowest()
            staffed, available = self.queue_counts(q)
            count = self.queue_count.get(q)
            out.append(
                {
                    "name": q,
                    "waiting": waiting,
                    "held": len(self.queue_held.get(q, ())),
                    "oldest": -1 if first == _NEVER else first,
                    "staffed": staffed,
                    "available": available,
                    "free": free,
                    "places": 0 if count is None else count.places,
                    "stats": dict(self.stats.get((q, now // 86400000), {})),
                }
            )
        return self.ok({"queues": out})

    def list_agents(self) -> Reply:
        out = [[aid, ag.doc, json.dumps(ag.cap)] for aid, ag in sorted(self.agents.items())]
        return self.ok({"agents": out})

    def agent_offers(self, aid: str) -> Reply:
        if aid not in self.agents:
            return self.finish(Code.AGENT_NOT_FOUND)
        out = []
        for rid in self.agents[aid].offers:
            r = self.reservations.get(rid)
            if r is not None and r.st == "pending":
                view = self.contacts[r.c].view or "{}"
                out.append({"r": rid, "c": r.c, "x": r.x, "q": r.q, "view": view})
        return self.ok({"offers": out})

    def list_contacts(self, queues: list[str], agents: list[str], callbacks: bool) -> Reply:
        out: list[str] = []
        for q in queues:
            out += self.queue_age.get(q, ())
            out += self.queue_held.get(q, ())
        for aid in agents:
            for ch in CAPACITY_CHANNELS:
                out += self.agent_waiting.get((aid, ch), ())
        if callbacks:
            out += [member[2:] for member in self.timers if member.startswith("b|")]
        return self.ok({"contacts": out})

    def read_workflows(self, cids: list[str]) -> Reply:
        out = []
        for cid in cids:
            c = self.contacts.get(cid)
            if c is not None and c.st in ("queued", "offered"):
                queues: list[str] = []
                for s in c.steps[c.step :]:
                    queues += (q for q in s.queues if q not in queues)
                out.append([cid, queues])
        return self.ok({"contacts": out})

    def read_view(self, cid: str) -> Reply:
        c = self.contacts.get(cid)
        if c is None or c.st not in ("queued", "offered") or c.view is None:
            return self.ok({"view": False})
        return self.ok({"view": c.view})

    def replace_view(self, cid: str, old: str, new: str) -> Reply:
        c = self.contacts.get(cid)
        if c is None or c.st not in ("queued", "offered") or c.view != old:
            return self.ok({"replaced": False})
        c.view = new
        return self.ok({"replaced": True})

    def socket_opened(self, aid: str, inst: str, n: int, now: int, timeout: int) -> Reply:
        if aid not in self.agents:
            return self.finish(Code.AGENT_NOT_FOUND)
        known = self.instance_seen(inst, now, timeout)
        self.set_sockets(aid, inst, max(n, 1))
        return self.ok({"known": known, "offline": []})

    def socket_closed(self, aid: str, inst: str, n: int, now: int) -> Reply:
        if aid not in self.agents:
            return self.finish(Code.AGENT_NOT_FOUND)
        known = inst in self.instances
        n = max(n, 0)
        # (an unknown instance, swept while it lived on, sends every socket it holds with its
        # next beat: sockets recorded for it now would only be swept again)
        if known or n == 0:
            self.set_sockets(aid, inst, n)
        gone: list[str] = []
        if n == 0:
            self.leave_if_absent(aid, now, gone)
        return self.ok({"known": known, "offline": gone})

    def instance_beat(
        self, inst: str, now: int, timeout: int, sync: dict[str, int] | None
    ) -> Reply:
        known = self.instance_seen(inst, now, timeout)
        gone: list[str] = []
        if sync is not None:
            for aid in sorted(sync):
                if aid in self.agents:  # (an agent that does not exist is not recorded)
                    self.set_sockets(aid, inst, sync[aid])
            dropped = [aid for aid in sorted(self.instance_agents.get(inst, ())) if aid not in sync]
            for aid in dropped:
                self.set_sockets(aid, inst, 0)
                self.leave_if_absent(aid, now, gone)
        return self.ok({"known": known, "offline": gone})

    def sweep_instance(self, inst: str, now: int) -> Reply:
        member = "i|" + inst
        self.timers.remove(member)
        due = self.instances.get(inst)
        if due is not None and due > now:
            self.set_timer(due, member)
            return self.ok({"fired": False})
        if due is not None:
            del self.instances[inst]
        agents = sorted(self.instance_agents.get(inst, ()))[:SWEEP_BATCH]
        if not agents:
            return self.ok({"fired": due is not None})
        gone: list[str] = []
        for aid in agents:
            self.set_sockets(aid, inst, 0)
            self.leave_if_absent(aid, now, gone)
        if inst in self.instance_agents:
            self.set_timer(now, member)
        return self.ok({"fired": True, "offline": gone})

    def fire_timer(self, member: str, now: int) -> Reply:
        kind, args = c_.parse_timer(member)
        if kind == "o":
            return self.timeout_offer(args[0], now)
        if kind == "s":
            return self.advance_step(args[0], int(args[1]), now)
        if kind == "w":
            return self.end_wrapup(args[0], now)
        if kind == "i":
            return self.sweep_instance(args[0], now)
        return self.release_callback(args[0], now)


class MemoryStore(Store):
    """The store contract over ``TenantCore`` objects, one per tenant."""

    def __init__(self) -> None:
        self.tenants: dict[str, TenantCore] = {}

    def core(self, tenant: str) -> TenantCore:
        core = self.tenants.get(tenant)
        if core is None:
            core = self.tenants[tenant] = TenantCore()
        return core

    async def enqueue(self, tenant: str, contact: NewContact, now: int) -> Outcome[Enqueued]:
        payload, ev = c_.unpack(self.core(tenant).enqueue_contact(contact, now), contact=contact.id)
        return Outcome(Enqueued(payload["contact"], payload["replay"]), ev)

    async def accept(
        self, tenant: str, reservation_id: str, agent_id: str | None, now: int
    ) -> Outcome[Accepted]:
        reply = self.core(tenant).accept_reservation(reservation_id, agent_id or "", now)
        payload, ev = c_.unpack(reply, reservation=reservation_id)
        value = Accepted(payload["contact"], payload["wait"], payload["within"], payload["replay"])
        return Outcome(value, ev)

    async def reject(
        self, tenant: str, reservation_id: str, agent_id: str | None, now: int
    ) -> Outcome[str]:
        reply = self.core(tenant).reject_reservation(reservation_id, agent_id or "", now)
        return c_.rejected(reply, reservation_id)

    async def abandon(
        self, tenant: str, contact_id: str, now: int, why: EndReason = "abandoned"
    ) -> Outcome[Abandoned]:
        reply = self.core(tenant).abandon_contact(contact_id, now, why)
        payload, ev = c_.unpack(reply, contact=contact_id)
        value = Abandoned(payload["contact"], payload["changed"], payload["wait"], payload["short"])
        return Outcome(value, ev)

    async def complete(
        self,
        tenant: str,
        contact_id: str,
        agent_id: str | None,
        wrap_up_ms: int,
        disposition: str,
        now: int,
    ) -> Outcome[Completed]:
        reply = self.core(tenant).complete_contact(
            contact_id, agent_id or "", wrap_up_ms, disposition, now
        )
        payload, ev = c_.unpack(reply, contact=contact_id)
        return Outcome(Completed(payload["contact"], payload["handle"]), ev)

    async def request_callback(
        self, tenant: str, contact_id: str, number: str, not_before: int, now: int
    ) -> Outcome[ContactState]:
        reply = self.core(tenant).request_callback(contact_id, number, not_before, now)
        payload, ev = c_.unpack(reply, contact=contact_id)
        return Outcome(payload["contact"], ev)

    async def upsert_agent(
        self, tenant: str, spec: AgentSpec, now: int
    ) -> Outcome[tuple[AgentState, bool]]:
        payload, ev = c_.unpack(self.core(tenant).upsert_agent(spec, now), agent=spec.id)
        return Outcome((payload["agent"], bool(payload["created"])), ev)

    async def set_agent_state(
        self, tenant: str, agent_id: str, state: AgentStateName, now: int
    ) -> Outcome[tuple[AgentState, bool]]:
        reply = self.core(tenant).set_agent_state(agent_id, state, now)
        payload, ev = c_.unpack(reply, agent=agent_id)
        return Outcome((payload["agent"], bool(payload["changed"])), ev)

    async def socket_opened(
        self, tenant: str, agent_id: str, instance: str, sockets: int, now: int, timeout_ms: int
    ) -> Outcome[Presence]:
        reply = self.core(tenant).socket_opened(agent_id, instance, sockets, now, timeout_ms)
        return c_.presence(reply, agent=agent_id)

    async def socket_closed(
        self, tenant: str, agent_id: str, instance: str, sockets: int, now: int
    ) -> Outcome[Presence]:
        reply = self.core(tenant).socket_closed(agent_id, instance, sockets, now)
        return c_.presence(reply, agent=agent_id)

    async def instance_beat(
        self,
        tenant: str,
        instance: str,
        now: int,
        timeout_ms: int,
        sockets: dict[str, int] | None = None,
    ) -> Outcome[Presence]:
        sync = None if sockets is None else dict(sockets)
        return c_.presence(self.core(tenant).instance_beat(instance, now, timeout_ms, sync))

    async def claim_timers(self, tenant: str, now: int, limit: int, lease_ms: int) -> TimerClaim:
        return c_.timer_claim(self.core(tenant).claim_timers(now, limit, lease_ms))

    async def fire_timer(self, tenant: str, timer: str, now: int) -> Outcome[bool]:
        return c_.fired(self.core(tenant).fire_timer(timer, now))

    async def contact_status(self, tenant: str, contact_id: str) -> ContactState:
        payload, _ = c_.unpack(self.core(tenant).contact_status(contact_id), contact=contact_id)
        state: ContactState = payload["contact"]
        return state

    async def agent_status(self, tenant: str, agent_id: str) -> AgentState:
        payload, _ = c_.unpack(self.core(tenant).agent_status(agent_id), agent=agent_id)
        state: AgentState = payload["agent"]
        return state

    async def queue_snapshot(self, tenant: str, queues: list[str], now: int) -> list[QueueSnapshot]:
        reply = self.core(tenant).queue_snapshot(queues, list(c_.CAPACITY_CHANNELS), now)
        return c_.snapshots(reply)

    async def list_agents(self, tenant: str) -> list[tuple[str, dict[str, Any], dict[str, int]]]:
        return c_.agent_list(self.core(tenant).list_agents())

    async def pending_offers(self, tenant: str, agent_id: str) -> list[PendingOffer]:
        return c_.pending_offers(self.core(tenant).agent_offers(agent_id), agent_id)

    async def list_contacts(
        self, tenant: str, queues: list[str], agents: list[str], callbacks: bool = False
    ) -> list[str]:
        return c_.contact_ids(self.core(tenant).list_contacts(queues, agents, callbacks))

    async def workflow_queues(self, tenant: str, contact_ids: list[str]) -> dict[str, list[str]]:
        return c_.workflows(self.core(tenant).read_workflows(contact_ids))

    async def contact_view(self, tenant: str, contact_id: str) -> str | None:
        return c_.view_text(self.core(tenant).read_view(contact_id))

    async def replace_view(self, tenant: str, contact_id: str, old: str, new: str) -> bool:
        return c_.view_replaced(self.core(tenant).replace_view(contact_id, old, new))
