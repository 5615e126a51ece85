"""A scenario compiled for simulation: streams, agent groups and the engine, built once.

``Model.build`` validates the customer mix against the routing config (``customer_views``),
computes each agent group's queue memberships with ``Engine.agent_spec``, and converts hours to
the integer milliseconds the store works in. Replications and staffing trials share one model;
``with_counts`` swaps the agent counts without rebuilding anything.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from queues.contract import AgentSpec
from queues.memory import MemoryStore
from router.engine import Engine
from simulations.distributions import Distribution
from simulations.scenario import CustomerView, LoadedScenario, customer_views

HOUR_MS = 3_600_000
# Per-contact record fields (a list per contact: cheaper than an object, converted at the end).
ARRIVAL, STREAM, SEGMENT, QUEUE, OUTCOME, WAIT, THRESHOLD, TARGET, AGENT, START, END = range(11)
WAITING, ANSWERED, ABANDONED = 0, 1, 2


@dataclass
class StreamModel:
    label: str
    channel: str
    views: list[CustomerView]
    cumulative: list[float]
    rates_per_ms: list[float]
    interval_ms: float
    handle: Distribution
    patience: Distribution | None
    wrap_up: Distribution | None


@dataclass
class GroupModel:
    label: str
    count: int
    template: AgentSpec
    doc: dict[str, Any]
    shifts: list[tuple[int, int]]
    accept_delay: Distribution


@dataclass
class Model:
    """A scenario compiled once against its routing config; replications share it."""

    scenario: LoadedScenario
    engine: Engine
    streams: list[StreamModel]
    groups: list[GroupModel]
    queues: list[str]
    segments: list[str]
    channels: list[str]
    queue_wrap_ms: list[int]
    horizon_ms: int
    warmup_ms: int
    interval_ms: int
    drain_ms: int
    away_ms: int

    @classmethod
    def build(cls, loaded: LoadedScenario) -> Model:
        spec, routing = loaded.spec, loaded.routing
        engine = Engine(routing, MemoryStore())
        horizon = round(spec.duration_hours * HOUR_MS)
        streams = []
        for i, s in enumerate(spec.arrivals):
            views = customer_views(engine, s, f"{loaded.source}: arrivals[{i}]")
            cumulative = list(itertools.accumulate(v.share for v in views))
            if s.profile is not None:
                rates, interval = s.profile.per_hour, s.profile.interval_minutes * 60_000.0
            else:
                rates, interval = [s.per_hour or 0.0], float(horizon)
            per_ms = [r / HOUR_MS for r in rates]
            streams.append(
                StreamModel(
                    s.label(i),
                    s.channel,
                    views,
                    cumulative,
                    per_ms,
                    interval,
                    s.handle_time,
                    s.patience,
                    s.wrap_up,
                )
            )
        groups = []
        for i, g in enumerate(spec.agents):
            doc = {"name": g.label(i), "skills": g.skills, "capacity": dict(g.capacity)}
            doc["attributes"] = g.attributes
            shifts = [
                (round(s.start_hour * HOUR_MS), round(s.end_hour * HOUR_MS)) for s in g.shifts
            ]
            delay = g.accept_delay or spec.accept_delay
            template = engine.agent_spec("template", doc)
            groups.append(
                GroupModel(g.label(i), g.count, template, doc, shifts or [(0, horizon)], delay)
            )
        return cls(
            scenario=loaded,
            engine=engine,
            streams=streams,
            groups=groups,
            queues=[q.name for q in routing.queues],
            segments=[s.name for s in routing.segments],
            channels=sorted({s.channel for s in streams}),
            queue_wrap_ms=[round(q.wrap_up_seconds * 1000) for q in routing.queues],
            horizon_ms=horizon,
            warmup_ms=round(spec.warmup_hours * HOUR_MS),
            interval_ms=spec.interval_minutes * 60_000,
            drain_ms=round(spec.drain_hours * HOUR_MS),
            away_ms=round(spec.missed_offer_away_seconds * 1000),
        )

    @property
    def expected_contacts(self) -> float:
        """Mean number of arrivals in one replication (the sum of rate x time over streams)."""
        total = 0.0
        for s in self.streams:
            t, k = 0.0, 0
            while t < self.horizon_ms:
                span = min(s.interval_ms, self.horizon_ms - t)
                total += s.rates_per_ms[k % len(s.rates_per_ms)] * span
                t, k = t + s.interval_ms, k + 1
        return total

    def with_counts(self, counts: Sequence[int]) -> Model:
        """The same model with other agent counts per group (for the staffing search)."""
        groups = [replace(g, count=int(n)) for g, n in zip(self.groups, counts, strict=True)]
        return replace(self, groups=groups)


@dataclass
class Run:
    """What one replication observed, as arrays; ``metrics.summarise`` turns it into figures."""

    contacts: np.ndarray  # (n, 11) float64, columns as the record fields above
    agent_group: np.ndarray  # group index per agent
    agent_busy_ms: np.ndarray  # time with work in [warmup, horizon), per agent
    agent_staffed_ms: np.ndarray  # time on shift in [warmup, horizon), per agent
    traces: dict[str, tuple[np.ndarray, np.ndarray]]  # waiting/busy/staffed: (times, levels)
    end_ms: int
    events: int
    wall_seconds: float = 0.0
