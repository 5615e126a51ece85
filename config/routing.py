"""The routing config (api-v1 §6): schema, loading and validation.

``load_routing`` reads YAML (or takes an already-parsed mapping), validates the structure with
pydantic, compiles every CEL expression, checks cross references, and either returns a
``RoutingConfig`` or raises ``ConfigInvalid`` listing every problem as file:line: path: message.
Nothing is applied from an invalid config.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config.cel import CelError, compile_expr

Channel = Literal["voice", "chat", "email", "sms", "callback"]
CapacityChannel = Literal["voice", "chat", "email", "sms"]
Strategy = Literal["longest_idle", "most_skilled", "least_busy"]

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]

DEFAULT_OFFER_TIMEOUT_SECONDS = 15.0


class _Model(BaseModel):
    # (no inf or nan: every number here becomes milliseconds or a sort key)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: the longest timeout or threshold a config may give: 30 days
MAX_SECONDS = 30 * 24 * 3600.0
#: the largest wait credit, either way: about 116 days
MAX_PRIORITY_SECONDS = 1e7
#: a timeout or threshold, at least a millisecond (times are kept in whole milliseconds)
Seconds = Annotated[float, Field(ge=0.001, le=MAX_SECONDS)]
Priority = Annotated[float, Field(ge=-MAX_PRIORITY_SECONDS, le=MAX_PRIORITY_SECONDS)]


def _cel(where: str) -> Any:
    def check(value: str) -> str:
        try:
            compile_expr(value, where)
        except CelError as exc:
            raise ValueError(str(exc)) from None
        return value

    return check


SegmentExpr = Annotated[str, Field(min_length=1)]


class ServiceLevel(_Model):
    threshold_seconds: Seconds
    target: float = Field(gt=0, le=1)


DEFAULT_SERVICE_LEVELS: dict[str, ServiceLevel] = {
    "voice": ServiceLevel(threshold_seconds=20, target=0.8),
    "callback": ServiceLevel(threshold_seconds=20, target=0.8),
    "chat": ServiceLevel(threshold_seconds=60, target=0.8),
    "sms": ServiceLevel(threshold_seconds=3600, target=0.8),
    "email": ServiceLevel(threshold_seconds=14400, target=0.9),
}


class Segment(_Model):
    name: Name
    when: str
    priority: Priority = 0.0
    service_level: ServiceLevel | None = None

    _check_when = field_validator("when")(_cel("segment"))


class Queue(_Model):
    name: Name
    agents: str
    strategy: Strategy = "longest_idle"
    skill: str | None = None
    offer_timeout_seconds: Seconds = DEFAULT_OFFER_TIMEOUT_SECONDS
    wrap_up_seconds: float = Field(default=0.0, ge=0, le=MAX_SECONDS)
    service_level: ServiceLevel | None = None

    _check_agents = field_validator("agents")(_cel("queue"))


class Step(_Model):
    queue: Name | None = None
    queues: list[Name] | None = Field(default=None, min_length=1)
    target: Literal["last_agent", "preferred_agents"] | None = None
    agents: str | None = None
    timeout_seconds: Seconds | None = None
    #: how long an offer to an agent the target names stands (default 15 s; a queue's offers
    #: use the queue's own offer_timeout_seconds)
    offer_timeout_seconds: Seconds | None = None

    _check_agents = field_validator("agents")(lambda v: v if v is None else _cel("rule")(v))

    @property
    def queue_names(self) -> list[str]:
        if self.queue is not None:
            return [self.queue]
        return list(self.queues or [])


class Rule(_Model):
    name: Name
    when: str = "true"
    priority: Priority | str = 0.0
    steps: list[Step] = Field(min_length=1)

    _check_when = field_validator("when")(_cel("rule"))

    @field_validator("priority")
    @classmethod
    def _check_priority(cls, value: float | str) -> float | str:
        if isinstance(value, str):
            _cel("rule")(value)
        return value


class Suggestion(_Model):
    name: str | None = None
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    when: str
    text: str = Field(min_length=1, max_length=500)

    _check_when = field_validator("when")(_cel("suggestion"))


class RoutingConfig(_Model):
    service_levels: dict[Channel, ServiceLevel] = Field(default_factory=dict)
    segments: list[Segment] = Field(
        default_factory=lambda: [Segment(name="standard", when="true")], min_length=1
    )
    queues: list[Queue] = Field(min_length=1)
    rules: list[Rule] = Field(min_length=1)
    suggestions: list[Suggestion] = Field(default_factory=list)
    #: a contact on one of these channels blocks offers on the other channels to its agent (on
    #: its own channel the capacity alone limits: [voice, chat] is a call or up to N chats)
    exclusive_channels: list[CapacityChannel] = Field(default_factory=lambda: ["voice"])  # type: ignore[arg-type]
    history_length: int = Field(default=20, ge=1, le=200)

    def queue(self, name: str) -> Queue:
        return next(q for q in self.queues if q.name == name)

    def service_level(self, channel: str) -> ServiceLevel:
        for name, level in self.service_levels.items():
            if name == channel:
                return level
        return DEFAULT_SERVICE_LEVELS[channel]


# --------------------------------------------------------------------------------- errors


class ConfigProblem(BaseModel):
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(top)'}: {self.message}"


class ConfigInvalid(ValueError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("invalid routing config:\n" + "\n".join(f"  {p}" for p in problems))


def yaml_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _lines(text: str) -> dict[tuple[int | str, ...], int]:
    """YAML path -> 1-based line, from the composed node tree."""
    out: dict[tuple[int | str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[int | str, ...]) -> None:
        out[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                walk(value, child)
                out[child] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return out
    if root is not None:
        walk(root, ())
    return out


def _line_for(lines: dict[tuple[int | str, ...], int], loc: tuple[int | str, ...]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


_UNION_TAG = re.compile(r"^(function-after|function-wrap|function-before)\[.*\]$")
_ABSENT = object()


def yaml_loc(loc: tuple[int | str, ...], data: Any) -> tuple[int | str, ...]:
    """A pydantic error location as a YAML path: drop the parts that are pydantic's own.

    A field name always indexes a mapping in the data; a string part met on a scalar or a list is
    a union member tag (``float``, ``str``), and ``[key]`` marks a bad mapping key. A tagged
    union names the member too (``exponential`` for ``{dist: exponential}``): a part that is no
    key of the mapping it meets, with more to come, is that tag (a missing field comes last).
    """
    out: list[int | str] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out.append(part)
            ok = isinstance(node, list) and 0 <= part < len(node)
            node = node[part] if ok else _ABSENT
        elif part == "[key]" or _UNION_TAG.match(part):
            continue
        elif isinstance(node, dict):
            if part not in node and i < len(loc) - 1:
                continue
            out.append(part)
            node = node.get(part, _ABSENT)
        elif node is _ABSENT:
            out.append(part)
    return tuple(out)


def _items(data: Mapping[str, Any], field: str) -> list[tuple[int, dict[str, Any]]]:
    value = data.get(field)
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _step_problems(step: Mapping[str, Any]) -> list[str]:
    """What a step's own fields say together (on the raw data, like the cross checks)."""
    queue, queues, target = step.get("queue"), step.get("queues"), step.get("target")
    out = []
    if queue is not None and queues is not None:
        out.append("give either `queue` or `queues`, not both")
    if queue is None and queues is None and target is None:
        out.append("a step needs `queue`, `queues` or `target`")
    if target == "preferred_agents" and not step.get("agents"):
        out.append("target preferred_agents needs `agents`: a CEL list of agent ids")
    if step.get("agents") and target != "preferred_agents":
        out.append("`agents` only goes with target: preferred_agents")
    if step.get("offer_timeout_seconds") is not None and target is None:
        out.append(
            "`offer_timeout_seconds` on a step is for the agents its `target` names; a queue's"
            " offers take the queue's own `offer_timeout_seconds`"
        )
    return out


def _catch_all(
    data: Mapping[str, Any], field: str, what: str
) -> list[tuple[tuple[int | str, ...], str]]:
    """The last segment and the last rule must match everything: the first match wins, and a
    contact that matched none would have no segment or no rule to route it by."""
    items = data.get(field)
    if not isinstance(items, list) or not items or not isinstance(items[-1], dict):
        return []
    when = items[-1].get("when", "true")
    if not isinstance(when, str) or when.strip() == "true":
        return []
    kind = field[:-1]
    return [
        (
            (field, len(items) - 1, "when"),
            f'the last {kind} must match every {what} (when: "true"): {field} are tried in '
            f"order, the first match wins, and a {what} no {kind} matches would have none",
        )
    ]


def _cross_checks(data: Mapping[str, Any]) -> list[tuple[tuple[int | str, ...], str]]:
    """Checks across items, on the raw data so they run even when the schema check fails."""
    problems: list[tuple[tuple[int | str, ...], str]] = []
    for field in ("segments", "queues", "rules", "suggestions"):
        seen: set[str] = set()
        for i, item in _items(data, field):
            name = item.get("name")
            if not isinstance(name, str):
                continue
            if name in seen:
                problems.append(((field, i, "name"), f"duplicate name {name!r}"))
            seen.add(name)
    for i, item in _items(data, "queues"):
        if item.get("strategy") == "most_skilled" and not item.get("skill"):
            message = "strategy most_skilled needs `skill`: the skill agents are ranked by"
            problems.append((("queues", i), message))
    problems += _catch_all(data, "segments", "customer")
    problems += _catch_all(data, "rules", "contact")
    known = {q.get("name") for _, q in _items(data, "queues")}
    for r, rule in _items(data, "rules"):
        steps = rule.get("steps")
        if not isinstance(steps, list):
            continue
        last = len(steps) - 1
        for s, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            problems += [(("rules", r, "steps", s), m) for m in _step_problems(step)]
            queue, queues = step.get("queue"), step.get("queues")
            where = "queue" if queue is not None else "queues"
            names = [queue] if queue is not None else queues if isinstance(queues, list) else []
            for name in names:
                if isinstance(name, str) and name not in known:
                    problems.append((("rules", r, "steps", s, where), f"unknown queue {name!r}"))
            timeout = step.get("timeout_seconds")
            if s < last and timeout is None:
                problems.append(
                    (("rules", r, "steps", s), "only the last step may omit timeout_seconds")
                )
            if s == last and timeout is not None:
                problems.append(
                    (("rules", r, "steps", s, "timeout_seconds"), "the last step cannot time out")
                )
            if s == last and queue is None and queues is None:
                problems.append(
                    (("rules", r, "steps", s), "the last step must name a queue (a fallback)")
                )
    return problems


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice (the default keeps
    the last and silently drops the rest: a second `rules:` would replace the first). Keys a
    merge (``<<: *anchor``) brings in may be given again: that is how a merge is overridden.

    Each mapping is checked once, as written: before a merge elsewhere flattens it (which adds
    the merged pairs to it), whichever comes first."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._checked: set[int] = set()

    def _check(self, node: yaml.MappingNode) -> None:
        if id(node) in self._checked:
            return
        self._checked.add(id(node))
        seen: list[Any] = []
        for key_node, _ in node.value:
            if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)  # (1 and 0x1, true and True: one key)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key_node.value!r} twice",
                    key_node.start_mark,
                )
            seen.append(key)

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        self._check(node)
        super().flatten_mapping(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self._check(node)
        return super().construct_mapping(node, deep=deep)


_MERGE = "tag:yaml.org,2002:merge"


def load_yaml(text: str, name: str = "<unicode string>") -> Any:
    """``yaml.safe_load``, except that a key given twice in one mapping is an error. ``name``
    (the file's) is what a syntax error's position names."""
    stream = io.StringIO(text)
    stream.name = name  # (the reader names the marks of a stream by it)
    return yaml.load(stream, Loader=_StrictLoader)  # a SafeLoader


def load_routing(source: Path | str | Mapping[str, Any], name: str | None = None) -> RoutingConfig:
    """Load and validate a routing config from a file path or a parsed mapping."""
    lines: dict[tuple[int | str, ...], int] = {}
    if isinstance(source, Mapping):
        data: Any = dict(source)
        file = name or "<inline>"
    else:
        path = Path(source)
        file = name or str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            message = (
                f"not UTF-8 text (byte {exc.start})"
                if isinstance(exc, UnicodeDecodeError)
                else str(exc)
            )
            raise ConfigInvalid(
                [ConfigProblem(file=file, line=None, path="", message=message)]
            ) from None
        try:
            data = load_yaml(text, file)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else None
            problem = ConfigProblem(file=file, line=line, path="", message=f"not valid YAML: {exc}")
            raise ConfigInvalid([problem]) from None
        lines = _lines(text)
    if not isinstance(data, dict):
        problem = ConfigProblem(file=file, line=1, path="", message="expected a mapping at the top")
        raise ConfigInvalid([problem])
    found: list[tuple[tuple[int | str, ...], str]] = []
    cfg: RoutingConfig | None = None
    try:
        cfg = RoutingConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = yaml_loc(err["loc"], data)
            message = err["msg"].removeprefix("Value error, ")
            # a union reports each member's complaint at the same place: say them together
            if found and found[-1][0] == loc:
                message = f"{found.pop()[1]}; {message}"
            found.append((loc, message))
    found += _cross_checks(data)
    if found or cfg is None:
        raise ConfigInvalid(
            [
                ConfigProblem(file=file, line=_line_for(lines, loc), path=yaml_path(loc), message=m)
                for loc, m in found
            ]
        )
    return cfg


def demo_config_path() -> Path:
    """The shipped demo config (the default of ``serve --config``)."""
    return Path(__file__).with_name("demo.yaml")
