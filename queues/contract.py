"""The store contract: every atomic state transition of contacts, agents and reservations.

``Store`` is the spec. ``RedisStore`` runs each method as one Lua script (``queues/lua``);
``MemoryStore`` mirrors the scripts branch for branch in Python. Both return the same raw
reply, ``[code, payload, events]``, which the decoders here turn into typed results, so one
contract test suite and one differential property test hold them to identical behaviour.

All times are integer milliseconds passed in by the caller; the stores never read a clock.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from queues.errors import raise_for

T = TypeVar("T")

AgentStateName = Literal["available", "away", "offline"]
AGENT_STATES: tuple[AgentStateName, ...] = ("available", "away", "offline")
CAPACITY_CHANNELS = ("voice", "chat", "email", "sms")
CONTACT_STATUSES = (
    "queued", "offered", "assigned", "wrapping", "completed", "abandoned", "cancelled",
)  # fmt: skip
#: how a contact ends before an agent takes it: the customer left, or the gateway withdrew it
EndReason = Literal["abandoned", "cancelled"]
#: days a contact is kept once it has ended (RedisStore; SWITCHBOARD_CONTACT_RETENTION_DAYS)
CONTACT_RETENTION_DAYS = 90

#: One event: {"t": kind, ...}. Kinds: offer {a, r, c, x, q}, rescind {a, r, c, why},
#: assigned {a, r, c}, state {a, s, l}, contact {c, s}.
Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Step:
    """One workflow step: who may take the contact, and for how long before the next step."""

    queues: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    timeout_ms: int = 0  # 0: no escalation (the last step)
    #: how long an offer to one of ``agents`` stands (ms); 0: the contact's default for offers
    #: by name (``NewContact.offer_timeouts_ms[""]``)
    agent_offer_ms: int = 0

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"q": list(self.queues), "a": list(self.agents), "t": self.timeout_ms}
        if self.agent_offer_ms:
            out["ao"] = self.agent_offer_ms
        return out


@dataclass(slots=True)
class NewContact:
    """Everything the engine decided about a new contact, ready for one atomic enqueue."""

    id: str
    channel: str
    capacity_channel: str
    sort_key_ms: int
    steps: list[Step]
    offer_timeouts_ms: dict[str, int]
    sl_threshold_ms: int
    home_queue: str
    doc: str
    view: str = "{}"
    customer_id: str = ""
    idempotency_key: str = ""
    idempotency_hash: str = ""
    idempotency_ttl_s: int = 86400

    def steps_json(self) -> str:
        return json.dumps([s.wire() for s in self.steps], separators=(",", ":"))


@dataclass(slots=True)
class AgentSpec:
    """An agent's profile as the store keeps it: membership is already computed."""

    id: str
    doc: str
    capacity: dict[str, int]
    memberships: list[tuple[str, str, float]]  # (queue, strategy, skill level)
    exclusive: list[str] = field(default_factory=lambda: ["voice"])


@dataclass(slots=True)
class ContactState:
    id: str
    doc: dict[str, Any]
    status: str
    channel: str
    queue: str
    agent_id: str | None
    reservation_id: str | None
    position: int | None
    staffed: int
    disposition: str | None
    #: a callback held out of line until this time (ms), else 0
    hold_ms: int = 0
    #: while queued, each set it waits in: (queue, or "" for an agent its step names, its
    #: place there, the capacity staffed there for it: how many contacts on its channel the
    #: agents signed in there can hold at once); ``position`` is the best of these places
    lines: list[tuple[str, int, int]] = field(default_factory=list)


@dataclass(slots=True)
class AgentState:
    id: str
    doc: dict[str, Any]
    state: str
    capacity: dict[str, int]
    load: dict[str, int]
    queues: list[str]
    reservations: list[str]
    #: the contacts it holds (assigned, or wrapping up), in the order it accepted them
    contacts: list[str] = field(default_factory=list)


@dataclass(slots=True)
class QueueSnapshot:
    name: str
    waiting: int
    oldest_enqueued_ms: int | None
    staffed: int
    available: int  # in state available (busy or not)
    stats: dict[str, int]
    #: the most agents with free capacity on one channel (a new contact of that channel is
    #: offered at once)
    free: int = 0
    #: scheduled callbacks, out of line until their time (not in ``waiting``)
    held: int = 0
    #: the contacts the agents staffed can hold at once, each agent counted for the most it
    #: takes on one channel (a chat agent of capacity 3 counts 3): the queue's estimate
    places: int = 0


@dataclass(slots=True)
class Outcome(Generic[T]):
    """A transition's result and the events it produced (already published by Redis)."""

    value: T
    events: list[Event]


@dataclass(slots=True)
class Enqueued:
    contact: ContactState
    replay: bool


@dataclass(slots=True)
class Accepted:
    contact: ContactState
    wait_ms: int
    within_threshold: bool
    #: an accept repeated while the contact is still the agent's: the first answer again, and
    #: nothing changed (no events; not to be counted again)
    replay: bool = False


@dataclass(slots=True)
class Abandoned:
    contact: ContactState
    changed: bool
    wait_ms: int
    short: bool  # left before the service-level threshold


@dataclass(slots=True)
class Completed:
    contact: ContactState
    handle_ms: int


@dataclass(slots=True)
class PendingOffer:
    reservation_id: str
    contact_id: str
    expires_ms: int
    queue: str
    view: dict[str, Any]


@dataclass(slots=True)
class Presence:
    """What a presence call (socket opened or closed, instance beat) found and did."""

    #: the instance had a record before the call; False: its first call, or it was swept as
    #: dead since (its sockets were dropped: ``instance_beat`` with its sockets restores them)
    known: bool
    #: the agents the call set offline (left with no socket on any live instance)
    offline: list[str]


@dataclass(slots=True)
class TimerClaim:
    timers: list[str]
    next_due_ms: int | None


# ------------------------------------------------------------------------------ decoding


def _list(value: Any) -> list[Any]:
    # cjson encodes an empty Lua table as {}: an empty list reads back as a dict.
    return list(value) if value else []


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if value else {}


def unpack(reply: list[Any], **ids: str) -> tuple[Any, list[Event]]:
    """Raise for an error code, else return (payload, events). An error's payload fields (the
    identity taken and its owner, the contact an Idempotency-Key first made) join its ids."""
    code, payload, events = reply
    if code:
        if isinstance(payload, dict):
            ids = {**{k: str(v) for k, v in payload.items()}, **ids}
        raise_for(code, **ids)
    return payload, events if type(events) is list else _list(events)


def contact_state(raw: dict[str, Any]) -> ContactState:
    # RedisStore's replies carry the document parsed already (written into the reply JSON as
    # stored), MemoryStore's too; a document given as text is parsed here.
    doc = raw["doc"]
    parsed: dict[str, Any] = json.loads(doc) if type(doc) is str else doc
    st = raw["st"]
    # (positional: this runs once per routing decision)
    return ContactState(
        parsed["id"],
        parsed,
        st,
        raw["ch"],
        raw["queue"],
        raw["agent"] or None,
        raw["res"] or None,
        raw["pos"] if st == "queued" else None,
        raw["staffed"],
        raw["disp"] or None,
        int(raw.get("hold", 0)),
        [(q, rank, n) for q, rank, n in raw["lines"]] if "lines" in raw else [],
    )


def agent_state(agent_id: str, raw: dict[str, Any]) -> AgentState:
    return AgentState(
        id=agent_id,
        doc=json.loads(doc) if isinstance(doc := raw["doc"], str) else doc,
        state=raw["st"],
        capacity=_dict(raw["cap"]),
        load=_dict(raw["load"]),
        queues=_list(raw["queues"]),
        reservations=sorted(_list(raw["offers"]), key=_rid_order),
        contacts=_list(raw["contacts"]),
    )


def _rid_order(rid: str) -> tuple[int, str]:
    return (len(rid), rid)


def queue_snapshot(raw: dict[str, Any]) -> QueueSnapshot:
    oldest = raw["oldest"]
    return QueueSnapshot(
        name=raw["name"],
        waiting=raw["waiting"],
        oldest_enqueued_ms=None if oldest < 0 else int(oldest),
        staffed=raw["staffed"],
        available=raw["available"],
        stats={k: int(v) for k, v in _dict(raw["stats"]).items()},
        free=raw["free"],
        held=raw["held"],
        places=raw["places"],
    )


def accepted(reply: list[Any], reservation_id: str) -> Outcome[Accepted]:
    payload, ev = unpack(reply, reservation=reservation_id)
    value = Accepted(
        contact_state(payload["contact"]), payload["wait"], payload["within"], payload["replay"]
    )
    return Outcome(value, ev)


def rejected(reply: list[Any], reservation_id: str) -> Outcome[str]:
    payload, ev = unpack(reply, reservation=reservation_id)
    return Outcome(payload["contact_id"], ev)


def abandoned(reply: list[Any], contact_id: str) -> Outcome[Abandoned]:
    payload, ev = unpack(reply, contact=contact_id)
    value = Abandoned(
        contact_state(payload["contact"]), payload["changed"], payload["wait"], payload["short"]
    )
    return Outcome(value, ev)


def completed(reply: list[Any], contact_id: str) -> Outcome[Completed]:
    payload, ev = unpack(reply, contact=contact_id)
    return Outcome(Completed(contact_state(payload["contact"]), payload["handle"]), ev)


def contact_outcome(reply: list[Any], contact_id: str) -> Outcome[ContactState]:
    payload, ev = unpack(reply, contact=contact_id)
    return Outcome(contact_state(payload["contact"]), ev)


def agent_outcome(reply: list[Any], agent_id: str, flag: str) -> Outcome[tuple[AgentState, bool]]:
    payload, ev = unpack(reply, agent=agent_id)
    return Outcome((agent_state(agent_id, payload["agent"]), bool(payload[flag])), ev)


def timer_claim(reply: list[Any]) -> TimerClaim:
    payload, _ = unpack(reply)
    next_due = payload["next"]
    return TimerClaim(_list(payload["timers"]), None if next_due < 0 else int(next_due))


def presence(reply: list[Any], **ids: str) -> Outcome[Presence]:
    payload, ev = unpack(reply, **ids)
    return Outcome(Presence(bool(payload["known"]), _list(payload["offline"])), ev)


def fired(reply: list[Any]) -> Outcome[bool]:
    payload, ev = unpack(reply)
    return Outcome(bool(payload["fired"]), ev)


def snapshots(reply: list[Any]) -> list[QueueSnapshot]:
    payload, _ = unpack(reply)
    return [queue_snapshot(q) for q in _list(payload["queues"])]


def pending_offers(reply: list[Any], agent_id: str) -> list[PendingOffer]:
    payload, _ = unpack(reply, agent=agent_id)
    offers = [
        PendingOffer(o["r"], o["c"], int(o["x"]), o["q"], json.loads(o["view"] or "{}"))
        for o in _list(payload["offers"])
    ]
    return sorted(offers, key=lambda o: _rid_order(o.reservation_id))


def contact_ids(reply: list[Any]) -> list[str]:
    payload, _ = unpack(reply)
    return sorted(set(_list(payload["contacts"])))


def workflows(reply: list[Any]) -> dict[str, list[str]]:
    payload, _ = unpack(reply)
    return {cid: _list(queues) for cid, queues in _list(payload["contacts"])}


def agent_list(reply: list[Any]) -> list[tuple[str, dict[str, Any], dict[str, int]]]:
    payload, _ = unpack(reply)
    return [(aid, json.loads(doc), json.loads(cap)) for aid, doc, cap in _list(payload["agents"])]


# ------------------------------------------------------------------------------ contract


class Store(ABC):
    """The atomic transitions. Each call is one script in Redis: all or nothing."""

    @abstractmethod
    async def enqueue(self, tenant: str, contact: NewContact, now: int) -> Outcome[Enqueued]:
        """Record a new contact; reserve the best free agent of its first step at once.

        A replayed idempotency key with the same body hash returns the stored contact
        (``replay``); with another hash it raises ``IdempotencyConflict``.
        """

    @abstractmethod
    async def accept(
        self, tenant: str, reservation_id: str, agent_id: str | None, now: int
    ) -> Outcome[Accepted]:
        """The reserved agent takes the contact (``agent_id`` None: an admin acting); it joins
        the contacts the agent holds (``AgentState.contacts``) until it completes.

        Accepting a reservation accepted already, while its contact is still assigned to that
        agent, answers as the first accept did (``wait_ms`` and ``within_threshold`` from the
        recorded answer time) with ``replay`` set, and changes nothing; once the contact is
        wrapping or ended it raises ``ReservationNotPending``.
        """

    @abstractmethod
    async def reject(
        self, tenant: str, reservation_id: str, agent_id: str | None, now: int
    ) -> Outcome[str]:
        """The agent declines; the contact keeps its place and is never re-offered to it."""

    @abstractmethod
    async def abandon(
        self, tenant: str, contact_id: str, now: int, why: EndReason = "abandoned"
    ) -> Outcome[Abandoned]:
        """The customer left while queued or offered (an offer is rescinded); with ``why``
        "cancelled", the gateway withdrew the contact (not counted against the service level)."""

    @abstractmethod
    async def complete(
        self,
        tenant: str,
        contact_id: str,
        agent_id: str | None,
        wrap_up_ms: int,
        disposition: str,
        now: int,
    ) -> Outcome[Completed]:
        """The conversation ended: wrapping for ``wrap_up_ms``, then completed."""

    @abstractmethod
    async def request_callback(
        self, tenant: str, contact_id: str, number: str, not_before: int, now: int
    ) -> Outcome[ContactState]:
        """Virtual hold: the waiting contact becomes a callback that keeps its place."""

    @abstractmethod
    async def upsert_agent(
        self, tenant: str, spec: AgentSpec, now: int
    ) -> Outcome[tuple[AgentState, bool]]:
        """Create or update an agent (new agents are offline); returns (agent, created).
        Pending offers the change leaves invalid (from a queue the agent left, over its new
        capacity, blocked by a channel made exclusive) are rescinded, reason ``agent_changed``."""

    @abstractmethod
    async def set_agent_state(
        self, tenant: str, agent_id: str, state: AgentStateName, now: int
    ) -> Outcome[tuple[AgentState, bool]]:
        """Change an agent's state; returns (agent, changed)."""

    @abstractmethod
    async def socket_opened(
        self, tenant: str, agent_id: str, instance: str, sockets: int, now: int, timeout_ms: int
    ) -> Outcome[Presence]:
        """Instance ``instance`` opened a socket of the agent and now holds ``sockets`` (>= 1)
        of them: the count is set, not added to. The instance is heard from (live until
        ``now + timeout_ms``, when its sweep timer ``i|<instance>`` is due). The agent's state
        does not change. Raises ``AgentNotFound`` (nothing changes)."""

    @abstractmethod
    async def socket_closed(
        self, tenant: str, agent_id: str, instance: str, sockets: int, now: int
    ) -> Outcome[Presence]:
        """Instance ``instance`` closed a socket of the agent and still holds ``sockets``
        (>= 0). With none left there, an agent that has no socket on any live instance (one
        whose deadline is after ``now``) goes offline in the same step, as ``set_agent_state``
        offline does (pending offers rescinded); one with a socket on another live instance
        keeps its state. Raises ``AgentNotFound`` (nothing changes)."""

    @abstractmethod
    async def instance_beat(
        self,
        tenant: str,
        instance: str,
        now: int,
        timeout_ms: int,
        sockets: dict[str, int] | None = None,
    ) -> Outcome[Presence]:
        """The instance is alive: live until ``now + timeout_ms``, its sweep timer pushed to
        then. With ``sockets`` (agent id -> sockets held, each >= 1), the instance's record of
        sockets becomes exactly that (unknown agents are left out), and the agents it no longer
        lists that have no socket on any live instance go offline, in id order."""

    @abstractmethod
    async def claim_timers(self, tenant: str, now: int, limit: int, lease_ms: int) -> TimerClaim:
        """Lease up to ``limit`` due timers to the caller."""

    @abstractmethod
    async def fire_timer(self, tenant: str, timer: str, now: int) -> Outcome[bool]:
        """Run the transition a claimed timer stands for; False if it no longer applies."""

    @abstractmethod
    async def contact_status(self, tenant: str, contact_id: str) -> ContactState:
        """A contact's live state and position."""

    @abstractmethod
    async def agent_status(self, tenant: str, agent_id: str) -> AgentState:
        """An agent's state, load, queues, pending reservations and the contacts it holds."""

    @abstractmethod
    async def queue_snapshot(self, tenant: str, queues: list[str], now: int) -> list[QueueSnapshot]:
        """Depth, oldest wait, staffing and today's counters for each queue."""

    @abstractmethod
    async def pending_offers(self, tenant: str, agent_id: str) -> list[PendingOffer]:
        """An agent's pending offers with each contact's view (for a reconnecting socket)."""

    @abstractmethod
    async def contact_view(self, tenant: str, contact_id: str) -> str | None:
        """The view (JSON text) an offer of the contact carries, while it waits or is on offer;
        None once it is past that (or unknown)."""

    @abstractmethod
    async def replace_view(self, tenant: str, contact_id: str, old: str, new: str) -> bool:
        """Replace a waiting or offered contact's view by ``new`` if it is still ``old``."""

    @abstractmethod
    async def list_agents(self, tenant: str) -> list[tuple[str, dict[str, Any], dict[str, int]]]:
        """Every agent as (id, document, capacity), ordered by id."""

    @abstractmethod
    async def list_contacts(
        self, tenant: str, queues: list[str], agents: list[str], callbacks: bool = False
    ) -> list[str]:
        """The contacts in line for ``queues`` (waiting in one, or held there for a callback)
        and for ``agents`` (waiting for one by name), each once, in id order; with
        ``callbacks``, every scheduled callback too (one held at a step that names agents
        alone is in no queue's line). Contacts on offer are not in line: ``pending_offers``
        lists them."""

    @abstractmethod
    async def workflow_queues(self, tenant: str, contact_ids: list[str]) -> dict[str, list[str]]:
        """For each of ``contact_ids`` still under way (queued, held for a callback or on
        offer): the queues its current step and the steps after it name, in workflow order,
        each once. Unknown contacts and those past that are left out."""


TimerKind = Literal["o", "s", "w", "b", "i"]


def parse_timer(member: str) -> tuple[TimerKind, list[str]]:
    """Split a timer member ``kind|id[|n]`` into its kind and arguments."""
    kind, *args = member.split("|")
    if kind not in ("o", "s", "w", "b", "i"):
        raise ValueError(f"unknown timer {member!r}")
    return kind, args  # type: ignore[return-value]


def view_text(reply: list[Any]) -> str | None:
    payload, _ = unpack(reply)
    view = payload["view"]
    return view if isinstance(view, str) else None


def view_replaced(reply: list[Any]) -> bool:
    payload, _ = unpack(reply)
    return bool(payload["replaced"])
