"""The application core behind every interface: HTTP handlers, websockets and channel adapters.

Each method does the routing work for one API call (resolve the customer, decide with the
engine, make ONE atomic store call) and returns API models. Nothing here knows about HTTP.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from channels import identity
from config.routing import RoutingConfig
from queues.contract import (
    AgentState,
    AgentStateName,
    ContactState,
    EndReason,
    Event,
    PendingOffer,
    Store,
)
from queues.contract import Step as StoreStep
from router import logs
from router import models as m
from router.clock import Clock
from router.customers import Customers, Resolved, Thread, history_item
from router.engine import Decision, Engine, cel_views
from router.metrics import Metrics
from router.stats import QueueStats

log = structlog.get_logger("switchboard.routing")
#: decision fields that never hold personal data: server-made ids, numbers, config names
_DECISION_PLAIN = frozenset(
    {
        "contact_id", "channel", "segment", "rule", "step", "skipped_steps", "priority",
        "priority_parts", "service_level", "status", "queue", "offered_via", "position",
    }
)  # fmt: skip
#: what a contact's view keeps of its request, which the rules may read
_REQUEST_FIELDS = ("channel", "from", "language", "intent", "subject", "body", "attributes")
#: how many accepted contacts' queues an instance remembers for ``complete``
_ACCEPTED_QUEUES = 65536


@functools.lru_cache(maxsize=4096)
def _created_at(text: str) -> datetime | str:
    """A contact's creation time as stored (``iso``), parsed (a contact is rendered at create,
    accept and complete: the same text each time); other text goes to validation as it is."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text


def _waiting(history: list[Any], statuses: tuple[str, ...]) -> list[Any]:
    """The items of a customer's history whose contact is in one of ``statuses``."""
    return [item for item in history if item.get("status") in statuses]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


#: how far ahead a callback may be scheduled
MAX_CALLBACK_DAYS = 30


class FieldRefused(ValueError):
    """A request field the service refuses once it reads the store or the clock (the API
    answers 422 naming the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ContactIds:
    """Contact ids in creation order: ``c``, the creation time (ms, 11 hex digits), a counter
    within the millisecond (4 hex digits) and 48 random bits (12 hex digits).

    Two contacts with the same place in line (created in the same millisecond with the same
    priority) are served in the order of their ids, so on one instance the first created is
    served first; the random part keeps ids from different instances apart.
    """

    def __init__(self) -> None:
        self.ms = -1
        self.seq = 0

    def next(self, now_ms: int) -> str:
        if now_ms == self.ms:
            self.seq = min(self.seq + 1, 0xFFFF)
        else:
            self.ms, self.seq = now_ms, 0
        return f"c{now_ms:011x}{self.seq:04x}{secrets.token_hex(6)}"


def body_hash(payload: Any) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def idempotency_slot(scope: str, key: str) -> str:
    """Keys are client text: hash them into a fixed-size, separator-free Redis key part."""
    return hashlib.sha256(f"{scope}\x00{key}".encode()).hexdigest()[:40]


def _current(doc: dict[str, Any], queue: str) -> dict[str, Any]:
    """The contact being offered, as the first line of the customer's history."""
    return {
        "contact_id": doc["id"],
        "channel": doc["channel"],
        "created_at": doc["created_at"],
        "queue": queue,
        "agent_id": None,
        "status": "queued",
        "disposition": None,
    }


@dataclass(slots=True)
class Created:
    contact: m.Contact
    created: bool  # False: an idempotent replay


class Service:
    def __init__(
        self,
        engine: Engine,
        store: Store,
        clock: Clock,
        customers: Customers,
        stats: QueueStats,
        metrics: Metrics,
        idempotency_ttl_s: int = 86400,
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.customers = customers
        self.stats = stats
        self.metrics = metrics
        self.idempotency_ttl_s = idempotency_ttl_s
        #: contact -> queue of the contacts accepted here and not yet completed, so that
        #: ``complete`` finds the queue's wrap-up time without a ``contact_status`` round trip
        self._accepted_queue: dict[tuple[str, str], str] = {}
        self._contact_ids = ContactIds()
        self._wrap_up_known: tuple[dict[str, Any], bool] | None = None
        #: waits until the offers of a new contact went out to sockets held here (the hub)
        self.offers_out: Callable[[str, list[Event]], Awaitable[None]] | None = None

    @property
    def config(self) -> RoutingConfig:
        return self.engine.config

    # ---------------------------------------------------------------------------- contacts

    async def create_contact(
        self,
        tenant: str,
        new: m.ContactIn,
        idem_scope: str,
        idem_key: str,
        extra: Any = None,
        thread: Thread | None = None,
        gateway: str = "web",
    ) -> Created:
        """Resolve, decide, then one atomic enqueue (which may reserve an agent at once)."""
        t0 = time.perf_counter()
        started = self.clock.now_ms()
        request = new.model_dump(by_alias=True, exclude_none=True)
        contact_id = self._contact_ids.next(started)
        idem = (idempotency_slot(idem_scope, idem_key), body_hash([request, extra]))
        created_at = iso(started)
        customer = await self.customers.resolve(
            tenant, new, contact_id, created_at, thread, gateway, idem
        )
        engine = self.engine
        cview, uview = cel_views(request, customer.profile, self.customers.region)
        uview["contacts"] = len(customer.history)
        decision = engine.decide(cview, uview, started, customer.last_agent)
        doc = {
            "id": contact_id,
            "channel": new.channel,
            "created_at": created_at,
            "customer": {"id": customer.id, "segment": decision.segment, "value": uview["value"]},
            "priority": decision.priority,
            "rule": decision.rule,
            "language": new.language,
            "intent": new.intent,
        }
        single = customer.single_view(decision.segment)
        # (this contact first: the history keeps history_length contacts, this one included)
        keep = self.customers.history_length
        single["history"] = [_current(doc, decision.home_queue), *single["history"][: keep - 1]]
        view: dict[str, Any] = {
            "contact": {**doc, "subject": new.subject, "body": new.body, "from": new.from_},
            "customer": single,
            "suggestions": [s.wire() for s in decision.suggestions],
        }
        if new.attributes:
            view["contact"]["attributes"] = new.attributes
        record = engine.new_contact(
            contact_id,
            decision,
            new.channel,
            doc,
            view,
            started,
            customer_id=customer.id or "",
            idempotency_key=idem[0],
            idempotency_hash=idem[1],
        )
        record.idempotency_ttl_s = self.idempotency_ttl_s
        try:
            outcome = await engine.route(tenant, record, started)
        except BaseException:
            # the contact may exist all the same (a reply lost on the way): forget the customer
            if self.customers.cache is not None and customer.id is not None:
                self.customers.cache.invalidate(tenant, customer.id)
            raise
        # (routing time, as documented: lookup, rules and the enqueue; not what follows)
        routed_in = time.perf_counter() - t0
        state = outcome.value.contact
        if self.offers_out is not None and outcome.events:
            await self.offers_out(tenant, outcome.events)
        await self.customers.created(tenant, customer, state, outcome.value.replay)
        if customer.id and not outcome.value.replay and _waiting(customer.history, ("queued",)):
            # the customer's contacts still in line will show this one when they are offered
            history = [history_item(state), *customer.history]
            await self.refresh_views(tenant, customer.id, customer.profile, history, ("queued",))
        if not outcome.value.replay:
            self.metrics.routed(tenant, decision, new.channel, outcome.events, routed_in)
            self._log_decision(contact_id, new.channel, decision, state, outcome.events)
        return Created(self.render(state, tenant), not outcome.value.replay)

    async def refresh_views(
        self,
        tenant: str,
        customer_id: str,
        profile: dict[str, Any],
        history: list[Any],
        statuses: tuple[str, ...] = ("queued", "offered"),
    ) -> int:
        """After a profile change or a new contact, the offers of the customer's waiting
        contacts show it.

        Each contact of ``history`` in one of ``statuses`` gets its view's customer part
        (profile, segment, other contacts) and the rules' suggestions worked out again from
        ``profile`` and ``history``; its routing (priority, queues) stays as decided. Returns
        how many views changed.
        """
        changed = 0
        for item in _waiting(history, statuses):
            cid = item["contact_id"]
            old = await self.store.contact_view(tenant, cid)
            if old is None:
                continue
            view = orjson.loads(old)
            contact = view.get("contact") or {}
            others = [h for h in history if h.get("contact_id") != cid]
            request = {k: contact[k] for k in _REQUEST_FIELDS if contact.get(k) is not None}
            cview, uview = cel_views(request, profile, self.customers.region)
            uview["contacts"] = len(others)
            last_agent = next((h["agent_id"] for h in others if h.get("agent_id")), None)
            decision = self.engine.decide(cview, uview, self.clock.now_ms(), last_agent)
            single = Resolved(customer_id, profile, last_agent, others).single_view(
                decision.segment
            )
            current = (view.get("customer") or {}).get("history") or []
            single["history"] = [*current[:1], *others[: self.customers.history_length - 1]]
            view["customer"] = single
            view["suggestions"] = [s.wire() for s in decision.suggestions]
            new = orjson.dumps(view).decode()
            if new != old and await self.store.replace_view(tenant, cid, old, new):
                changed += 1
        return changed

    def _log_decision(
        self, cid: str, channel: str, d: Decision, state: ContactState, events: list[Event]
    ) -> None:
        """One ``routing.decision`` line: what the rules decided and why this agent (or none).

        Everything comes from the decision and the enqueue reply: no extra Redis round trip.
        """
        segment_priority = next(
            (s.priority for s in self.engine.segments if s.name == d.segment), 0.0
        )
        step = d.steps[0] if d.steps else None
        offer = next((e for e in events if e.get("t") == "offer" and e.get("c") == cid), None)
        via = str(offer.get("q", "")) if offer else ""
        queues: dict[str, str] = {
            q: self.engine.queue_config[q].strategy
            for q in (step.queues if step else ())
            if q in self.engine.queue_config
        }
        fields = {
            "contact_id": cid,
            "channel": channel,
            "segment": d.segment,
            "rule": d.rule,
            "step": 1 + d.skipped_steps,
            "skipped_steps": d.skipped_steps,
            "priority": d.priority,
            "priority_parts": {"segment": segment_priority, "rule": d.priority - segment_priority},
            "service_level": {
                "threshold_seconds": d.service_level.threshold_seconds,
                "target": d.service_level.target,
            },
            "candidates": {"agents": list(step.agents) if step else [], "queues": queues},
            "later_steps": [
                {"queues": list(s.queues), "agents": list(s.agents)} for s in d.steps[1:]
            ],
            "status": state.status,
            "queue": state.queue,
            "agent_id": state.agent_id,
            "offered_via": ("agent target" if via == "" else via) if offer else None,
            "position": state.position,
            "why": self._why(channel, state, via if offer else None, queues, step),
        }
        logs.info(log, "routing.decision", fields, _DECISION_PLAIN)

    def _why(
        self,
        channel: str,
        state: ContactState,
        via: str | None,
        queues: dict[str, str],
        step: StoreStep | None,
    ) -> str:
        agent = state.agent_id
        if via is None or agent is None:
            where = ", ".join([*queues, *(step.agents if step else ())]) or "its targets"
            return (
                f"no candidate in {where} had free {channel} capacity: queued at position "
                f"{state.position}, ordered by arrival time minus priority"
            )
        if via == "":
            return f"{agent} is a target agent of this step and had free {channel} capacity"
        strategy = queues.get(via, "longest_idle")
        skill = self.engine.queue_config[via].skill if via in self.engine.queue_config else None
        reason = {
            "longest_idle": "had been idle longest",
            "most_skilled": f"had the highest {skill} level (then longest idle)",
            "least_busy": "had the smallest share of its capacity in use (then longest idle)",
        }.get(strategy, "ranked first")
        return f"{agent} {reason} among the free agents of {via} ({strategy})"

    def render(self, state: ContactState, tenant: str) -> m.Contact:
        doc = state.doc
        position = state.position if state.status == "queued" else None
        wait = None
        if position is not None and state.staffed > 0:
            wait = self.stats.contact_wait(state.queue, state.lines, tenant)
            if wait is not None and state.hold_ms:
                # a callback held out of line waits at least until it is due
                due = (state.hold_ms - self.clock.now_ms()) / 1000
                wait = max(wait, round(due, 1))
        # (one dict validated at once, with the time already parsed: about 30 % cheaper than
        # keyword arguments and a nested model built first)
        return m.Contact.model_validate(
            {
                "id": state.id,
                "channel": state.channel,
                "status": state.status,
                "queue": state.queue,
                "priority": doc["priority"],
                "position": position,
                "estimated_wait_seconds": wait,
                "created_at": _created_at(doc["created_at"]),
                "customer": doc["customer"],
                "agent_id": state.agent_id,
                "reservation_id": state.reservation_id,
                "rule": doc["rule"],
                "language": doc.get("language"),
                "intent": doc.get("intent"),
                "disposition": state.disposition,
            }
        )

    async def get_contact(self, tenant: str, contact_id: str) -> m.Contact:
        return self.render(await self.store.contact_status(tenant, contact_id), tenant)

    async def abandon(
        self, tenant: str, contact_id: str, why: EndReason = "abandoned"
    ) -> m.Contact:
        """The customer left (``abandoned``), or the gateway withdrew the contact
        (``cancelled``: not an abandonment, so not counted against the service level)."""
        now = self.clock.now_ms()
        outcome = await self.store.abandon(tenant, contact_id, now, why)
        if outcome.value.changed and why == "abandoned":
            self.metrics.abandoned(tenant, outcome.value, outcome.events)
        else:
            # (a cancel is no abandonment, but the offer it rescinds still ended)
            self.metrics.events(outcome.events)
        self.customers.contact_changed(tenant, outcome.value.contact)
        return self.render(outcome.value.contact, tenant)

    async def callback(self, tenant: str, contact_id: str, body: m.CallbackIn) -> m.Contact:
        """Virtual hold; the number (the agent dials it) is read like a caller's, as E.164.
        Raises ``FieldRefused`` for a number that cannot be read or is needed and missing, and
        for a time more than ``MAX_CALLBACK_DAYS`` ahead."""
        now = self.clock.now_ms()
        not_before = int(body.not_before.timestamp() * 1000) if body.not_before else 0
        if not_before > now + MAX_CALLBACK_DAYS * 86_400_000:
            raise FieldRefused("not_before", f"at most {MAX_CALLBACK_DAYS} days ahead")
        try:
            number = identity.phone(body.number, self.customers.region) if body.number else ""
        except identity.IdentityError as exc:
            raise FieldRefused("number", f"cannot be read: {exc}") from None
        if not number:
            # without a number the agent dials the contact's own sender, which its view holds:
            # a phone number only for a call or a text (the channel it came on: a chat turned
            # callback is still no number), and not one the network withheld; a contact with
            # no view is not waiting (or not there), which the store answers (409, 404)
            view = await self.store.contact_view(tenant, contact_id)
            came = (orjson.loads(view).get("contact") or {}) if view else None
            if came is not None:
                channel = str(came.get("channel") or "")
                if channel not in identity.PHONE_CHANNELS:
                    raise FieldRefused(
                        "number",
                        f"a {channel} contact came from no phone number: give one to call back",
                    )
                # (no identity: withheld, or no number to read, such as a SIP name)
                sender = str(came.get("from") or "")
                if not identity.of_sender(channel, sender, self.customers.region):
                    why = "was withheld" if identity.withheld(sender) else "is no phone number"
                    raise FieldRefused("number", f"the caller's id {why}: give one to call back")
        outcome = await self.store.request_callback(tenant, contact_id, number, not_before, now)
        self.metrics.events(outcome.events)
        return self.render(outcome.value, tenant)

    async def complete(
        self, tenant: str, contact_id: str, agent_id: str | None, body: m.CompleteIn
    ) -> m.Contact:
        now = self.clock.now_ms()
        queue_name = self._accepted_queue.pop((tenant, contact_id), None)
        if body.wrap_up_seconds is not None:
            wrap = body.wrap_up_seconds
        else:
            wrap = await self._wrap_up_seconds(tenant, contact_id, queue_name)
        outcome = await self.store.complete(
            tenant, contact_id, agent_id, int(wrap * 1000), body.disposition or "", now
        )
        self.metrics.completed(tenant, outcome.value, outcome.events, wrap)
        self.customers.contact_changed(tenant, outcome.value.contact)
        return self.render(outcome.value.contact, tenant)

    async def _wrap_up_seconds(self, tenant: str, contact_id: str, queue_name: str | None) -> float:
        """The wrap-up of the contact's queue, asking Redis only when it is not known here.

        No lookup when no queue has a wrap-up, nor when this instance accepted the contact (a
        contact's queue is fixed once it is offered, so the accept reply names it).
        """
        queues = self.engine.queue_config
        if not self._any_wrap_up(queues):
            return 0.0
        if queue_name is None:
            queue_name = (await self.store.contact_status(tenant, contact_id)).queue
        queue = queues.get(queue_name)
        return queue.wrap_up_seconds if queue else 0.0

    def _any_wrap_up(self, queues: dict[str, Any]) -> bool:
        cached = self._wrap_up_known
        if cached is not None and cached[0] is queues:
            return cached[1]
        found = any(q.wrap_up_seconds for q in queues.values())
        self._wrap_up_known = (queues, found)
        return found

    # -------------------------------------------------------------------------- reservations

    async def accept(self, tenant: str, reservation_id: str, agent_id: str | None) -> m.AcceptedOut:
        outcome = await self.store.accept(tenant, reservation_id, agent_id, self.clock.now_ms())
        if not outcome.value.replay:  # (a repeat, after a lost reply, was counted the first time)
            self.metrics.accepted(tenant, outcome.value, outcome.events)
        self._remember_queue(tenant, outcome.value.contact)
        return m.AcceptedOut(
            reservation_id=reservation_id, contact=self.render(outcome.value.contact, tenant)
        )

    def _remember_queue(self, tenant: str, contact: ContactState) -> None:
        remembered = self._accepted_queue
        if len(remembered) >= _ACCEPTED_QUEUES:
            # the oldest first: contacts completed elsewhere are never popped here
            for stale in list(itertools.islice(remembered, _ACCEPTED_QUEUES // 4)):
                del remembered[stale]
        remembered[(tenant, contact.id)] = contact.queue

    async def reject(self, tenant: str, reservation_id: str, agent_id: str | None) -> m.RejectedOut:
        outcome = await self.store.reject(tenant, reservation_id, agent_id, self.clock.now_ms())
        self.metrics.events(outcome.events, rejected=1)
        return m.RejectedOut(reservation_id=reservation_id)

    # -------------------------------------------------------------------------------- agents

    @staticmethod
    def render_agent(state: AgentState) -> m.Agent:
        doc = state.doc
        return m.Agent(
            id=state.id,
            name=doc.get("name", state.id),
            skills=doc.get("skills", {}),
            capacity=state.capacity,
            state=state.state,  # type: ignore[arg-type]
            load={ch: n for ch, n in state.load.items() if n},
            queues=state.queues,
            reservations=state.reservations,
            contacts=state.contacts,
            attributes=doc.get("attributes"),
        )

    async def upsert_agent(
        self, tenant: str, agent_id: str, body: m.AgentIn
    ) -> tuple[m.Agent, bool]:
        doc = body.model_dump(exclude_none=True)
        outcome = await self.engine.upsert_agent(tenant, agent_id, doc, self.clock.now_ms())
        self.metrics.events(outcome.events)
        state, created = outcome.value
        return self.render_agent(state), created

    async def get_agent(self, tenant: str, agent_id: str) -> m.Agent:
        return self.render_agent(await self.store.agent_status(tenant, agent_id))

    async def set_state(self, tenant: str, agent_id: str, state: AgentStateName) -> m.Agent:
        outcome = await self.engine.set_agent_state(tenant, agent_id, state, self.clock.now_ms())
        self.metrics.events(outcome.events)
        if self.offers_out is not None and outcome.events:
            # the reply's load counts the offers made (or takes away those rescinded): they
            # reach the agent's sockets here first
            await self.offers_out(tenant, outcome.events)
        return self.render_agent(outcome.value[0])

    async def pending_offers(self, tenant: str, agent_id: str) -> list[PendingOffer]:
        return await self.store.pending_offers(tenant, agent_id)

    # ----------------------------------------------------------------------------- customers

    def render_customer(self, profile: dict[str, Any], history: list[Any]) -> m.Customer:
        """The profile plus the segment the config's segment rules give it today."""
        _, uview = cel_views({}, profile)
        segment = self.engine.segment_of(uview, self.clock.now_ms())
        fields = {k: v for k, v in profile.items() if k in m.Customer.model_fields}
        return m.Customer(**{**fields, "segment": segment, "history": history})

    # -------------------------------------------------------------------------------- queues

    async def queues(self, tenant: str, names: list[str] | None = None) -> list[m.QueueOut]:
        names = names or [q.name for q in self.config.queues]
        now = self.clock.now_ms()
        snaps = await self.store.queue_snapshot(tenant, names, now)
        self.stats.update(tenant, snaps, now)
        return [self.stats.render(tenant, s, now) for s in snaps]

    async def reload(self, tenants: list[str], config: RoutingConfig) -> m.ReloadOut:
        """Swap in a validated config, then recompute every agent's queue membership."""
        self.engine = Engine(config, self.store, self.engine.cel_errors)
        self.stats.configure(config)
        self.metrics.prepare(tenants, config)
        count = 0
        for tenant in tenants:
            count += await self.engine.reapply(tenant, self.clock.now_ms(), self.metrics.events)
        return m.ReloadOut(
            queues=len(config.queues), rules=len(config.rules), agents_recomputed=count
        )
