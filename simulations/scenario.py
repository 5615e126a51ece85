"""Planning scenarios (api-v1 §7): the YAML schema, its loader, and customers per segment.

A scenario names a routing config (a path relative to the scenario file, or the config inline),
a horizon with a warm-up, arrival streams (a flat rate or an intraday profile, a customer mix by
segment, handle/patience/wrap-up distributions) and agent groups (skills, capacity, shifts,
offer acceptance delay). ``load_scenario`` validates all of it and the routing config together.

Segments are derived by the routing config's own CEL expressions, so a mix such as
``{gold: 0.2, standard: 0.8}`` needs a customer per segment whose fields land in it:
``customer_views`` tests candidate values against the engine and keeps the first that does, or
checks the value/churn_risk the scenario gives explicitly.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from config.routing import (
    CapacityChannel,
    Channel,
    ConfigInvalid,
    RoutingConfig,
    load_routing,
    load_yaml,
    yaml_loc,
    yaml_path,
)
from queues.memory import MemoryStore
from router.engine import Engine, cel_views
from simulations.distributions import Constant, Distribution, Empirical, coerce, load_empirical

Duration = Annotated[Distribution, BeforeValidator(coerce)]
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


# Bounds that keep one run within what this machine can hold (a run's contacts and agents
# live in memory): a year of simulated time, a million arrivals an hour per stream, 100,000
# agents per group; simulations.commands also bounds the contacts a replication expects.
MAX_HOURS = 24 * 366
MAX_PER_HOUR = 1_000_000
MAX_AGENTS = 100_000


class ScenarioInvalid(ValueError):
    """A scenario that does not validate; the message lists every problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Shift(_Model):
    """Hours from the start of the run; an agent works from ``start_hour`` to ``end_hour``."""

    # (a shift may run into the drain after the horizon: up to twice the longest duration)
    start_hour: float = Field(ge=0, le=2 * MAX_HOURS)
    end_hour: float = Field(le=2 * MAX_HOURS)

    @model_validator(mode="after")
    def _ordered(self) -> Shift:
        if self.end_hour <= self.start_hour:
            raise ValueError("end_hour must be after start_hour")
        return self


class Profile(_Model):
    """Arrival rates per interval, repeated if the run is longer than the profile."""

    # (a minute at least: the run steps through the profile's intervals one by one)
    interval_minutes: float = Field(ge=1, le=MAX_HOURS * 60)
    per_hour: list[Annotated[float, Field(ge=0, le=MAX_PER_HOUR)]] = Field(min_length=1)


class Customer(_Model):
    """One segment's share of a stream, optionally with the customer fields rules read."""

    share: float = Field(ge=0)
    value: float | None = None
    churn_risk: float | None = None
    products: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)


class Stream(_Model):
    name: str | None = None
    channel: Channel
    intent: str = ""
    language: str = ""
    #: the callers' ISO 3166 region, which live contacts take from a phone sender
    country: str = Field(default="", pattern=r"^([A-Z]{2})?$")
    attributes: dict[str, Any] = Field(default_factory=dict)
    per_hour: float | None = Field(default=None, ge=0, le=MAX_PER_HOUR)
    profile: Profile | None = None
    customers: dict[str, Customer] = Field(default_factory=dict)
    handle_time: Duration
    patience: Duration | None = None  # None: customers wait for ever
    wrap_up: Duration | None = None  # None: the answering queue's wrap_up_seconds

    @field_validator("customers", mode="before")
    @classmethod
    def _shares(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: {"share": v} if isinstance(v, int | float) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _one_rate(self) -> Stream:
        if (self.per_hour is None) == (self.profile is None):
            raise ValueError("give either `per_hour` or `profile`")
        if self.customers and sum(c.share for c in self.customers.values()) <= 0:
            raise ValueError("customer shares must add up to more than 0")
        return self

    def label(self, index: int) -> str:
        return self.name or f"{self.channel}-{self.intent or index}"


class AgentGroup(_Model):
    name: str | None = None
    count: int = Field(ge=0, le=MAX_AGENTS)
    # (the levels the agent API takes: 0..10)
    skills: dict[str, Annotated[float, Field(ge=0, le=10)]] = Field(default_factory=dict)
    capacity: dict[CapacityChannel, Annotated[int, Field(ge=0)]] = Field(min_length=1)
    attributes: dict[str, Any] = Field(default_factory=dict)
    shifts: list[Shift] = Field(default_factory=list)  # empty: the whole run
    accept_delay: Duration | None = None  # None: the scenario's

    @field_validator("shifts")
    @classmethod
    def _apart(cls, value: list[Shift]) -> list[Shift]:
        ordered = sorted(value, key=lambda shift: shift.start_hour)
        for before, after in itertools.pairwise(ordered):
            if after.start_hour < before.end_hour:
                raise ValueError(
                    f"shifts overlap: {before.start_hour:g}-{before.end_hour:g} h and"
                    f" {after.start_hour:g}-{after.end_hour:g} h (one agent works one shift"
                    " at a time: give the group one shift from the first start to the last end)"
                )
        return value

    def label(self, index: int) -> str:
        return group_label(self.name, index)


def group_label(name: str | None, index: int) -> str:
    """An agent group's name, or the one it is given by its place."""
    return name or f"group-{index + 1}"


class Scenario(_Model):
    name: str = ""
    description: str = ""
    routing: str | dict[str, Any]
    duration_hours: float = Field(gt=0, le=MAX_HOURS)
    warmup_hours: float = Field(default=0.0, ge=0)
    interval_minutes: int = 30
    #: after the horizon no one arrives; contacts still waiting are served for up to this long
    drain_hours: float = Field(default=8.0, ge=0, le=MAX_HOURS)
    accept_delay: Duration = Constant(dist="constant", seconds=0.0)
    #: an agent who lets an offer time out is `away` (api-v1 §3) for this long, then back
    missed_offer_away_seconds: float = Field(default=0.0, ge=0, le=MAX_HOURS * 3600)
    replications: int = Field(default=1, ge=1, le=1000)  # used by `staff --scenario`
    arrivals: list[Stream] = Field(min_length=1)
    agents: list[AgentGroup] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        problems = _consistency(self.model_dump(include=set(_CROSS_FIELDS)))
        if problems:
            raise ValueError("; ".join(problems))
        return self


_CROSS_FIELDS = ("interval_minutes", "duration_hours", "warmup_hours", "agents")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _consistency(data: Mapping[str, Any]) -> list[str]:
    """What no single field can check: the interval, the warm-up and the shifts against the
    duration, and the groups' names. ``Scenario._consistent`` runs it on a valid scenario; the
    loader runs it on the raw data when field errors kept that from running, so a file's
    problems are all listed at once (values of the wrong type are the field errors' business
    and are passed over here)."""
    out = []
    interval = data.get("interval_minutes", 30)
    if isinstance(interval, int) and interval not in (15, 30):
        out.append("interval_minutes must be 15 or 30")
    raw: Any = data.get("duration_hours")
    warmup: Any = data.get("warmup_hours", 0.0)
    duration = float(raw) if _number(raw) else None
    if duration is not None and _number(warmup) and warmup >= duration:
        out.append("warmup_hours must be shorter than duration_hours")
    groups = data.get("agents")
    if not isinstance(groups, list):
        return out
    names = []
    for i, group in enumerate(groups):
        if not isinstance(group, Mapping):
            continue
        name = group_label(group.get("name"), i)
        names.append(name)
        shifts = group.get("shifts")
        if not isinstance(shifts, list) or duration is None:
            continue
        for shift in shifts:
            start: Any = shift.get("start_hour") if isinstance(shift, Mapping) else None
            if _number(start) and start >= duration:
                out.append(
                    f"agent group {name!r}: the shift from {start:g} h starts after the run"
                    f" ({duration:g} h)"
                )
    if len(set(map(str, names))) != len(names):
        out.append("agent group names must be unique")
    return out


def _routing_problems(
    routing: Any, base: Path, where: str
) -> tuple[RoutingConfig | None, list[str]]:
    """The routing config, or its problems as lines of a scenario's report."""
    try:
        if isinstance(routing, str):
            return load_routing(base / routing), []
        if isinstance(routing, dict):
            return load_routing(routing, name=f"{where}: routing"), []
    except ConfigInvalid as exc:
        return None, _routing_lines(routing, exc)
    return None, []  # (not a path or a mapping: a field error says so)


def _routing_lines(routing: Any, exc: ConfigInvalid) -> list[str]:
    if isinstance(routing, str):  # its own file: file:line: path: message
        return [f"  routing: {p}" for p in exc.problems]
    return [f"  routing.{p.path}: {p.message}" for p in exc.problems]


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario with its routing config and empirical data read in."""

    spec: Scenario
    routing: RoutingConfig
    base: Path  # directory relative paths are resolved against
    source: str  # the file it came from, or "<inline>"

    @property
    def name(self) -> str:
        return self.spec.name or Path(self.source).stem


def load_scenario(
    source: Path | str | Mapping[str, Any], base: Path | None = None
) -> LoadedScenario:
    """Validate a scenario from a YAML file or a parsed mapping (paths relative to ``base``)."""
    if isinstance(source, Mapping):
        data: Any = dict(source)
        where, base = "<inline>", base or Path.cwd()
    else:
        path = Path(source)
        where, base = str(path), base or path.resolve().parent
        try:
            data = load_yaml(path.read_text(encoding="utf-8"), where)
        except UnicodeDecodeError as exc:
            raise ScenarioInvalid(f"{where}: not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:  # (the reason alone: "[Errno 2] ...: 'path'" repeats the path)
            raise ScenarioInvalid(f"{where}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ScenarioInvalid(f"{where}: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioInvalid(f"{where}: expected a mapping at the top")
    try:
        spec = Scenario.model_validate(data)
    except ValidationError as exc:
        # each place as the file spells it (``arrivals[0].handle_time.mean_seconds``), as the
        # routing config's problems are, not pydantic's own (``arrivals.0.handle_time.exponential``)
        lines = [
            f"  {yaml_path(yaml_loc(e['loc'], data)) or '(top)'}: "
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        ]
        # what a failing field keeps pydantic from checking, and the routing config's own
        # problems: every problem of the file at once
        lines += [f"  (top): {m}" for m in _consistency(data) if all(m not in x for x in lines)]
        lines += [f"  {m}" for m in _stream_consistency(data) if f"  {m}" not in lines]
        routing, problems = _routing_problems(data.get("routing"), base, where)
        lines += problems
        # and what the parts that are valid on their own show against the routing config
        lines += [f"  {m}" for m in _parts_problems(data, routing, base)]
        raise ScenarioInvalid(f"invalid scenario {where}:\n" + "\n".join(lines)) from None
    try:
        if isinstance(spec.routing, str):
            routing = load_routing(base / spec.routing)
        else:
            routing = load_routing(spec.routing, name=f"{where}: routing")
    except ConfigInvalid as exc:  # (a missing file too): named as the scenario's `routing`
        lines = _routing_lines(spec.routing, exc)
        raise ScenarioInvalid(f"invalid scenario {where}:\n" + "\n".join(lines)) from None
    # the segments, the empirical files and the customers each segment is given, each stream's
    # and group's: every problem at once
    spec, problems = _read_empirical(spec, base)
    streams = list(enumerate(spec.arrivals))
    mixes = [(i, stream.customers) for i, stream in streams]
    problems = _unknown_segments(mixes, routing) + problems + _landing(streams, routing)
    if len(problems) == 1:
        raise ScenarioInvalid(f"{where}: {problems[0]}")
    if problems:
        listed = "\n".join(f"  {p}" for p in problems)
        raise ScenarioInvalid(f"invalid scenario {where}:\n{listed}")
    return LoadedScenario(spec, routing, base, where)


def _stream_consistency(data: Mapping[str, Any]) -> list[str]:
    """What a stream's own checks across its fields say, which pydantic runs only once every
    field of the stream is valid: from the raw data, so they show beside the field errors."""
    out = []
    for i, stream in enumerate(_mappings(data, "arrivals")):
        if not stream:
            continue
        if (stream.get("per_hour") is None) == (stream.get("profile") is None):
            out.append(f"arrivals[{i}]: give either `per_hour` or `profile`")
        mix = stream.get("customers")
        if isinstance(mix, Mapping) and mix:
            shares: list[Any] = [
                v.get("share") if isinstance(v, Mapping) else v for v in mix.values()
            ]
            if all(_number(v) for v in shares) and sum(shares) <= 0:
                out.append(f"arrivals[{i}]: customer shares must add up to more than 0")
    return out


def _duration(raw: Any) -> Distribution | None:
    """``raw`` as a distribution, or None if it is not one (its field error says why)."""
    try:
        return TypeAdapter(Duration).validate_python(raw)
    except ValidationError:
        return None


def _mappings(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """The items of a list field, each item that is no mapping as an empty one (so that places
    stay right; the field errors say what is wrong with it)."""
    items = data.get(key)
    if not isinstance(items, list):
        return []
    return [item if isinstance(item, Mapping) else {} for item in items]


def _parts_problems(
    data: Mapping[str, Any], routing: RoutingConfig | None, base: Path
) -> list[str]:
    """For a scenario with field errors, what its parts show against the routing config and
    the files they name, each part checked on its own: the segments each stream names, the
    empirical files, and the customers of each stream valid on its own. These then show with
    the field errors rather than after they are fixed."""
    raw_streams, raw_groups = _mappings(data, "arrivals"), _mappings(data, "agents")
    segments: list[str] = []
    if routing is not None:  # (else its problems are listed, and segments cannot be checked)
        mixes = [(i, stream.get("customers")) for i, stream in enumerate(raw_streams)]
        segments = _unknown_segments([(i, m) for i, m in mixes if isinstance(m, Mapping)], routing)
    files: list[str] = []
    for i, stream in enumerate(raw_streams):
        for name in ("handle_time", "patience", "wrap_up"):
            if stream.get(name) is not None:
                _read(_duration(stream[name]), f"arrivals[{i}].{name}", base, files)
    for i, group in enumerate(raw_groups):
        if group.get("accept_delay") is not None:
            _read(_duration(group["accept_delay"]), f"agents[{i}].accept_delay", base, files)
    if data.get("accept_delay") is not None:
        _read(_duration(data["accept_delay"]), "accept_delay", base, files)
    landing: list[str] = []
    if routing is not None:
        valid = []
        for i, stream in enumerate(raw_streams):
            try:
                valid.append((i, Stream.model_validate(stream)))
            except ValidationError:
                continue  # (its field errors are listed)
        landing = _landing(valid, routing)
    return segments + files + landing


def _unknown_segments(
    mixes: Sequence[tuple[int, Mapping[str, Any]]], routing: RoutingConfig
) -> list[str]:
    """Each stream's customer segments (its place, its mix) that the routing config lacks."""
    known = [s.name for s in routing.segments]
    return [
        f"arrivals[{i}]: unknown segment {name!r} (the routing config has {', '.join(known)})"
        for i, mix in mixes
        for name in mix
        if name not in known
    ]


def _landing(streams: list[tuple[int, Stream]], routing: RoutingConfig) -> list[str]:
    """Each stream's segments (those the config defines) for which no customer, or not the
    one given, lands in that segment."""
    engine = Engine(routing, MemoryStore())
    known = {s.name for s in routing.segments}
    problems = []
    for i, stream in streams:
        mix = {k: v for k, v in stream.customers.items() if k in known}
        if mix:
            only_known = stream.model_copy(update={"customers": mix})
            problems += [f"arrivals[{i}]: {p}" for p in _views(engine, only_known)[1]]
    return problems


def _read(
    dist: Distribution | None, where: str, base: Path, problems: list[str]
) -> Distribution | None:
    """An empirical distribution with its file read in (anything else as it is); a line in
    ``problems`` if the file cannot be read."""
    if not isinstance(dist, Empirical):
        return dist
    try:
        return load_empirical(dist, base)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return dist


def _read_empirical(spec: Scenario, base: Path) -> tuple[Scenario, list[str]]:
    """The scenario with its empirical distributions' files read in, and a line for each one
    that could not be."""
    problems: list[str] = []

    def read(dist: Distribution | None, where: str) -> Distribution | None:
        return _read(dist, where, base, problems)

    streams = [
        s.model_copy(
            update={
                "handle_time": read(s.handle_time, f"arrivals[{i}].handle_time"),
                "patience": read(s.patience, f"arrivals[{i}].patience"),
                "wrap_up": read(s.wrap_up, f"arrivals[{i}].wrap_up"),
            }
        )
        for i, s in enumerate(spec.arrivals)
    ]
    groups = [
        g.model_copy(update={"accept_delay": read(g.accept_delay, f"agents[{i}].accept_delay")})
        for i, g in enumerate(spec.agents)
    ]
    accept_delay = read(spec.accept_delay, "accept_delay")
    update = {"arrivals": streams, "agents": groups, "accept_delay": accept_delay}
    return spec.model_copy(update=update), problems


# ------------------------------------------------------------------------- customers


@dataclass(frozen=True)
class CustomerView:
    """A customer of one segment, as the CEL expressions see them, and its share of a stream."""

    segment: str
    share: float
    contact: dict[str, Any]
    customer: dict[str, Any]


def contact_fields(stream: Stream) -> dict[str, Any]:
    return {
        "channel": stream.channel,
        "intent": stream.intent,
        "language": stream.language,
        "country": stream.country,
        "attributes": dict(stream.attributes),
    }


def customer_views(engine: Engine, stream: Stream, where: str) -> list[CustomerView]:
    """One customer view per segment of the stream's mix, each checked against the engine
    (``load_scenario`` has checked them all and listed their problems)."""
    views, problems = _views(engine, stream)
    if problems:
        raise ScenarioInvalid("\n".join(f"{where}: {p}" for p in problems))
    return views


def _views(engine: Engine, stream: Stream) -> tuple[list[CustomerView], list[str]]:
    """The customer view of each segment of the stream's mix, and a line for each segment that
    no customer (or not the one given) lands in."""
    mix = stream.customers or {"": Customer(share=1.0)}
    total = sum(c.share for c in mix.values())
    out: list[CustomerView] = []
    problems: list[str] = []
    for segment, spec in mix.items():  # (each known: load_scenario checked them all)
        contact = contact_fields(stream)
        found = _find_customer(engine, contact, spec, segment)
        given = spec.model_dump(exclude={"share"}, exclude_defaults=True)
        if found is None and given:
            # the planner's own customer: say where it lands instead (the first one tried, with
            # churn 0 unless given) rather than ask for the fields they gave
            value, churn = _candidates(engine, spec)[0]
            cview, uview = cel_views(contact, _customer(spec, value, churn))
            lands = engine.decide(cview, uview, 0).segment
            fields = ", ".join(f"{k} {v!r}" for k, v in given.items())
            problems.append(
                f"the customer given for segment {segment!r} ({fields}) lands in segment {lands!r}"
            )
            continue
        if found is None:
            problems.append(
                f"no customer value/churn_risk lands in segment {segment!r}; "
                "give `value`, `churn_risk`, `products` or `attributes` for it explicitly"
            )
            continue
        cview, uview = found
        real = engine.decide(cview, uview, 0).segment
        out.append(CustomerView(real, spec.share / total, cview, uview))
    return out, problems


def _find_customer(
    engine: Engine, contact: dict[str, Any], spec: Customer, segment: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    for value, churn in _candidates(engine, spec):
        cview, uview = cel_views(contact, _customer(spec, value, churn))
        if not segment or engine.decide(cview, uview, 0).segment == segment:
            return cview, uview
    return None


def _customer(spec: Customer, value: float, churn: float) -> dict[str, Any]:
    return {
        "value": value,
        "churn_risk": churn,
        "products": list(spec.products),
        "attributes": dict(spec.attributes),
    }


def _candidates(engine: Engine, spec: Customer) -> list[tuple[float, float]]:
    # The numbers the segment expressions compare against, and one either side of each, are
    # the only places a segment boundary can be; churn 0 first, so no churn rule fires unasked.
    literals: set[float] = {0.0}
    for seg in engine.config.segments:
        for text in _NUMBER.findall(seg.when):
            n = float(text)
            literals.update({n, n + 1.0, max(0.0, n - 1.0), n * 2.0})
    values = [spec.value] if spec.value is not None else sorted(literals)
    churns = (
        [spec.churn_risk]
        if spec.churn_risk is not None
        else [0.0, *sorted({v for v in literals if 0.0 < v <= 1.0} | {0.5, 1.0})]
    )
    return [(v, c) for c in churns for v in values]
