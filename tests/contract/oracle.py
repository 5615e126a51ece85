"""The state machine's oracle: what a correct store does, from the records alone.

``CheckedCore`` checks every reservation the memory store makes against the routing rules
(best contact for the agent, best agent for the contact) as it is made; ``check_core`` checks
that every index of the memory store agrees with its records. ``test_state_machine`` drives
both through random operation sequences.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from queues.contract import CONTACT_STATUSES
from queues.memory import MemoryStore, TenantCore, _Agent, _Contact

QUEUES = ("q1", "q2")
HELD = ("offered", "assigned", "wrapping")  # statuses that use a unit of agent capacity
TAKEN = ("assigned", "wrapping")  # statuses of the contacts an agent lists as its own


def present(
    recorded: dict[tuple[str, str], int], deadlines: dict[str, int], aid: str, now: int
) -> bool:
    """The spec of presence: the agent has a socket recorded on an instance whose deadline is
    after ``now``. ``recorded``: (instance, agent) -> sockets; ``deadlines``: instance -> ms."""
    return any(
        n > 0 and a == aid and deadlines.get(inst, now) > now for (inst, a), n in recorded.items()
    )


def free_for(ag: _Agent, ch: str) -> bool:
    """The spec of free capacity: available, below capacity, no contact on an exclusive channel
    other than ``ch`` (an exclusive channel blocks the others; its own capacity limits itself)."""
    return (
        ag.st == "available"
        and ag.load.get(ch, 0) < ag.cap.get(ch, 0)
        and all(x == ch or ag.load.get(x, 0) == 0 for x in ag.excl)
    )


def may_take(ag: _Agent, c: _Contact) -> bool:
    """Whether ``ag`` may be offered ``c`` now, from the two records alone (no index sets)."""
    if c.st != "queued" or c.hold != 0 or ag.id in c.decl or not free_for(ag, c.cc):
        return False
    step = c.steps[c.step]
    return ag.id in step.agents or any(q in step.queues for q, _, _ in ag.qs)


def answerable(core: TenantCore, c: _Contact) -> bool:
    """Somebody could answer ``c``'s current step: it names a queue, or an agent who exists, is
    not offline, has capacity on the contact's channel and has not declined it."""
    step = c.steps[c.step]
    if step.queues:
        return True
    for aid in step.agents:
        ag = core.agents.get(aid)
        able = ag is not None and ag.st != "offline" and ag.cap.get(c.cc, 0) > 0
        if able and aid not in c.decl:
            return True
    return False


def lines_of(core: TenantCore, c: _Contact) -> tuple[int, int, list[tuple[str, int, int]]]:
    """The spec of a queued contact's place, from the records alone: (position, staffed,
    lines). A line per set it waits in (its step's queues, then its named agents): its place
    there is one more than the contacts waiting there ahead of it (a held callback: those with
    a sort key up to its own); its staffing, the capacity on the contact's channel of the
    queue's members not offline, or of the named agent when not offline. Its position
    is its best place among the lines somebody staffs (among all, when none is staffed);
    ``staffed`` the most agents staffing one of its queues for it, plus the named agents who
    do."""
    step = c.steps[c.step]

    def place(waits_there: Any) -> int:
        ahead = [
            x
            for x in core.contacts.values()
            if x.st == "queued" and x.hold == 0 and x.cc == c.cc and waits_there(x)
        ]
        if c.hold:
            return 1 + sum(x.key <= c.key for x in ahead)
        return 1 + sum((x.key, x.id) < (c.key, c.id) for x in ahead)

    lines: list[tuple[str, int, int]] = []
    best = 0
    for q in step.queues:
        members = [ag for ag in core.agents.values() if q in [mq for mq, _, _ in ag.qs]]
        signed_in = [ag for ag in members if ag.st != "offline"]
        best = max(best, sum(ag.cap.get(c.cc, 0) > 0 for ag in signed_in))
        slots = sum(ag.cap.get(c.cc, 0) for ag in signed_in)
        lines.append((q, place(lambda x, q=q: q in x.steps[x.step].queues), slots))
    named = 0
    for aid in step.agents:
        ag = core.agents.get(aid)
        slots = ag.cap.get(c.cc, 0) if ag is not None and ag.st != "offline" else 0
        named += slots > 0
        lines.append(("", place(lambda x, aid=aid: aid in x.steps[x.step].agents), slots))
    staffed_places = [at for _, at, here in lines if here > 0]
    position = min(staffed_places or [at for _, at, _ in lines], default=1)
    return position, best + named, lines


def could_call_back(core: TenantCore, c: _Contact) -> bool:
    """The spec of a callback that can be made: a queue of the contact's current or a later
    step has a member with voice capacity (in any state), or such a step names an agent with
    voice capacity."""
    for step in c.steps[c.step :]:
        for ag in core.agents.values():
            if ag.cap.get("voice", 0) > 0 and (
                ag.id in step.agents or any(q in step.queues for q, _, _ in ag.qs)
            ):
                return True
    return False


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
        if c.st == "queued" and c.hold == 0 and c.step + 1 < len(c.steps):
            assert answerable(core, c), f"{c.id} waits out step {c.step}, which nobody can answer"
        mine = [r for r in reservations.values() if r.c == c.id]
        assert sum(r.st == "accepted" for r in mine) <= 1, f"{c.id} accepted twice"
        assert sum(r.st == "pending" for r in mine) == (c.st == "offered")
        if c.st in ("queued", "abandoned", "cancelled"):
            assert (c.agent, c.res) == ("", "")
        if c.st in ("completed", "abandoned", "cancelled"):
            assert (c.view, c.cb) == (None, ""), f"{c.id} ended keeping its view or callback number"
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
            # an offer from a queue stands while the agent is a member (one by name, q "",
            # whatever its queues), and within its capacity on the channel (upsert_agent
            # rescinds what a change of profile leaves outside)
            ag, cc = agents[r.a], contacts[r.c].cc
            assert r.q == "" or r.q in ag.qnames, f"{rid} pending from {r.q}, {r.a} left it"
            assert ag.load.get(cc, 0) <= ag.cap.get(cc, 0), f"{rid} pending over {r.a}'s {cc}"
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
        # the contacts it lists: exactly those it accepted and still holds, each once
        taken = {c.id for c in contacts.values() if c.st in TAKEN and c.agent == ag.id}
        assert len(ag.contacts) == len(taken), ag.contacts
        assert set(ag.contacts) == taken, ag.contacts
        names = [q for q, _, _ in ag.qs]
        for q in QUEUES:
            assert (ag.id in core.queue_members.get(q, set())) == (q in names)
        for c in contacts.values():
            assert not may_take(ag, c), f"{ag.id} is free for waiting {c.id} but idle"
    for q in QUEUES:
        members = [ag for ag in agents.values() if q in [mq for mq, _, _ in ag.qs]]
        staffed = sum(ag.st != "offline" for ag in members)
        available = sum(ag.st == "available" for ag in members)
        assert core.queue_counts(q) == (staffed, available), f"{q} staffing"
        count = core.queue_count.get(q)
        for ch in ("voice", "chat", "email", "sms"):
            signed_in = sum(ag.st != "offline" and ag.cap.get(ch, 0) > 0 for ag in members)
            assert (count.on.get(ch, 0) if count else 0) == signed_in, f"{q} {ch} signed in"
            slots = sum(ag.cap.get(ch, 0) for ag in members if ag.st != "offline")
            assert (count.slots.get(ch, 0) if count else 0) == slots, f"{q} {ch} capacity"
        most = sum(max(ag.cap.values(), default=0) for ag in members if ag.st != "offline")
        assert (count.places if count else 0) == most, f"{q} places"
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
    by_instance: dict[str, set[str]] = {}
    for aid, socks in core.agent_sockets.items():
        assert aid in agents, f"sockets of unknown agent {aid}"
        assert socks, f"{aid} kept an empty record of sockets"
        assert all(n > 0 for n in socks.values()), f"{aid} recorded with no socket: {socks}"
        for inst in socks:
            by_instance.setdefault(inst, set()).add(aid)
    assert by_instance == core.instance_agents
    for inst in core.instances:
        assert f"i|{inst}" in due, f"live instance {inst} has no sweep timer"
