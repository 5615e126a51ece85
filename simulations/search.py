"""Staffing by simulation: the smallest agent counts per group that meet every queue's target.

Service level rises with agents but not in closed form once skills overlap, segments carry
priority and shifts vary, so the search simulates. Every trial uses the same seed (common
random numbers: the same arrivals, handle times and patience), so two trials differ only by
the staffing, and a comparison is not swamped by sampling noise.

1. Scale all groups together from the scenario's counts (doubling up, then bisecting the
   factor) to the smallest common factor at which every queue meets its target.
2. Trim each group in turn, largest first, by bisection while every target still holds; repeat
   until a pass removes no one. The result is minimal in the sense that no single group can
   lose an agent without some queue missing its target.

A queue's target is the mean target of the contacts it served (each contact's comes from its
segment, queue or channel in the routing config), compared with the mean service level over the
replications.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulations.model import Model
from simulations.replications import Runner

_MAX_FACTOR = 64.0
_BISECT_STEPS = 8
_MAX_PASSES = 3


@dataclass
class Trial:
    counts: tuple[int, ...]
    meets: bool
    misses: dict[str, tuple[float, float]]  # queue -> (service level, target) where missed
    result: dict[str, Any]


@dataclass
class SearchResult:
    groups: list[str]
    initial: tuple[int, ...]
    best: Trial | None
    trials: list[Trial] = field(default_factory=list)


def _evaluate(
    runner: Runner,
    counts: tuple[int, ...],
    seed: int,
    replications: int,
    cache: dict[tuple[int, ...], Trial],
) -> Trial:
    if counts in cache:
        return cache[counts]
    result = runner.simulate(seed, replications, counts=counts)
    misses = {}
    for name, q in result["by_queue"].items():
        sl, target = q["service_level"], q["target"]
        if target is not None and (sl is None or sl < target):
            misses[name] = (sl if sl is not None else 0.0, target)
    trial = cache[counts] = Trial(counts, not misses, misses, result)
    return trial


def search(
    model: Model,
    seed: int,
    replications: int = 1,
    on_trial: Callable[[Trial], None] | None = None,
    workers: int = 1,
) -> SearchResult:
    """Search agent counts per group; ``best`` is None if even 64x the scenario's fails."""
    with Runner(model, min(workers, replications)) as runner:
        return _search(runner, seed, replications, on_trial)


def _search(
    runner: Runner,
    seed: int,
    replications: int,
    on_trial: Callable[[Trial], None] | None,
) -> SearchResult:
    model = runner.model
    cache: dict[tuple[int, ...], Trial] = {}
    base = tuple(max(g.count, 1) for g in model.groups)
    out = SearchResult([g.label for g in model.groups], tuple(g.count for g in model.groups), None)

    def test(counts: tuple[int, ...]) -> bool:
        known = counts in cache
        trial = _evaluate(runner, counts, seed, replications, cache)
        if not known:
            out.trials.append(trial)
            if on_trial is not None:
                on_trial(trial)
        return trial.meets

    def scaled(f: float) -> tuple[int, ...]:
        return tuple(max(1, math.ceil(n * f)) for n in base)

    low, high = 0.0, 1.0
    while not test(scaled(high)):
        low, high = high, high * 2
        if high > _MAX_FACTOR:
            return out
    for _ in range(_BISECT_STEPS):
        mid = (low + high) / 2
        if scaled(mid) in (scaled(low), scaled(high)):
            break
        low, high = (low, mid) if test(scaled(mid)) else (mid, high)
    best = list(scaled(high))
    for _ in range(_MAX_PASSES):
        changed = False
        for g in sorted(range(len(best)), key=lambda i: -best[i]):
            # Invariant: best[g] meets the targets; lo does not (or is -1: zero is allowed).
            lo, hi = -1, best[g]
            while hi - lo > 1:
                mid = (lo + hi) // 2
                trial = [*best[:g], mid, *best[g + 1 :]]
                lo, hi = (lo, mid) if test(tuple(trial)) else (mid, hi)
            if hi != best[g]:
                best[g], changed = hi, True
        if not changed:
            break
    out.best = cache[tuple(best)]
    return out
