"""Routing config loading: the demo loads, and every bad file is rejected with all its problems.

Each file in ``tests/config/bad`` holds one family of mistakes (``many_problems.yaml`` mixes
them); the table below pins every problem's line, YAML path and message.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cel
import pytest
import yaml

from config.cel import FUNCTIONS, compile_expr
from config.routing import (
    DEFAULT_OFFER_TIMEOUT_SECONDS,
    ConfigInvalid,
    ConfigProblem,
    RoutingConfig,
    demo_config_path,
    load_routing,
    load_yaml,
)

BAD = Path(__file__).with_name("bad")
SYNTAX = "CEL syntax error at column"

#: file -> every expected problem as (1-based line, YAML path, a fragment of the message)
EXPECTED: dict[str, list[tuple[int, str, str]]] = {
    "cel_syntax.yaml": [
        (4, "queues[0].agents", f"{SYNTAX} 29: mismatched input '<EOF>'"),
        (7, "rules[0].priority", f"{SYNTAX} 7: mismatched input '<EOF>'"),
    ],
    "cel_unknown_variable.yaml": [
        (4, "queues[0].agents", "unknown variable contact (available here: agent)"),
        (7, "rules[0].when", "unknown variable agent (available here: contact, customer, now)"),
    ],
    "cel_unknown_function.yaml": [
        (3, "queues[0].agents", "unknown function lowerAscii"),
        (6, "rules[0].when", "unknown function max"),
    ],
    "unknown_queue.yaml": [
        (7, "rules[0].steps[0].queue", "unknown queue 'biling'"),
        (8, "rules[0].steps[1].queues", "unknown queue 'retention'"),
    ],
    "duplicate_names.yaml": [
        (4, "segments[1].name", "duplicate name 'gold'"),
        (7, "queues[1].name", "duplicate name 'billing'"),
        (10, "rules[1].name", "duplicate name 'default'"),
        (13, "suggestions[1].name", "duplicate name 'upsell'"),
    ],
    "missing_timeout.yaml": [
        (8, "rules[0].steps[0]", "only the last step may omit timeout_seconds"),
    ],
    "last_step_timeout.yaml": [
        (8, "rules[0].steps[0].timeout_seconds", "the last step cannot time out"),
    ],
    "last_step_no_queue.yaml": [
        (8, "rules[0].steps[1]", "the last step must name a queue"),
    ],
    "most_skilled_no_skill.yaml": [
        (3, "queues[0]", "strategy most_skilled needs `skill`"),
    ],
    "invalid_strategy.yaml": [
        (5, "queues[0].strategy", "'longest_idle', 'most_skilled' or 'least_busy'"),
    ],
    "unknown_field.yaml": [
        (5, "queues[0].offer_timeout", "Extra inputs are not permitted"),
    ],
    "not_yaml.yaml": [
        (5, "", "not valid YAML: while parsing a flow sequence"),
    ],
    "top_level_list.yaml": [
        (1, "", "expected a mapping at the top"),
    ],
    "empty.yaml": [
        (1, "", "expected a mapping at the top"),
    ],
    "wrong_types.yaml": [
        (3, "service_levels.voice.threshold_seconds", "Input should be a valid number"),
        (4, "service_levels.fax", "Input should be 'voice', 'chat', 'email', 'sms' or 'callback'"),
        (8, "queues[0].offer_timeout_seconds", "Input should be a valid number"),
        (11, "rules[0].priority", "a valid number; Input should be a valid string"),
        (12, "rules[0].steps", "Input should be a valid list"),
        (13, "history_length", "Input should be a valid integer"),
    ],
    "many_problems.yaml": [
        (4, "queues[0].agents", f"{SYNTAX} 24"),
        (5, "queues[1]", "strategy most_skilled needs `skill`"),
        (8, "queues[2].name", "duplicate name 'billing'"),
        (10, "queues[2].colour", "Extra inputs are not permitted"),
        (13, "rules[0].when", "unknown variable agent"),
        (15, "rules[0].steps[0].queue", "unknown queue 'retention'"),
        (15, "rules[0].steps[0]", "only the last step may omit timeout_seconds"),
        (16, "rules[0].steps[1].timeout_seconds", "the last step cannot time out"),
    ],
}


def problems_of(source: Path | dict[str, Any]) -> list[ConfigProblem]:
    """The problems ``load_routing`` raises for ``source`` (failing if it loads)."""
    with pytest.raises(ConfigInvalid) as caught:
        load_routing(source)
    return caught.value.problems


def minimal(**changes: Any) -> dict[str, Any]:
    """A valid one-queue, one-rule config as a mapping, with top-level keys replaced."""
    data: dict[str, Any] = {
        "queues": [{"name": "billing", "agents": "agent.skills.billing >= 1"}],
        "rules": [{"name": "default", "steps": [{"queue": "billing"}]}],
    }
    data.update(changes)
    return data


def test_demo_config_loads() -> None:
    """The shipped demo config is valid and holds the contact centre it describes."""
    cfg = load_routing(demo_config_path())
    assert [s.name for s in cfg.segments] == ["platinum", "gold", "standard"]
    assert [q.name for q in cfg.queues] == [
        "billing",
        "billing-es",
        "support",
        "support-es",
        "sales",
        "retention",
    ]
    assert cfg.rules[0].name == "valuable-at-risk"
    assert cfg.rules[0].priority == "60.0 + customer.value / 1000.0"
    assert cfg.rules[-1].name == "default"
    assert cfg.queue("retention").skill == "retention"
    assert cfg.service_level("email").threshold_seconds == 14400
    assert len(cfg.suggestions) == 4


def test_every_bad_file_has_a_table_entry() -> None:
    """Every file in tests/config/bad is checked by the table (none is silently skipped)."""
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_lists_every_problem(name: str) -> None:
    """A bad file is rejected listing exactly its problems, each with file, line, path, message."""
    path = BAD / name
    problems = problems_of(path)
    got = sorted((p.line or 0, p.path) for p in problems)
    assert got == sorted((line, where) for line, where, _ in EXPECTED[name])
    by_place = {(p.line, p.path): p.message for p in problems}
    for line, where, fragment in EXPECTED[name]:
        assert fragment in by_place[(line, where)], (where, by_place[(line, where)])
    assert {p.file for p in problems} == {str(path)}


def test_error_text_names_file_line_and_path() -> None:
    """The exception text has one `file:line: path: message` line per problem."""
    path = BAD / "unknown_queue.yaml"
    with pytest.raises(ConfigInvalid) as caught:
        load_routing(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid routing config:"
    assert lines[1:] == [
        f"  {path}:7: rules[0].steps[0].queue: unknown queue 'biling'",
        f"  {path}:8: rules[0].steps[1].queues: unknown queue 'retention'",
    ]


def test_syntax_error_message_is_the_parser_message() -> None:
    """A CEL syntax error says what the parser expected, not an echo of the source."""
    (problem,) = problems_of(minimal(queues=[{"name": "billing", "agents": "a b"}]))
    assert problem.path == "queues[0].agents"
    assert problem.message == "CEL syntax error at column 3: extraneous input 'b' expecting <EOF>"


def test_unknown_variable_in_suggestion_and_step_agents() -> None:
    """`agent` is unknown in suggestions and preferred-agent lists; `now` is known in rules."""
    data = minimal(
        rules=[
            {
                "name": "morning",
                "when": "now.getHours() < 12",
                "steps": [
                    {"target": "preferred_agents", "agents": "agent.id", "timeout_seconds": 5},
                    {"queue": "billing"},
                ],
            },
            {"name": "default", "steps": [{"queue": "billing"}]},
        ],
        suggestions=[{"kind": "tip", "when": "agent.skills.x > 1", "text": "hi"}],
    )
    problems = problems_of(data)
    assert [(p.path, p.message.split(" (")[0]) for p in problems] == [
        ("rules[0].steps[0].agents", "unknown variable agent"),
        ("suggestions[0].when", "unknown variable agent"),
    ]


def test_macro_variables_are_not_unknown() -> None:
    """Variables bound by CEL macros (`exists(p, ...)`) are not reported as unknown."""
    cfg = load_routing(
        minimal(
            rules=[
                {
                    "name": "savers",
                    "when": "customer.products.exists(p, p == 'savings')",
                    "steps": [{"queue": "billing"}],
                },
                {"name": "default", "steps": [{"queue": "billing"}]},
            ]
        )
    )
    assert cfg.rules[0].when == "customer.products.exists(p, p == 'savings')"


def test_empty_expression_is_rejected() -> None:
    """A blank CEL expression is an error, not a condition that is always false."""
    (problem,) = problems_of(minimal(queues=[{"name": "billing", "agents": "  "}]))
    assert (problem.path, problem.message) == ("queues[0].agents", "empty expression")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"queue": "billing", "queues": ["billing"]}, "give either `queue` or `queues`, not both"),
        ({}, "a step needs `queue`, `queues` or `target`"),
        ({"target": "preferred_agents"}, "target preferred_agents needs `agents`"),
        ({"queue": "billing", "agents": "['a1']"}, "`agents` only goes with target"),
        (
            {"queue": "billing", "offer_timeout_seconds": 30},
            "`offer_timeout_seconds` on a step is for the agents its `target` names",
        ),
    ],
)
def test_step_shape_problems(step: dict[str, Any], message: str) -> None:
    """A step's targets must make sense together; the problem points at the step."""
    step = {**step, "timeout_seconds": 10}
    data = minimal(rules=[{"name": "r", "steps": [step, {"queue": "billing"}]}])
    problems = problems_of(data)
    assert [p.path for p in problems] == ["rules[0].steps[0]"]
    assert message in problems[0].message


def test_mapping_source_loads_like_the_file() -> None:
    """A parsed mapping loads to the same config as the file it came from."""
    data = yaml.safe_load(demo_config_path().read_text(encoding="utf-8"))
    assert load_routing(data) == load_routing(demo_config_path())


def test_mapping_source_problems_have_no_line() -> None:
    """Problems in a mapping are named by the given name and path, with no line number."""
    data = minimal(queues=[{"name": "billing", "agents": "agent.skills.billing >= 1", "x": 1}])
    with pytest.raises(ConfigInvalid) as caught:
        load_routing(data, name="tenant acme")
    assert caught.value.problems == [
        ConfigProblem(
            file="tenant acme",
            line=None,
            path="queues[0].x",
            message="Extra inputs are not permitted",
        )
    ]
    text = "tenant acme: queues[0].x: Extra inputs are not permitted"
    assert str(caught.value.problems[0]) == text


def test_missing_file_is_a_problem() -> None:
    """A path that cannot be read is reported as a ConfigInvalid, not an OSError."""
    missing = BAD / "does-not-exist.yaml"
    (problem,) = problems_of(missing)
    assert problem.file == str(missing)
    assert problem.line is None
    assert "No such file" in problem.message


def test_defaults_of_a_minimal_config() -> None:
    """Omitted fields take the documented defaults (15 s offers, longest idle, one segment)."""
    cfg = load_routing(minimal())
    queue = cfg.queue("billing")
    assert queue.offer_timeout_seconds == DEFAULT_OFFER_TIMEOUT_SECONDS == 15.0
    assert queue.strategy == "longest_idle"
    assert [(s.name, s.when, s.priority) for s in cfg.segments] == [("standard", "true", 0.0)]
    assert cfg.rules[0].when == "true"
    assert cfg.exclusive_channels == ["voice"]
    assert cfg.service_level("callback").threshold_seconds == 20
    assert cfg.service_level("email").target == 0.9


def test_invalid_config_is_never_partially_applied() -> None:
    """One problem among valid parts raises; nothing is returned and the input is untouched."""
    data = yaml.safe_load(demo_config_path().read_text(encoding="utf-8"))
    data["rules"][1]["steps"][0]["queue"] = "billing-fr"
    before = copy.deepcopy(data)
    result: RoutingConfig | None = None
    with pytest.raises(ConfigInvalid) as caught:
        result = load_routing(data)
    assert result is None
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("rules[1].steps[0].queue", "unknown queue 'billing-fr'")
    ]
    assert data == before


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_listed_cel_function_evaluates(name: str) -> None:
    """The allow-list matches the runtime: each listed function runs; an unlisted one cannot."""
    probes = {
        "size": "size('ab')", "int": "int('1')", "uint": "uint(1)", "double": "double(1)",
        "string": "string(1)", "bytes": "bytes('a')", "type": "type(1)", "dyn": "dyn(1)",
        "timestamp": "timestamp('2026-01-01T00:00:00Z')", "duration": "duration('1s')",
        "matches": "'ab'.matches('a')", "contains": "'ab'.contains('a')",
        "startsWith": "'ab'.startsWith('a')", "endsWith": "'ab'.endsWith('b')",
    }  # fmt: skip
    source = probes.get(name, f"now.{name}()")
    context = cel.Context()
    context.add_variable("now", datetime(2026, 1, 1, tzinfo=UTC))
    compile_expr(source, "rule").run(context)


def test_an_unlisted_function_fails_at_evaluation() -> None:
    with pytest.raises(RuntimeError, match="Undefined variable or function"):
        cel.compile("max(1, 2)").execute(cel.Context())


def test_the_last_segment_and_the_last_rule_match_everything() -> None:
    """First match wins, so the last segment and the last rule must be catch-alls: a config
    whose contacts could match none is rejected, naming both places."""
    data = minimal(
        segments=[{"name": "vip", "when": "customer.value > 100.0"}],
        rules=[
            {"name": "only", "when": "contact.intent == 'vip'", "steps": [{"queue": "billing"}]}
        ],
    )
    problems = problems_of(data)
    assert [p.path for p in problems] == ["segments[0].when", "rules[0].when"]
    assert 'the last segment must match every customer (when: "true")' in problems[0].message
    assert 'the last rule must match every contact (when: "true")' in problems[1].message
    # "true" with spaces around it, or a rule without `when`, is a catch-all
    ok = minimal(segments=[{"name": "all", "when": " true "}])
    assert [r.when for r in load_routing(ok).rules] == ["true"]


def test_segments_may_not_be_empty() -> None:
    """A config with no segment at all is rejected (every contact needs one)."""
    (problem,) = problems_of(minimal(segments=[]))
    assert problem.path == "segments"


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys and drops the first without a word; here that is
    an error at the second key's line."""
    path = tmp_path / "twice.yaml"
    path.write_text(
        "queues:\n"
        "  - {name: billing, agents: 'agent.skills.billing >= 1'}\n"
        "rules:\n"
        "  - {name: at-risk, when: 'customer.churn_risk > 0.5', steps: [{queue: billing}]}\n"
        "  - {name: default, steps: [{queue: billing}]}\n"
        "rules:\n"
        "  - {name: default, steps: [{queue: billing}]}\n",
        encoding="utf-8",
    )
    (problem,) = problems_of(path)
    assert problem.line == 6
    assert "found the key 'rules' twice" in problem.message


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("segments[0].priority", float("inf")),
        ("segments[0].priority", float("nan")),
        ("segments[0].priority", 1e12),
        ("rules[0].priority", float("-inf")),
        ("queues[0].offer_timeout_seconds", float("inf")),
        ("queues[0].offer_timeout_seconds", 0.0001),
        ("queues[0].wrap_up_seconds", float("nan")),
        ("rules[0].steps[0].timeout_seconds", 0.0004),
        ("rules[0].steps[0].timeout_seconds", float("inf")),
        ("service_levels.voice.threshold_seconds", float("inf")),
    ],
)
def test_numbers_are_finite_and_in_range(where: str, value: float) -> None:
    """Infinite or NaN numbers, credits beyond ±10⁷ s and timeouts that would round to 0 ms
    are rejected at load (they used to load, then fail every contact or never time out)."""
    data = minimal(
        segments=[{"name": "all", "when": "true"}],
        rules=[
            {
                "name": "default",
                "steps": [{"queue": "billing", "timeout_seconds": 30}, {"queue": "billing"}],
            }
        ],
        service_levels={"voice": {"threshold_seconds": 20, "target": 0.8}},
    )
    target: Any = data
    *parents, last = where.replace("[", ".").replace("]", "").split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = value
    (problem,) = problems_of(data)
    assert problem.path == where


def test_every_problem_of_one_item_is_reported() -> None:
    """A field error in a step or a queue does not hide the checks across its fields."""
    data = minimal(
        queues=[{"name": "billing", "agents": "true", "strategy": "most_skilled",
                 "offer_timeout_seconds": -1}],
        rules=[{"name": "default", "steps": [
            {"queue": "billing", "queues": ["billing"], "timeout_seconds": -5},
            {"queue": "billing"},
        ]}],
    )  # fmt: skip
    found = sorted((p.path, p.message.split(":")[0]) for p in problems_of(data))
    assert found == [
        ("queues[0]", "strategy most_skilled needs `skill`"),
        ("queues[0].offer_timeout_seconds", "Input should be greater than or equal to 0.001"),
        ("rules[0].steps[0]", "give either `queue` or `queues`, not both"),
        ("rules[0].steps[0].timeout_seconds", "Input should be greater than or equal to 0.001"),
    ]


@pytest.mark.parametrize(
    "expression",
    ["now.getHours('America/New_York') < 9", 'now.getDayOfWeek( "+01:00") == 0'],
)
def test_time_accessors_take_no_time_zone(expression: str) -> None:
    """The runtime has the time accessors in UTC only: a time-zone argument compiles, then
    fails at every evaluation, so the check refuses it (a quoted lookalike is fine)."""
    data = minimal(
        rules=[
            {"name": "hours", "when": expression, "steps": [{"queue": "billing"}]},
            {"name": "default", "steps": [{"queue": "billing"}]},
        ]
    )
    (problem,) = problems_of(data)
    assert problem.path == "rules[0].when"
    assert "takes no time zone here" in problem.message
    context = cel.Context()
    context.add_variable("now", datetime.now(UTC))
    with pytest.raises(RuntimeError):  # what the check saves every evaluation from
        cel.compile(expression).execute(context)
    assert compile_expr("contact.intent == '.getHours(x)' && now.getHours() < 9", "rule")


def test_yaml_merge_keys_load(tmp_path: Path) -> None:
    """`<<: *anchor` shares settings between items, and a key given beside it overrides the
    merged one: neither is a key given twice."""
    path = tmp_path / "merge.yaml"
    path.write_text(
        "queues:\n"
        "  - &q {name: billing, agents: 'agent.skills.billing >= 1', offer_timeout_seconds: 20}\n"
        "  - <<: *q\n"
        "    name: sales\n"
        "rules:\n"
        "  - {name: default, steps: [{queue: billing}]}\n",
        encoding="utf-8",
    )
    cfg = load_routing(path)
    assert [(q.name, q.offer_timeout_seconds) for q in cfg.queues] == [
        ("billing", 20.0),
        ("sales", 20.0),
    ]


def test_a_merged_mapping_merged_again_loads() -> None:
    """An anchored mapping with its own merge and override, merged again from elsewhere in the
    file, loads as `yaml.safe_load` reads it (the check sees each mapping as written)."""
    text = (
        "base: &base {offer_timeout_seconds: 20, wrap_up_seconds: 10}\n"
        "groups:\n"
        "  retail:\n"
        "    queues:\n"
        "      - &sales\n"
        "        <<: *base\n"
        "        name: sales\n"
        "        wrap_up_seconds: 30\n"
        "vip:\n"
        "  <<: *sales\n"
        "  name: sales_vip\n"
    )
    assert load_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize("text", ["1: a\n0x1: b\n", "true: a\nTrue: b\n", "~: a\nnull: b\n"])
def test_one_key_spelt_twice_is_an_error(text: str) -> None:
    """Two spellings of one key (1 and 0x1, true and True) are the same key given twice."""
    with pytest.raises(yaml.YAMLError, match="twice"):
        load_yaml(text)


def test_a_syntax_error_names_the_file(tmp_path: Path) -> None:
    """A YAML syntax error's position names the config file, not the parser's string."""
    path = tmp_path / "routing.yaml"
    path.write_text("queues:\n  - name: a\n   agents: [\n", encoding="utf-8")
    (problem,) = problems_of(path)
    assert problem.file == str(path)
    assert f'in "{path}", line 3' in problem.message
    assert "<unicode string>" not in problem.message
