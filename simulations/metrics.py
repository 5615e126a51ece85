"""From simulated runs to the figures of api-v1 §7, with Student-t confidence half-widths.

``summarise`` turns one replication into ``overall`` and ``by_queue``/``by_segment``/
``by_channel``/``by_interval`` slices; ``combine`` averages replications and adds 95 %
half-widths. Definitions (also in docs/planning.md):

* Contacts count in the slice of their arrival (warm-up excluded) and, for queues, of the queue
  that answered them or that they left from.
* ``service_level`` = answered within the contact's threshold / (answered + abandoned +
  unresolved): abandoned contacts are never answered in time (api-v1 §7).
* ``p_wait`` is the share of contacts not answered at once (they waited, or left).
* ``asa_seconds`` is the mean wait of answered contacts, ``mean_wait_seconds`` over everyone
  who left the queue (abandoners included), as in Erlang A.
* ``occupancy`` is time with a contact in handle or wrap-up over time on shift in the window,
  for the agents of the slice (a queue's members, a channel's capable agents, everyone per
  interval). A segment owns no agents: its figure is the overall busy time, split by the
  handling time of its contacts, over all staffed time (the segments add up to the overall).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from simulations.model import (
    ABANDONED,
    ANSWERED,
    ARRIVAL,
    END,
    OUTCOME,
    QUEUE,
    SEGMENT,
    START,
    STREAM,
    TARGET,
    THRESHOLD,
    WAIT,
    Model,
    Run,
)

Slice = dict[str, Any]
Summary = dict[str, Any]
RATIOS = (
    "service_level",
    "p_wait",
    "asa_seconds",
    "mean_wait_seconds",
    "abandon_rate",
    "occupancy",
)
COUNTS = ("offered", "answered", "abandoned", "unresolved")
# Histogram edges (s) for the wait distribution by segment in reports.
WAIT_EDGES = (0, 1, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 3600, math.inf)


def _slice(c: np.ndarray, occupancy: float | None) -> Slice:
    n = len(c)
    outcome, wait = c[:, OUTCOME], c[:, WAIT]
    answered, abandoned = outcome == ANSWERED, outcome == ABANDONED
    n_ans, n_ab = int(answered.sum()), int(abandoned.sum())
    within = int((answered & (wait <= c[:, THRESHOLD])).sum())
    left = answered | abandoned
    return {
        "offered": n,
        "answered": n_ans,
        "abandoned": n_ab,
        "unresolved": n - n_ans - n_ab,
        "service_level": within / n if n else None,
        "p_wait": int((wait[left] > 0).sum() + (n - n_ans - n_ab)) / n if n else None,
        "asa_seconds": float(wait[answered].mean()) / 1000 if n_ans else None,
        "mean_wait_seconds": float(wait[left].mean()) / 1000 if left.any() else None,
        "abandon_rate": n_ab / n if n else None,
        "occupancy": occupancy,
        "target": _mean_target(c[:, TARGET]) if n else None,
    }


def _mean_target(targets: Sequence[float] | np.ndarray) -> float | None:
    """The mean of the contacts' targets, exactly the target when they share one: a float mean
    of three 0.8s is 0.8000000000000002, and a service level of exactly 0.8 would miss it."""
    values = np.asarray(targets, dtype=float)
    if values.size == 0:
        return None
    first = float(values[0])
    return first if bool((values == first).all()) else float(values.mean())


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _area(trace: tuple[np.ndarray, np.ndarray], points: np.ndarray) -> np.ndarray:
    """The integral of a step function (level from each time to the next) up to each point."""
    times, levels = trace
    prefix = np.concatenate(([0.0], np.cumsum(levels[:-1] * np.diff(times))))
    i = np.searchsorted(times, points, side="right") - 1
    i = np.clip(i, 0, len(times) - 1)
    return np.where(points > times[0], prefix[i] + levels[i] * (points - times[i]), 0.0)


def summarise(model: Model, run: Run) -> Summary:
    """One replication's figures: overall and per queue, segment, channel and interval."""
    lo, hi, step = model.warmup_ms, model.horizon_ms, model.interval_ms
    every = run.contacts
    c = every[(every[:, ARRIVAL] >= lo) & (every[:, ARRIVAL] < hi)]
    busy, staffed = run.agent_busy_ms, run.agent_staffed_ms
    total_staffed = float(staffed.sum())

    def pool(groups: list[int]) -> float | None:
        mask = np.isin(run.agent_group, groups)
        return _ratio(float(busy[mask].sum()), float(staffed[mask].sum()))

    channel_of = np.array([model.channels.index(s.channel) for s in model.streams])
    stream_channel = channel_of[c[:, STREAM].astype(np.int64)] if len(c) else np.zeros(0)
    by_queue = {}
    for qi, name in enumerate(model.queues):
        members = [g for g, grp in enumerate(model.groups) if name in _queues(grp.template)]
        by_queue[name] = _slice(c[c[:, QUEUE] == qi], pool(members))
    end = np.where(every[:, END] >= 0, every[:, END], run.end_ms)
    worked = np.clip(np.minimum(end, hi) - np.maximum(every[:, START], lo), 0, None)
    worked[every[:, START] < 0] = 0
    # A segment's occupancy is its part of the overall busy time, split by the handling time
    # its contacts took: an agent with three chats at once is busy once, not three times.
    total_busy, total_worked = float(busy.sum()), float(worked.sum())
    by_segment = {}
    for si, name in enumerate(model.segments):
        part = float(worked[every[:, SEGMENT] == si].sum()) / total_worked if total_worked else 0.0
        by_segment[name] = _slice(c[c[:, SEGMENT] == si], _ratio(total_busy * part, total_staffed))
    by_channel = {}
    for ci, name in enumerate(model.channels):
        cap = "voice" if name == "callback" else name
        able = [g for g, grp in enumerate(model.groups) if grp.template.capacity.get(cap, 0) > 0]
        by_channel[name] = _slice(c[stream_channel == ci], pool(able))
    edges = np.arange((lo // step) * step, hi + step, step, dtype=np.float64)
    edges = np.clip(edges, lo, hi)
    edges = np.unique(edges)
    busy_area = np.diff(_area(run.traces["busy"], edges))
    staffed_area = np.diff(_area(run.traces["staffed"], edges))
    waiting_area = np.diff(_area(run.traces["waiting"], edges))
    by_interval = []
    for b in range(len(edges) - 1):
        start, stop = edges[b], edges[b + 1]
        entry = _slice(
            c[(c[:, ARRIVAL] >= start) & (c[:, ARRIVAL] < stop)],
            _ratio(float(busy_area[b]), float(staffed_area[b])),
        )
        entry["start_seconds"] = start / 1000
        entry["queue_length"] = float(waiting_area[b]) / (stop - start)
        entry["agents_staffed"] = float(staffed_area[b]) / (stop - start)
        by_interval.append(entry)
    waits: dict[str, list[int]] = {}
    ms_edges = np.array(WAIT_EDGES) * 1000
    for si, name in enumerate(model.segments):
        picked = c[(c[:, SEGMENT] == si) & (c[:, OUTCOME] == ANSWERED), WAIT]
        waits[name] = np.histogram(picked, ms_edges)[0].tolist()
    return {
        "overall": _slice(c, _ratio(total_busy, total_staffed)),
        "by_queue": by_queue,
        "by_segment": by_segment,
        "by_channel": by_channel,
        "by_interval": by_interval,
        "wait_histogram": waits,
        "contacts": len(every),
        "events": run.events,
        "wall_seconds": run.wall_seconds,
    }


def _queues(spec: Any) -> set[str]:
    return {m[0] for m in spec.memberships}


# ---------------------------------------------------------------------- replications


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile, by bisection on the exact CDF (no scipy dependency)."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError("need 0.5 < p < 1 and df >= 1")
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def _t_cdf(t: float, df: int) -> float:
    x = df / (df + t * t)
    return 1.0 - 0.5 * _betainc(df / 2, 0.5, x)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b), continued fraction (Lentz), for t only."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    log_front += a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h / a


def half_width(values: Sequence[float], level: float = 0.95) -> float | None:
    """Half-width of the Student-t confidence interval of the mean; None below 2 values."""
    if len(values) < 2:
        return None
    q = t_quantile(0.5 + level / 2, len(values) - 1)
    return q * statistics.stdev(values) / math.sqrt(len(values))


def combine_slices(slices: Sequence[Slice]) -> Slice:
    """Mean of each figure over replications, and its half-width when there are several."""
    out: Slice = {}
    widths: dict[str, float | None] = {}
    for key in slices[0]:
        values = [s[key] for s in slices if s.get(key) is not None]
        if key == "target":
            out[key] = _mean_target(values)
        else:
            out[key] = statistics.fmean(values) if values else None
        if key in RATIOS or key in COUNTS:
            widths[key] = half_width(values)
    if len(slices) > 1:
        out["half_widths"] = widths
    return out


def combine(summaries: Sequence[Summary]) -> dict[str, Any]:
    """The figures of several independent replications of one scenario."""
    first = summaries[0]
    result: dict[str, Any] = {"overall": combine_slices([s["overall"] for s in summaries])}
    for group in ("by_queue", "by_segment", "by_channel"):
        result[group] = {
            name: combine_slices([s[group][name] for s in summaries])
            for name in first[group]
            if any(s[group][name]["offered"] for s in summaries)
        }
    result["by_interval"] = [
        combine_slices([s["by_interval"][b] for s in summaries])
        for b in range(len(first["by_interval"]))
    ]
    result["wait_histogram"] = {
        "edges_seconds": [e if math.isfinite(e) else None for e in WAIT_EDGES],
        "answered": {
            name: [
                statistics.fmean(col)
                for col in zip(*(s["wait_histogram"][name] for s in summaries), strict=True)
            ]
            for name in first["wait_histogram"]
            if any(sum(s["wait_histogram"][name]) for s in summaries)
        },
    }
    contacts = sum(s["contacts"] for s in summaries)
    busy = sum(s["wall_seconds"] for s in summaries)
    result["run"] = {
        "replications": len(summaries),
        "contacts": contacts,
        "events": sum(s["events"] for s in summaries),
        # the replications' own times added up (they may run side by side: the caller puts
        # the run's elapsed time in wall_seconds)
        "replication_seconds": busy,
        "wall_seconds": busy,
        "contacts_per_second": contacts / busy if busy > 0 else None,
    }
    return result
