"""The routing engine: decisions on the demo and small inline configs, then routing end to end.

Decisions are pure (contact + customer -> segment, rule, priority, steps, service level,
suggestions); the end-to-end tests route through a real ``MemoryStore`` and look at which agent
gets the offer.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from config.routing import RoutingConfig, ServiceLevel, demo_config_path, load_routing
from queues.contract import Event, Step
from queues.memory import MemoryStore
from router.engine import Decision, Engine, Suggested, cel_views

T0 = 1_700_000_000_000  # a fixed "now" in ms; decisions that do not read `now` ignore it


def demo() -> RoutingConfig:
    return load_routing(demo_config_path())


def inline(**changes: Any) -> RoutingConfig:
    """A small valid config (queues a and b, one default rule) with top-level keys replaced."""
    data: dict[str, Any] = {
        "queues": [
            {"name": "a", "agents": "agent.skills.a >= 1"},
            {"name": "b", "agents": "agent.skills.b >= 1"},
        ],
        "rules": [{"name": "default", "steps": [{"queue": "a"}]}],
    }
    data.update(changes)
    return load_routing(data)


@pytest.fixture
def engine() -> Engine:
    """An engine on the demo config over an empty memory store."""
    return Engine(demo(), MemoryStore())


def decide(
    engine: Engine,
    contact: dict[str, Any] | None = None,
    customer: dict[str, Any] | None = None,
    now_ms: int = T0,
    last_agent: str | None = None,
) -> Decision:
    """Decide for raw contact/customer documents, through the CEL views the service builds."""
    cview, uview = cel_views({"channel": "voice", **(contact or {})}, customer)
    return engine.decide(cview, uview, now_ms, last_agent)


def offers(events: list[Event]) -> list[tuple[str, str, str]]:
    """(agent, contact, queue) of every offer event."""
    return [(e["a"], e["c"], e["q"]) for e in events if e["t"] == "offer"]


# ------------------------------------------------------------------------------ decisions


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        (25_000.0, "platinum"),
        (10_000.0, "platinum"),
        (9_999.99, "gold"),
        (2_000.0, "gold"),
        (1_999.0, "standard"),
        (0.0, "standard"),
    ],
)
def test_segment_by_value_first_match_wins(engine: Engine, value: float, segment: str) -> None:
    """The first segment whose condition holds is taken (platinum also satisfies gold's)."""
    assert decide(engine, customer={"value": value}).segment == segment


def test_a_rule_that_does_not_match_is_never_applied() -> None:
    """First match wins: a rule whose condition is false gives the contact neither its steps
    nor its credit (the config check makes the last rule match everything)."""
    cfg = inline(
        rules=[
            {"name": "vip", "when": "contact.intent == 'vip'", "priority": 100,
             "steps": [{"queue": "b"}]},
            {"name": "default", "steps": [{"queue": "a"}]},
        ]
    )  # fmt: skip
    d = decide(Engine(cfg, MemoryStore()), contact={"intent": "billing"})
    assert (d.rule, d.priority, d.home_queue) == ("default", 0.0, "a")


def test_segment_of_a_customer_without_a_contact(engine: Engine) -> None:
    """segment_of classifies a customer profile alone, with the same first-match order."""
    _, platinum = cel_views({}, {"value": 12_000.0})
    _, standard = cel_views({}, {"value": 10.0})
    assert engine.segment_of(platinum, T0) == "platinum"
    assert engine.segment_of(standard, T0) == "standard"


@pytest.mark.parametrize(
    ("contact", "customer", "rule"),
    [
        ({"language": "es", "intent": "billing"}, {}, "spanish-billing"),
        ({"language": "es", "intent": "support"}, {}, "spanish-support"),
        ({"language": "en", "intent": "support"}, {}, "support"),
        ({"intent": "cancel"}, {}, "cancellation"),
        ({"intent": "sales"}, {}, "sales"),
        ({"intent": "question"}, {}, "default"),
        # valuable-at-risk comes first, so it wins over the Spanish billing rule
        (
            {"language": "es", "intent": "billing"},
            {"value": 5e3, "churn_risk": 0.9},
            "valuable-at-risk",
        ),
        # at risk but standard segment: not valuable, falls through
        ({"intent": "cancel"}, {"value": 100.0, "churn_risk": 0.9}, "cancellation"),
    ],
)
def test_rule_first_match_wins(
    engine: Engine, contact: dict[str, Any], customer: dict[str, Any], rule: str
) -> None:
    """The first rule whose condition holds decides, and rules can read the segment."""
    assert decide(engine, contact, customer).rule == rule


def test_priority_adds_segment_and_rule_number(engine: Engine) -> None:
    """Priority is the segment's plus the rule's (gold 45 + cancellation 30 = 75 s)."""
    d = decide(engine, {"intent": "cancel"}, {"value": 3_000.0})
    assert (d.segment, d.rule, d.priority) == ("gold", "cancellation", 75.0)


def test_priority_adds_segment_and_rule_expression(engine: Engine) -> None:
    """A CEL priority is evaluated per contact: platinum 120 + (60 + 20000/1000) = 200 s."""
    d = decide(engine, {"intent": "billing"}, {"value": 20_000.0, "churn_risk": 0.7})
    assert (d.segment, d.rule, d.priority) == ("platinum", "valuable-at-risk", 200.0)
    assert engine.cel_errors == {}


@pytest.mark.parametrize(
    "expression",
    [
        "60 + customer.value / 1000",  # double / int: CEL does not coerce
        "'high'",  # not a number
        "customer.attributes.bonus",  # missing key
    ],
)
def test_failing_priority_is_zero_and_counted(expression: str) -> None:
    """A priority expression that errors or is not a number counts 0 and one CEL error."""
    cfg = inline(
        segments=[{"name": "all", "when": "true", "priority": 7}],
        rules=[{"name": "r", "priority": expression, "steps": [{"queue": "a"}]}],
    )
    eng = Engine(cfg, MemoryStore())
    d = decide(eng, customer={"value": 2_000.0})
    assert d.priority == 7.0
    assert eng.cel_errors == {"rules.r.priority": 1}


@pytest.mark.parametrize(
    ("expression", "credit"),
    [
        ("customer.value / 0.0", 1e7),  # inf: the largest credit
        ("-customer.value / 0.0", -1e7),
        ("0.0 / 0.0", 0.0),  # nan: none
        ("customer.value * 1e300 * 1e300", 1e7),
        ("customer.value * 1e9", 1e7),  # beyond the bound: the bound
    ],
)
def test_priority_beyond_the_bounds_is_bounded_and_counted(expression: str, credit: float) -> None:
    """A priority that comes out infinite, NaN or beyond ±10⁷ s counts one CEL error and
    routes with the bound (or 0 for NaN) instead of failing the contact."""
    cfg = inline(rules=[{"name": "r", "priority": expression, "steps": [{"queue": "a"}]}])
    eng = Engine(cfg, MemoryStore())
    d = decide(eng, customer={"value": 2_000.0})
    assert d.priority == credit
    assert eng.cel_errors == {"rules.r.priority": 1}


def test_has_is_false_for_a_field_the_contact_lacks() -> None:
    """has() of a field the rules' view lacks is false, and comparing that field is an error
    (counted), as on the whole variable: the fields rules read are not filled with nulls."""
    cfg = inline(
        rules=[
            {"name": "named", "when": "has(customer.name)", "steps": [{"queue": "b"}]},
            {"name": "typo", "when": "contact.languag == null", "steps": [{"queue": "b"}]},
            {"name": "default", "steps": [{"queue": "a"}]},
        ]
    )
    eng = Engine(cfg, MemoryStore())
    assert decide(eng, customer={"value": 5.0, "name": "Ann"}).rule == "default"
    assert eng.cel_errors == {"rules.typo.when": 1}


def test_failing_condition_is_false_and_counted() -> None:
    """A condition that errors is false (the next rule or segment decides) and is counted."""
    cfg = inline(
        segments=[
            {"name": "flagged", "when": "customer.attributes.flag == 'x'", "priority": 50},
            {"name": "rest", "when": "true"},
        ],
        rules=[
            {"name": "vip", "when": "contact.attributes.vip == true", "steps": [{"queue": "b"}]},
            {"name": "default", "steps": [{"queue": "a"}]},
        ],
    )
    eng = Engine(cfg, MemoryStore())
    d = decide(eng, {"attributes": {}}, {"attributes": {}})
    assert (d.segment, d.rule, d.home_queue, d.priority) == ("rest", "default", "a", 0.0)
    assert eng.cel_errors == {"segments.flagged": 1, "rules.vip.when": 1}
    d = decide(eng, {"attributes": {"vip": True}}, {"attributes": {"flag": "x"}})
    assert (d.segment, d.rule, d.priority) == ("flagged", "vip", 50.0)
    assert eng.cel_errors == {"segments.flagged": 1, "rules.vip.when": 1}


def test_last_agent_step_targets_the_known_agent(engine: Engine) -> None:
    """With a last agent, the last_agent step offers to that agent alone for its timeout."""
    d = decide(
        engine, {"intent": "billing"}, {"value": 3_000.0, "churn_risk": 0.8}, last_agent="ag7"
    )
    assert d.rule == "valuable-at-risk"
    assert d.steps == [
        Step((), ("ag7",), 20_000),
        Step(("retention",), (), 60_000),
        Step(("retention", "billing"), (), 0),
    ]
    assert d.skipped_steps == 0
    assert d.home_queue == "retention"


def test_a_targeted_step_carries_its_offer_timeout() -> None:
    """A step's own offer_timeout_seconds is how long an offer to the agents it names stands;
    without it the store's default for offers by name applies (0 here)."""
    cfg = inline(
        rules=[
            {
                "name": "known",
                "steps": [
                    {"target": "last_agent", "timeout_seconds": 60, "offer_timeout_seconds": 45},
                    {"target": "last_agent", "timeout_seconds": 30},
                    {"queue": "b"},
                ],
            }
        ]
    )
    d = decide(Engine(cfg, MemoryStore()), last_agent="ag7")
    assert d.steps == [
        Step((), ("ag7",), 60_000, agent_offer_ms=45_000),
        Step((), ("ag7",), 30_000),
        Step(("b",), (), 0),
    ]


def test_last_agent_step_is_skipped_without_a_last_agent(engine: Engine) -> None:
    """Without a last agent the last_agent step is skipped and counted; the rest stay."""
    d = decide(engine, {"intent": "billing"}, {"value": 3_000.0, "churn_risk": 0.8})
    assert d.steps == [Step(("retention",), (), 60_000), Step(("retention", "billing"), (), 0)]
    assert d.skipped_steps == 1
    assert d.home_queue == "retention"


def advised() -> RoutingConfig:
    """One rule: the customer's advisors (a CEL list) for 30 s, then queue b."""
    return inline(
        rules=[
            {
                "name": "advised",
                "steps": [
                    {
                        "target": "preferred_agents",
                        "agents": "customer.attributes.advisors",
                        "timeout_seconds": 30,
                    },
                    {"queue": "b"},
                ],
            }
        ]
    )


def test_preferred_agents_from_a_cel_list() -> None:
    """preferred_agents evaluates its CEL list per contact; a string is one agent."""
    cfg = advised()
    eng = Engine(cfg, MemoryStore())
    d = decide(eng, customer={"attributes": {"advisors": ["ag1", "ag2"]}})
    assert d.steps == [Step((), ("ag1", "ag2"), 30_000), Step(("b",), (), 0)]
    d = decide(eng, customer={"attributes": {"advisors": "ag9"}})
    assert d.steps[0] == Step((), ("ag9",), 30_000)
    assert eng.cel_errors == {}


def test_failing_preferred_agents_skips_the_step() -> None:
    """A preferred-agents list that errors (or is empty) skips the step; errors are counted."""
    cfg = advised()
    eng = Engine(cfg, MemoryStore())
    d = decide(eng, customer={"attributes": {}})
    assert (d.steps, d.skipped_steps) == ([Step(("b",), (), 0)], 1)
    assert eng.cel_errors == {"rules.advised.agents": 1}
    d = decide(eng, customer={"attributes": {"advisors": []}})
    assert (d.steps, d.skipped_steps) == ([Step(("b",), (), 0)], 1)
    assert eng.cel_errors == {"rules.advised.agents": 1}


def test_preferred_agents_keeps_only_ids_an_agent_can_have() -> None:
    """A preferred-agents list from customer data names each agent once, and only by an id an
    agent can have: a value with ':', '|' or braces (which would make another key of the
    store), an empty one or one too long is nobody, and counts as an error."""
    cfg = advised()
    eng = Engine(cfg, MemoryStore())
    advisors = ["ag1", "ag1:w:voice", "", "x" * 129, "{t}", "a|b", "ag2", "ag1"]
    d = decide(eng, customer={"attributes": {"advisors": advisors}})
    assert d.steps[0] == Step((), ("ag1", "ag2"), 30_000)
    assert eng.cel_errors == {"rules.advised.agents": 1}
    d = decide(eng, customer={"attributes": {"advisors": "ag1:declined"}})
    assert (d.steps, d.skipped_steps) == ([Step(("b",), (), 0)], 1)
    assert eng.cel_errors == {"rules.advised.agents": 2}


def test_service_level_segment_over_queue_over_channel() -> None:
    """The service level is the segment's, else the home queue's, else the channel's."""
    vip_sl = {"threshold_seconds": 5, "target": 0.95}
    queue_sl = {"threshold_seconds": 30, "target": 0.85}
    cfg = inline(
        service_levels={"chat": {"threshold_seconds": 90, "target": 0.7}},
        segments=[
            {"name": "vip", "when": "customer.value >= 1000.0", "service_level": vip_sl},
            {"name": "rest", "when": "true"},
        ],
        queues=[
            {"name": "a", "agents": "true", "service_level": queue_sl},
            {"name": "b", "agents": "true"},
        ],
        rules=[
            {"name": "to-b", "when": "contact.intent == 'b'", "steps": [{"queue": "b"}]},
            {"name": "default", "steps": [{"queue": "a"}]},
        ],
    )

    def level(channel: str, intent: str, value: float) -> ServiceLevel:
        eng = Engine(cfg, MemoryStore())
        return decide(eng, {"channel": channel, "intent": intent}, {"value": value}).service_level

    sl = [
        level("chat", "b", 5_000.0),
        level("chat", "a", 5_000.0),
        level("chat", "a", 0.0),
        level("chat", "b", 0.0),
        level("email", "b", 0.0),
    ]
    assert sl == [
        ServiceLevel(threshold_seconds=5, target=0.95),  # segment beats queue and channel
        ServiceLevel(threshold_seconds=5, target=0.95),  # segment beats queue
        ServiceLevel(threshold_seconds=30, target=0.85),  # queue beats channel
        ServiceLevel(threshold_seconds=90, target=0.7),  # configured channel level
        ServiceLevel(threshold_seconds=14400, target=0.9),  # built-in channel default
    ]


def test_demo_service_levels(engine: Engine) -> None:
    """In the demo, platinum has its own 10 s level; others get their channel's."""
    platinum = decide(engine, {"channel": "chat"}, {"value": 50_000.0})
    gold_sms = decide(engine, {"channel": "sms"}, {"value": 5_000.0})
    assert platinum.service_level == ServiceLevel(threshold_seconds=10, target=0.9)
    assert gold_sms.service_level == ServiceLevel(threshold_seconds=900, target=0.8)


def test_cached_decision_keeps_the_channel_service_level() -> None:
    """Two contacts alike but for the channel get their own channel's service level."""
    eng = Engine(inline(), MemoryStore())
    voice = decide(eng, {"channel": "voice"})
    email = decide(eng, {"channel": "email"})
    assert voice.service_level.threshold_seconds == 20
    assert email.service_level.threshold_seconds == 14400


def test_offer_timeouts_per_queue_with_default() -> None:
    """Offer timeouts are each step queue's, and 15 s for offers outside a queue ('')."""
    cfg = inline(
        queues=[
            {"name": "a", "agents": "true", "offer_timeout_seconds": 30},
            {"name": "b", "agents": "true"},
            {"name": "c", "agents": "true", "offer_timeout_seconds": 5},
        ],
        rules=[
            {
                "name": "r",
                "steps": [
                    {"target": "last_agent", "timeout_seconds": 10},
                    {"queue": "a", "timeout_seconds": 20},
                    {"queues": ["a", "b"]},
                ],
            }
        ],
    )
    d = decide(Engine(cfg, MemoryStore()), last_agent="ag1")
    assert d.offer_timeouts_ms == {"": 15_000, "a": 30_000, "b": 15_000}


def test_suggestions_match_with_names(engine: Engine) -> None:
    """Every matching suggestion is listed, in config order, named by its `name`."""
    d = decide(
        engine,
        {"language": "es", "intent": "billing"},
        {"value": 3_000.0, "churn_risk": 0.7, "products": ["current"]},
    )
    assert [s.rule for s in d.suggestions] == ["premium-card", "save-offer", "spanish-speaker"]
    assert d.suggestions[0] == Suggested(
        "cross_sell", "Offer the Premium card: no FX fees, lounge access.", "premium-card"
    )
    assert d.suggestions[0].wire()["rule"] == "premium-card"
    d = decide(engine, {"language": "en"}, {"value": 3_000.0, "products": ["premium_card"]})
    assert d.suggestions == []


def test_unnamed_suggestion_is_named_by_position() -> None:
    """A suggestion without a name is named suggestion-N (1-based position in the config)."""
    cfg = inline(
        suggestions=[
            {"name": "first", "kind": "tip", "when": "false", "text": "never"},
            {"kind": "tip", "when": "contact.intent == 'x'", "text": "say hi"},
        ]
    )
    d = decide(Engine(cfg, MemoryStore()), {"intent": "x"})
    assert d.suggestions == [Suggested("tip", "say hi", "suggestion-2")]


# ---------------------------------------------------------------------------- memberships


def test_memberships_from_skills(engine: Engine) -> None:
    """An agent joins each queue whose expression admits it; levels come from the queue's skill."""
    got = engine.memberships({"billing": 2, "spanish": 6, "support": 3}, {})
    assert got == [
        ("billing", "longest_idle", 0.0),
        ("billing-es", "longest_idle", 0.0),
        ("support", "most_skilled", 3.0),
        ("support-es", "most_skilled", 3.0),
    ]
    assert engine.memberships({"retention": 4, "sales": 1}, {}) == [
        ("sales", "least_busy", 0.0),
        ("retention", "most_skilled", 4.0),
    ]
    assert engine.memberships({"retention": 2}, {}) == []


def test_missing_skills_count_as_zero(engine: Engine) -> None:
    """Skills an agent lacks are 0, not evaluation errors."""
    assert engine.memberships({}, {}) == []
    assert engine.memberships({"spanish": 9}, {}) == []
    assert engine.cel_errors == {}


def test_most_skilled_level_from_the_queues_skill() -> None:
    """The level stored for a most_skilled queue is the agent's level in that queue's `skill`."""
    cfg = inline(
        queues=[
            {"name": "a", "agents": "true", "strategy": "most_skilled", "skill": "wine"},
            {"name": "b", "agents": "agent.attributes.site == 'lis'"},
        ]
    )
    eng = Engine(cfg, MemoryStore())
    assert eng.memberships({"wine": 7}, {"site": "lis"}) == [
        ("a", "most_skilled", 7.0),
        ("b", "longest_idle", 0.0),
    ]
    assert eng.memberships({}, {"site": "opo"}) == [("a", "most_skilled", 0.0)]


def test_agent_spec(engine: Engine) -> None:
    """An agent document becomes the store's spec: capacity, memberships, exclusive channels."""
    doc = {"name": "Ana", "skills": {"sales": 2}, "capacity": {"voice": 1, "chat": 3}}
    spec = engine.agent_spec("ana", doc)
    assert spec.id == "ana"
    assert json.loads(spec.doc) == doc
    assert spec.capacity == {"voice": 1, "chat": 3}
    assert spec.memberships == [("sales", "least_busy", 0.0)]
    assert spec.exclusive == ["voice"]


# ---------------------------------------------------------------------------- new contacts


def test_new_contact_sort_key_and_fields(engine: Engine) -> None:
    """The sort key is now minus the priority in ms; the decision's fields are carried over."""
    d = decide(engine, {"intent": "cancel", "channel": "chat"}, {"value": 3_000.0})
    new = engine.new_contact("c1", d, "chat", {"id": "c1"}, {"intent": "cancel"}, T0, "cust-9")
    assert d.priority == 75.0
    assert new.sort_key_ms == T0 - 75_000
    assert (new.channel, new.capacity_channel) == ("chat", "chat")
    assert new.steps == [Step(("retention",), (), 90_000), Step(("retention", "billing"), (), 0)]
    assert new.home_queue == "retention"
    assert new.sl_threshold_ms == 60_000
    assert new.offer_timeouts_ms == {"": 15_000, "retention": 15_000, "billing": 15_000}
    assert (new.doc, new.view, new.customer_id) == ('{"id":"c1"}', '{"intent":"cancel"}', "cust-9")


def test_callback_uses_voice_capacity(engine: Engine) -> None:
    """A callback contact keeps its channel but takes a voice slot of the agent."""
    d = decide(engine, {"channel": "callback"})
    new = engine.new_contact("c1", d, "callback", {}, {}, T0)
    assert (new.channel, new.capacity_channel) == ("callback", "voice")
    assert new.sl_threshold_ms == 20_000


# ------------------------------------------------------------------------------ caching


def test_decision_cache_returns_equal_decisions(engine: Engine) -> None:
    """Repeating the inputs (even at another time) gives an equal decision; other inputs differ."""
    contact = {"language": "es", "intent": "billing"}
    first = decide(engine, contact, {"value": 3_000.0}, now_ms=T0)
    again = decide(engine, contact, {"value": 3_000.0}, now_ms=T0 + 3_600_000)
    assert again == first
    # a field no expression reads does not change the decision
    assert decide(engine, {**contact, "subject": "hello"}, {"value": 3_000.0}) == first
    other = decide(engine, contact, {"value": 30_000.0})
    assert (other.segment, other.priority) == ("platinum", 120.0)
    assert (first.segment, first.priority) == ("gold", 45.0)


def test_config_reading_now_is_evaluated_each_time() -> None:
    """With an expression on `now`, the same contact is decided afresh at each time."""
    cfg = inline(
        rules=[
            {"name": "morning", "when": "now.getHours() < 12", "steps": [{"queue": "a"}]},
            {"name": "afternoon", "steps": [{"queue": "b"}]},
        ]
    )
    eng = Engine(cfg, MemoryStore())

    def at(hour: int) -> int:
        return int(datetime(2024, 5, 6, hour, 30, tzinfo=UTC).timestamp() * 1000)

    rules = [decide(eng, now_ms=at(h)).rule for h in (9, 15, 9, 11, 12)]
    assert rules == ["morning", "afternoon", "morning", "morning", "afternoon"]


def test_remembered_results_equal_fresh_evaluation() -> None:
    """Each expression's result is remembered by the values of the fields it reads: an engine
    that has seen many contacts decides (and counts errors) exactly as a fresh one does."""
    cfg = inline(
        segments=[
            {"name": "vip", "when": "customer.value >= 5000.0 && customer.segment == ''"},
            {"name": "flagged", "when": "customer.attributes.flag == true", "priority": 9},
            {"name": "rest", "when": "true"},
        ],
        rules=[
            {
                "name": "loyal",
                "when": "customer.segment == 'vip' && contact.intent == 'cancel'",
                "priority": "customer.value / 100.0",
                "steps": [{"queue": "b"}],
            },
            {"name": "es", "when": "contact.language == 'es'", "steps": [{"queue": "a"}]},
            {"name": "default", "steps": [{"queue": "a"}]},
        ],
        suggestions=[
            {
                "name": "card",
                "kind": "cross_sell",
                "when": "!('card' in customer.products)",
                "text": "Card",
            },
            {"name": "odd", "kind": "note", "when": "contact.attributes.n == 1", "text": "One"},
        ],
    )
    warm = Engine(cfg, MemoryStore())
    values = [100.0, 5000.0, 7000.0, 5000.0]
    attributes: list[dict[str, Any]] = [{}, {"flag": True}, {"flag": 1}, {"flag": "true"}]
    numbers: list[dict[str, Any]] = [{"n": 1}, {"n": 1.0}, {"n": True}, {}]
    for i in range(64):
        contact = {
            "intent": ["cancel", "billing"][i % 2],
            "language": ["es", "en", "fr"][i % 3],
            "attributes": numbers[i // 2 % 4],
        }
        customer = {
            "value": values[i % 4],
            "attributes": attributes[i // 4 % 4],
            "products": [["card"], []][i // 16 % 2],
        }
        fresh = Engine(cfg, MemoryStore())
        before = dict(warm.cel_errors)
        assert decide(warm, contact, customer) == decide(fresh, contact, customer), (i, contact)
        grew = {k: n - before.get(k, 0) for k, n in warm.cel_errors.items() if n != before.get(k)}
        assert grew == dict(fresh.cel_errors), i


def test_attribute_values_cel_tells_apart_are_remembered_apart() -> None:
    """JSON keys keep values CEL tells apart: a result for true is not reused for 1."""
    cfg = inline(
        rules=[
            {"name": "yes", "when": "contact.attributes.x == true", "steps": [{"queue": "b"}]},
            {"name": "default", "steps": [{"queue": "a"}]},
        ]
    )
    eng = Engine(cfg, MemoryStore())
    got = [decide(eng, {"attributes": {"x": x}}).rule for x in (True, 1, 1.0, True, "true")]
    assert got == ["yes", "default", "default", "yes", "default"]


# ---------------------------------------------------------------------------- end to end


async def add_agent(
    engine: Engine, tenant: str, agent_id: str, skills: dict[str, int], now_ms: int
) -> None:
    """Upsert an agent with one voice slot and make it available at ``now_ms``."""
    doc = {"name": agent_id, "skills": skills, "capacity": {"voice": 1}}
    await engine.upsert_agent(tenant, agent_id, doc, now_ms)
    await engine.set_agent_state(tenant, agent_id, "available", now_ms)


async def route(
    engine: Engine,
    tenant: str,
    contact_id: str,
    contact: dict[str, Any],
    customer: dict[str, Any],
    now_ms: int,
) -> list[tuple[str, str, str]]:
    """Decide and route a voice contact; return the offers its enqueue made."""
    cview, uview = cel_views({"channel": "voice", **contact}, customer)
    d = engine.decide(cview, uview, now_ms)
    new = engine.new_contact(contact_id, d, "voice", {"id": contact_id}, cview, now_ms)
    out = await engine.route(tenant, new, now_ms)
    return offers(out.events)


async def test_spanish_billing_goes_to_the_spanish_agent(engine: Engine, tenant: str) -> None:
    """Spanish billing reaches the Spanish speaker even though the other agent idled longer."""
    await add_agent(engine, tenant, "bob", {"billing": 3}, T0)
    await add_agent(engine, tenant, "ana", {"billing": 1, "spanish": 6}, T0 + 1_000)
    es = await route(engine, tenant, "c1", {"language": "es", "intent": "billing"}, {}, T0 + 5_000)
    assert es == [("ana", "c1", "billing-es")]
    en = await route(engine, tenant, "c2", {"language": "en", "intent": "billing"}, {}, T0 + 6_000)
    assert en == [("bob", "c2", "billing")]


async def test_english_billing_takes_the_longest_idle_agent(engine: Engine, tenant: str) -> None:
    """On a longest_idle queue, the agent available the longest gets the contact."""
    await add_agent(engine, tenant, "ana", {"billing": 1, "spanish": 6}, T0)
    await add_agent(engine, tenant, "bob", {"billing": 3}, T0 + 1_000)
    got = await route(engine, tenant, "c1", {"intent": "billing"}, {}, T0 + 5_000)
    assert got == [("ana", "c1", "billing")]


async def test_platinum_jumps_ahead_when_an_agent_frees_up(engine: Engine, tenant: str) -> None:
    """A later platinum contact is offered before earlier standard ones; then oldest first."""
    await add_agent(engine, tenant, "bob", {"billing": 1}, T0)
    busy = await route(engine, tenant, "c0", {"intent": "billing"}, {}, T0)
    assert busy == [("bob", "c0", "billing")]
    reservation = (await engine.store.agent_status(tenant, "bob")).reservations[0]
    await engine.store.accept(tenant, reservation, "bob", T0 + 1_000)

    assert await route(engine, tenant, "s1", {"intent": "billing"}, {}, T0 + 10_000) == []
    assert await route(engine, tenant, "s2", {"intent": "billing"}, {}, T0 + 20_000) == []
    vip = {"value": 50_000.0}
    assert await route(engine, tenant, "p1", {"intent": "billing"}, vip, T0 + 60_000) == []

    done = await engine.store.complete(tenant, "c0", "bob", 0, "resolved", T0 + 70_000)
    assert offers(done.events) == [("bob", "p1", "billing")]
    reservation = (await engine.store.agent_status(tenant, "bob")).reservations[0]
    await engine.store.accept(tenant, reservation, "bob", T0 + 71_000)
    done = await engine.store.complete(tenant, "p1", "bob", 0, "resolved", T0 + 80_000)
    assert offers(done.events) == [("bob", "s1", "billing")]


async def test_reapply_recomputes_queue_memberships(tenant: str) -> None:
    """After a config change, reapply moves every stored agent to the queues it now matches."""
    store = MemoryStore()
    before = Engine(inline(), store)
    await before.upsert_agent(tenant, "ana", {"skills": {"a": 1}, "capacity": {"voice": 1}}, T0)
    await before.upsert_agent(tenant, "bob", {"skills": {"a": 3}, "capacity": {"voice": 1}}, T0)
    assert (await store.agent_status(tenant, "ana")).queues == ["a"]
    assert (await store.agent_status(tenant, "bob")).queues == ["a"]

    after = Engine(
        inline(
            queues=[
                {"name": "a", "agents": "agent.skills.a >= 2"},
                {"name": "b", "agents": "agent.skills.a >= 1"},
            ]
        ),
        store,
    )
    assert await after.reapply(tenant, T0 + 1_000) == 2
    assert (await store.agent_status(tenant, "ana")).queues == ["b"]
    assert (await store.agent_status(tenant, "bob")).queues == ["a", "b"]
    snapshot = await store.queue_snapshot(tenant, ["a", "b"], T0 + 1_000)
    assert [(q.name, q.staffed) for q in snapshot] == [("a", 0), ("b", 0)]


async def test_reapply_lets_an_available_agent_take_a_waiting_contact(tenant: str) -> None:
    """An available agent who joins a queue through reapply is offered its waiting contact."""
    store = MemoryStore()
    before = Engine(inline(), store)
    await add_agent(before, tenant, "ana", {"b": 1}, T0)
    assert await route(before, tenant, "c1", {}, {}, T0 + 1_000) == []

    after = Engine(inline(queues=[{"name": "a", "agents": "agent.skills.b >= 1"}]), store)
    await after.reapply(tenant, T0 + 2_000)
    status = await store.contact_status(tenant, "c1")
    assert (status.status, status.agent_id, status.queue) == ("offered", "ana", "a")
