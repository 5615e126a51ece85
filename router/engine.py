"""The routing engine: business rules in, one atomic store call out.

``Engine.decide`` is pure: contact + customer -> segment, first matching rule, priority (seconds
of wait credit), workflow steps, suggestions and service-level threshold. ``Engine.route`` turns
that decision into a ``NewContact`` and makes the single ``Store.enqueue`` call that records the
contact and reserves a free agent. ``Engine.agent_spec`` computes an agent's queue memberships
from the queues' CEL expressions; the store only ever sees the result.

CEL runtime errors never stop routing: a failing condition is false, a failing priority is 0,
and each error is counted in ``Engine.cel_errors`` by expression location (exported as
``switchboard_cel_errors_total``) and logged, by location only, at its 1st, 10th, 100th...
occurrence: the message of a CEL error may quote the customer's data.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cel
import orjson
import structlog

from channels import identity
from config.cel import ROOTS, Expr, Projection, compile_expr
from config.routing import MAX_PRIORITY_SECONDS, RoutingConfig, ServiceLevel
from queues.contract import (
    AgentSpec,
    AgentState,
    AgentStateName,
    Enqueued,
    Event,
    NewContact,
    Outcome,
    Store,
)
from queues.contract import Step as StoreStep
from queues.keys import valid_id

CONTACT_FIELDS = ("channel", "language", "intent", "subject", "body")
log = structlog.get_logger("switchboard.engine")

_DECISION_CACHE = 8192
_MEMO_SIZE = 4096
_SKILL_REF = re.compile(r"\bagent\s*\.\s*skills\s*\.\s*([A-Za-z_]\w*)")


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _compact(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True, slots=True)
class Suggested:
    kind: str
    text: str
    rule: str

    def wire(self) -> dict[str, str]:
        return {"kind": self.kind, "text": self.text, "rule": self.rule}


@dataclass(slots=True)
class Decision:
    """Why a contact goes where it goes; also the content of its ``routing.decision`` log."""

    segment: str
    rule: str
    priority: float
    steps: list[StoreStep]
    home_queue: str
    service_level: ServiceLevel
    offer_timeouts_ms: dict[str, int]
    suggestions: list[Suggested] = field(default_factory=list)
    skipped_steps: int = 0


class _Inputs:
    """One evaluation's ``contact`` and ``customer`` views, and their CEL context built on
    first need (a context costs about 10 µs per variable, an evaluation under 1 µs)."""

    __slots__ = ("contact", "ctx", "customer", "engine", "now_ms")

    def __init__(
        self, engine: Engine, contact: Mapping[str, Any], customer: Mapping[str, Any], now_ms: int
    ) -> None:
        self.engine, self.contact, self.customer, self.now_ms = engine, contact, customer, now_ms
        self.ctx: cel.Context | None = None

    def context(self) -> cel.Context:
        ctx = self.ctx
        if ctx is None:
            ctx = self.ctx = self.engine._context(self.contact, self.customer, self.now_ms)
        return ctx


class _Memo:
    """An expression and its results by the values of the fields it reads.

    An expression that does not read ``now`` is a function of those fields, so a result is
    looked up instead of evaluated, and the CEL context is built only when some expression of
    a decision meets values it has not seen (``_MEMO_SIZE`` of them at most, then forgotten).
    A result is ``(value, failed)``: a failed evaluation is remembered too, and reported by
    the caller each time, as it was.
    """

    __slots__ = ("clock", "expr", "reads", "results")

    def __init__(self, expr: Expr) -> None:
        proj = Projection([expr.source], ROOTS["rule"])
        self.expr = expr
        self.clock = proj.uses("now")
        #: (0 contact | 1 customer, field or None for the whole variable)
        self.reads: tuple[tuple[int, str | None], ...] = tuple(
            (i, name)
            for i, root in enumerate(("contact", "customer"))
            if proj.uses(root)
            for name in _sorted_or_whole(proj.fields[root])
        )
        self.results: dict[tuple[Any, ...], tuple[Any, bool]] = {}

    def result(self, inputs: _Inputs) -> tuple[Any, bool]:
        if self.clock:
            return self.expr.evaluate(inputs.context())
        views = (inputs.contact, inputs.customer)
        parts = []
        for i, name in self.reads:
            value = views[i] if name is None else views[i].get(name)
            # Strings and floats as they are (a NaN never matches, so it is always evaluated);
            # anything else as JSON bytes, which keep 1, 1.0 and true apart.
            cls = value.__class__
            parts.append(value if cls is str or cls is float else orjson.dumps(value))
        key = tuple(parts)
        hit = self.results.get(key)
        if hit is None:
            if len(self.results) >= _MEMO_SIZE:
                self.results.clear()
            hit = self.results[key] = self.expr.evaluate(inputs.context())
        return hit


def _sorted_or_whole(fields: frozenset[str] | None) -> list[str | None]:
    return [None] if fields is None else [*sorted(fields)]


@dataclass(frozen=True, slots=True)
class _Segment:
    name: str
    when: _Memo
    priority: float
    service_level: ServiceLevel | None


@dataclass(frozen=True, slots=True)
class _RuleStep:
    queues: tuple[str, ...]
    target: str | None
    agents: _Memo | None
    timeout_ms: int
    agent_offer_ms: int  # an offer to the agents the target names (0: the default)


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    when: _Memo
    priority: float | _Memo
    steps: tuple[_RuleStep, ...]


@dataclass(frozen=True, slots=True)
class _Queue:
    name: str
    members: Expr
    strategy: str
    skill: str | None


class Engine:
    """Compiled routing config plus the store it routes into."""

    def __init__(
        self, config: RoutingConfig, store: Store, cel_errors: Counter[str] | None = None
    ) -> None:
        self.config = config
        self.store = store
        #: runtime errors by expression location ("rules.vip.when"); a reloaded engine is
        #: given its predecessor's, so the exported counter never goes back
        self.cel_errors: Counter[str] = Counter() if cel_errors is None else cel_errors
        self.segments = [
            _Segment(s.name, _Memo(compile_expr(s.when, "segment")), s.priority, s.service_level)
            for s in config.segments
        ]
        self.rules = [self._rule(r) for r in config.rules]
        self.queues = [
            _Queue(q.name, compile_expr(q.agents, "queue"), q.strategy, q.skill)
            for q in config.queues
        ]
        self.suggestions = [
            (
                s.name or f"suggestion-{i + 1}",
                s.kind,
                s.text,
                _Memo(compile_expr(s.when, "suggestion")),
            )
            for i, s in enumerate(config.suggestions)
        ]
        self.queue_config = {q.name: q for q in config.queues}
        sources = [s.when for s in config.segments] + [r.when for r in config.rules]
        sources += [r.priority for r in config.rules if isinstance(r.priority, str)]
        sources += [st.agents for r in config.rules for st in r.steps if st.agents]
        sources += [s.when for s in config.suggestions]
        self._projection = Projection(sources, ROOTS["rule"])
        queue_sources = [q.agents for q in config.queues]
        self._agent_projection = Projection(queue_sources, ROOTS["queue"])
        #: skills some queue expression reads; agents lacking one get level 0 for it
        self.referenced_skills = sorted(set(_SKILL_REF.findall("\n".join(queue_sources))))
        self._default_timeout_ms = _ms(15.0)
        self._exclusive: list[str] = [str(c) for c in config.exclusive_channels]
        self._decisions: dict[str, Decision] = {}

    def _rule(self, rule: Any) -> _Rule:
        priority = rule.priority
        compiled = (
            _Memo(compile_expr(priority, "rule")) if isinstance(priority, str) else float(priority)
        )
        steps = tuple(
            _RuleStep(
                tuple(st.queue_names),
                st.target,
                _Memo(compile_expr(st.agents, "rule")) if st.agents else None,
                _ms(st.timeout_seconds or 0.0),
                _ms(st.offer_timeout_seconds or 0.0),
            )
            for st in rule.steps
        )
        return _Rule(rule.name, _Memo(compile_expr(rule.when, "rule")), compiled, steps)

    # ------------------------------------------------------------------------- decisions

    def expressions(self) -> list[str]:
        """Every location a CEL runtime error is counted under, in config order (so the exported
        counter can start each at 0: ``increase`` misses the first error of a series born at 1).
        """
        where = [f"segments.{seg.name}" for seg in self.segments]
        for rule in self.rules:
            where.append(f"rules.{rule.name}.when")
            if not isinstance(rule.priority, float):
                where.append(f"rules.{rule.name}.priority")
            if any(st.agents is not None for st in rule.steps):
                where.append(f"rules.{rule.name}.agents")
        where += [f"suggestions.{name}" for name, _, _, _ in self.suggestions]
        return where + [f"queues.{q.name}.agents" for q in self.queues]

    def _failed(self, where: str) -> None:
        self.cel_errors[where] += 1
        count = self.cel_errors[where]
        if count == 10 ** (len(str(count)) - 1):  # 1, 10, 100, ...
            log.warning("cel.failed", expression=where, count=count)

    def _test(self, expr: Expr, ctx: cel.Context, where: str) -> bool:
        ok, failed = expr.test(ctx)
        if failed:
            self._failed(where)
        return ok

    def _holds(self, memo: _Memo, inputs: _Inputs, where: str) -> bool:
        """A condition: true only for ``true``; an evaluation error counts and is false."""
        value, failed = memo.result(inputs)
        if failed:
            self._failed(where)
        return value is True

    def _context(self, contact: Mapping[str, Any], customer: Mapping[str, Any], now_ms: int) -> Any:
        ctx = cel.Context()
        proj = self._projection
        if proj.uses("contact"):
            ctx.add_variable("contact", proj.project("contact", dict(contact)))
        if proj.uses("customer"):
            ctx.add_variable("customer", proj.project("customer", dict(customer)))
        if proj.uses("now"):
            ctx.add_variable("now", datetime.fromtimestamp(now_ms / 1000, UTC))
        return ctx

    @property
    def reads_clock(self) -> bool:
        """Whether a rule reads ``now``; if not, a decision depends on its inputs only."""
        return self._projection.uses("now")

    def decide(
        self,
        contact: Mapping[str, Any],
        customer: Mapping[str, Any],
        now_ms: int,
        last_agent: str | None = None,
    ) -> Decision:
        """Classify a contact. ``contact``/``customer`` are the CEL views (see ``cel_views``).

        Building CEL contexts costs far more than evaluating the expressions (about 15 µs per
        variable), so when no expression reads ``now`` the decision is a pure function of the
        fields the expressions read, and is cached on them. Callers must not mutate it.
        """
        if self._projection.uses("now"):
            return self._decide(contact, customer, now_ms, last_agent)
        key = _compact(
            (
                contact.get("channel"),  # the service level depends on it, read or not
                self._projection.project("contact", dict(contact)),
                self._projection.project("customer", dict(customer)),
                last_agent,
            )
        )
        hit = self._decisions.get(key)
        if hit is None:
            if len(self._decisions) >= _DECISION_CACHE:
                self._decisions.clear()
            hit = self._decisions[key] = self._decide(contact, customer, now_ms, last_agent)
        return hit

    def _decide(
        self,
        contact: Mapping[str, Any],
        customer: Mapping[str, Any],
        now_ms: int,
        last_agent: str | None,
    ) -> Decision:
        inputs = _Inputs(self, contact, {**customer, "segment": ""}, now_ms)
        segment = self.segments[-1]
        for seg in self.segments:
            if self._holds(seg.when, inputs, f"segments.{seg.name}"):
                segment = seg
                break
        inputs = _Inputs(self, contact, {**customer, "segment": segment.name}, now_ms)
        rule = self.rules[-1]
        for candidate in self.rules:
            if self._holds(candidate.when, inputs, f"rules.{candidate.name}.when"):
                rule = candidate
                break
        priority = segment.priority + self._priority(rule, inputs)
        steps: list[StoreStep] = []
        skipped = 0
        for st in rule.steps:
            agents: list[str] = []
            if st.target == "last_agent" and last_agent:
                agents = [last_agent]
            elif st.target == "preferred_agents" and st.agents is not None:
                agents = self._agent_list(st.agents, inputs, rule.name)
            if not st.queues and not agents:
                skipped += 1  # nobody to target (no last agent): go straight to the next step
                continue
            steps.append(StoreStep(st.queues, tuple(agents), st.timeout_ms, st.agent_offer_ms))
        home = next(q for s in steps for q in s.queues)
        queue = self.queue_config[home]
        level = (
            segment.service_level
            or queue.service_level
            or self.config.service_level(str(contact.get("channel", "voice")))
        )
        timeouts = {"": self._default_timeout_ms}
        for s in steps:
            for q in s.queues:
                timeouts[q] = _ms(self.queue_config[q].offer_timeout_seconds)
        suggestions = [
            Suggested(kind, text, name)
            for name, kind, text, memo in self.suggestions
            if self._holds(memo, inputs, f"suggestions.{name}")
        ]
        return Decision(
            segment.name, rule.name, priority, steps, home, level, timeouts, suggestions, skipped
        )

    def segment_of(self, customer: Mapping[str, Any], now_ms: int) -> str:
        """The segment of a customer outside any contact (contact fields empty)."""
        contact, _ = cel_views({}, None)
        inputs = _Inputs(self, contact, {**customer, "segment": ""}, now_ms)
        for seg in self.segments:
            if self._holds(seg.when, inputs, f"segments.{seg.name}"):
                return seg.name
        return self.segments[-1].name

    def _priority(self, rule: _Rule, inputs: _Inputs) -> float:
        if isinstance(rule.priority, float):
            return rule.priority
        value, failed = rule.priority.result(inputs)
        if failed or isinstance(value, bool) or not isinstance(value, int | float):
            # an evaluation error, or not a number
            self._failed(f"rules.{rule.name}.priority")
            return 0.0
        credit = float(value)
        if not math.isfinite(credit) or abs(credit) > MAX_PRIORITY_SECONDS:
            # (a division by zero, or a credit no sort key can hold): an error, 0 or the bound
            self._failed(f"rules.{rule.name}.priority")
            if math.isnan(credit):
                return 0.0
            return math.copysign(MAX_PRIORITY_SECONDS, credit)
        return credit

    def _agent_list(self, memo: _Memo, inputs: _Inputs, rule: str) -> list[str]:
        """The agents a preferred_agents step names, each once. The list comes from data (a
        CRM's attributes), so a value no agent id could be (``valid_id``: one with ':', '|' or
        braces would build another key of the store) names nobody, and counts as an error."""
        value, failed = memo.result(inputs)
        if not failed:
            try:
                given = [value] if isinstance(value, str) else [str(v) for v in value]
            except TypeError:
                pass
            else:
                agents = [a for a in dict.fromkeys(given) if valid_id(a)]
                if len(agents) < len(set(given)):
                    self._failed(f"rules.{rule}.agents")
                return agents
        self._failed(f"rules.{rule}.agents")
        return []

    def new_contact(
        self,
        contact_id: str,
        decision: Decision,
        channel: str,
        doc: Mapping[str, Any],
        view: Mapping[str, Any],
        now_ms: int,
        customer_id: str = "",
        idempotency_key: str = "",
        idempotency_hash: str = "",
    ) -> NewContact:
        return NewContact(
            id=contact_id,
            channel=channel,
            capacity_channel="voice" if channel == "callback" else channel,
            sort_key_ms=now_ms - round(decision.priority * 1000),
            steps=decision.steps,
            offer_timeouts_ms=decision.offer_timeouts_ms,
            sl_threshold_ms=round(decision.service_level.threshold_seconds * 1000),
            home_queue=decision.home_queue,
            doc=_compact(doc),
            view=_compact(view) if view else "{}",
            customer_id=customer_id,
            idempotency_key=idempotency_key,
            idempotency_hash=idempotency_hash,
        )

    async def route(self, tenant: str, contact: NewContact, now_ms: int) -> Outcome[Enqueued]:
        """One atomic store call: record the contact and reserve a free agent if there is one."""
        return await self.store.enqueue(tenant, contact, now_ms)

    # ---------------------------------------------------------------------------- agents

    def memberships(
        self, skills: Mapping[str, float], attributes: Mapping[str, Any]
    ) -> list[tuple[str, str, float]]:
        """(queue, strategy, skill level) for every queue whose expression admits the agent."""
        filled: dict[str, Any] = dict.fromkeys(self.referenced_skills, 0)
        filled.update(skills)
        agent = self._agent_projection.project(
            "agent", {"skills": filled, "attributes": attributes}
        )
        ctx = cel.Context()
        ctx.add_variable("agent", agent)
        out: list[tuple[str, str, float]] = []
        for q in self.queues:
            if self._test(q.members, ctx, f"queues.{q.name}.agents"):
                level = float(filled.get(q.skill, 0)) if q.skill else 0.0
                out.append((q.name, q.strategy, level))
        return out

    def agent_spec(self, agent_id: str, doc: Mapping[str, Any]) -> AgentSpec:
        """The store's view of an agent document ``{name, skills, capacity, attributes}``."""
        return AgentSpec(
            id=agent_id,
            doc=_compact(doc),
            capacity={k: int(v) for k, v in doc.get("capacity", {}).items()},
            memberships=self.memberships(doc.get("skills", {}), doc.get("attributes", {})),
            exclusive=self._exclusive,
        )

    async def upsert_agent(
        self, tenant: str, agent_id: str, doc: Mapping[str, Any], now_ms: int
    ) -> Outcome[tuple[AgentState, bool]]:
        return await self.store.upsert_agent(tenant, self.agent_spec(agent_id, doc), now_ms)

    async def set_agent_state(
        self, tenant: str, agent_id: str, state: AgentStateName, now_ms: int
    ) -> Outcome[tuple[AgentState, bool]]:
        return await self.store.set_agent_state(tenant, agent_id, state, now_ms)

    async def reapply(
        self,
        tenant: str,
        now_ms: int,
        on_events: Callable[[list[Event]], None] | None = None,
    ) -> int:
        """Recompute every agent's memberships (after a config change); returns the count.
        ``on_events`` sees each change's events (the offers and rescinds it made)."""
        agents = await self.store.list_agents(tenant)
        for agent_id, doc, _ in agents:
            outcome = await self.upsert_agent(tenant, agent_id, doc, now_ms)
            if on_events is not None and outcome.events:
                on_events(outcome.events)
        return len(agents)


def cel_views(
    contact: Mapping[str, Any], customer: Mapping[str, Any] | None, region: str = "US"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``contact`` and ``customer`` variables rules see, with every field present.

    Missing text fields are '' and missing numbers 0.0, so ``contact.language == 'es'`` is
    simply false for a contact without a language instead of an evaluation error.
    ``contact.country`` is the ISO 3166 region of a phone sender (numbers without a country
    code read in ``region``), or the ``country`` given (the simulator's streams), else ''.
    Rules never see the number itself.
    """
    cview: dict[str, Any] = {f: str(contact.get(f) or "") for f in CONTACT_FIELDS}
    cview["attributes"] = dict(contact.get("attributes") or {})
    country = contact.get("country") or ""
    if not country and cview["channel"] in identity.PHONE_CHANNELS and contact.get("from"):
        country = identity.country(str(contact["from"]), region)
    cview["country"] = str(country)
    cust = customer or {}
    products: Sequence[Any] = cust.get("products") or []
    uview: dict[str, Any] = {
        "id": str(cust.get("id") or ""),
        "value": float(cust.get("value") or 0.0),
        "churn_risk": float(cust.get("churn_risk") or 0.0),
        "products": [str(p) for p in products],
        "attributes": dict(cust.get("attributes") or {}),
        "contacts": int(cust.get("contacts") or 0),
    }
    return cview, uview
