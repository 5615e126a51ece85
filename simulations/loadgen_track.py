"""What the load test saw: latency histograms, counters, and the loss and double-offer checks.

Latencies are recorded in microseconds into HDR histograms (3 significant digits, up to 60 s),
from ``clock`` (``time.perf_counter``), never the event loop's clock.
Create and offer latencies run from each arrival's *scheduled* time; an offer may reach an
agent's socket before the 201 reaches the gateway, so offers for contact ids not yet known are
held until the 201 names them.

A contact is "double offered" when an offer for it arrives while another of its reservations
is still live (neither rescinded nor completed), when one reservation id is offered to two
agents, or when two agents' accepts of it both succeed. Rescinds and offers travel on different
sockets, so a rescind of the older reservation that lands within ``GRACE_SECONDS`` of the newer
offer is not counted.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

GRACE_SECONDS = 0.5
_MAX_US = 60_000_000
#: every timestamp of the load test: uvloop's ``loop.time()`` has millisecond steps, too coarse
clock = time.perf_counter


class Latency:
    """One HDR histogram of seconds, reported in milliseconds."""

    def __init__(self) -> None:
        self.hist = HdrHistogram(1, _MAX_US, 3)

    def record(self, seconds: float) -> None:
        self.hist.record_value(min(_MAX_US, max(1, round(seconds * 1e6))))

    @property
    def count(self) -> int:
        return int(self.hist.get_total_count())

    def percentile_ms(self, q: float) -> float:
        return round(float(self.hist.get_value_at_percentile(q)) / 1000.0, 3)

    def summary(self) -> dict[str, float | None]:
        """``{p50, p90, p99, max}`` in ms; nulls when nothing was recorded."""
        if self.count == 0:
            return {"p50": None, "p90": None, "p99": None, "max": None}
        return {
            "p50": self.percentile_ms(50),
            "p90": self.percentile_ms(90),
            "p99": self.percentile_ms(99),
            "max": round(float(self.hist.get_max_value()) / 1000.0, 3),
        }


@dataclass
class Tracker:
    create: Latency = field(default_factory=Latency)
    offer: Latency = field(default_factory=Latency)
    accept: Latency = field(default_factory=Latency)
    sent: int = 0
    replays: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    #: created contact id -> scheduled arrival time (loop clock)
    scheduled: dict[str, float] = field(default_factory=dict)
    #: contact id -> first offer time, for offers that beat their 201
    early: dict[str, float] = field(default_factory=dict)
    offered: set[str] = field(default_factory=set)
    active: dict[str, str] = field(default_factory=dict)  # contact -> live reservation
    reservations: dict[str, tuple[str, str]] = field(default_factory=dict)  # rid -> (cid, agent)
    accepted: dict[str, str] = field(default_factory=dict)  # contact -> accepted reservation
    rescinded_at: dict[str, float] = field(default_factory=dict)
    conflicts: list[tuple[str, str, float]] = field(default_factory=list)  # (cid, older rid, t)
    split_reservations: int = 0
    double_accepts: int = 0
    accept_failures: Counter[str] = field(default_factory=Counter)
    finished: set[str] = field(default_factory=set)  # contacts our agents completed
    last_event: float = 0.0

    # ----------------------------------------------------------------------- gateway side

    def created(self, contact_id: str, scheduled: float, now: float) -> None:
        self.create.record(now - scheduled)
        self.scheduled[contact_id] = scheduled
        seen = self.early.pop(contact_id, None)
        if seen is not None:
            self.offer.record(seen - scheduled)
        self.last_event = max(self.last_event, now)

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    # ------------------------------------------------------------------------- agent side

    def offered_to(self, contact_id: str, reservation_id: str, agent_id: str, now: float) -> None:
        known = self.reservations.get(reservation_id)
        if known is not None and known[1] != agent_id:
            self.split_reservations += 1
        self.reservations[reservation_id] = (contact_id, agent_id)
        live = self.active.get(contact_id)
        if live is not None and live != reservation_id:
            self.conflicts.append((contact_id, live, now))
        self.active[contact_id] = reservation_id
        self.last_event = max(self.last_event, now)
        if contact_id in self.offered:
            return
        self.offered.add(contact_id)
        at = self.scheduled.get(contact_id)
        if at is None:
            self.early[contact_id] = now
        else:
            self.offer.record(now - at)

    def rescinded(self, reservation_id: str, now: float) -> None:
        self.rescinded_at[reservation_id] = now
        known = self.reservations.get(reservation_id)
        if known is not None and self.active.get(known[0]) == reservation_id:
            del self.active[known[0]]

    def accept_done(self, reservation_id: str, seconds: float) -> None:
        self.accept.record(seconds)
        known = self.reservations.get(reservation_id)
        if known is None:
            return
        before = self.accepted.setdefault(known[0], reservation_id)
        if before != reservation_id:
            self.double_accepts += 1

    def accept_failed(self, title: str) -> None:
        self.accept_failures[title] += 1

    def completed_one(self, contact_id: str) -> None:
        self.finished.add(contact_id)
        self.active.pop(contact_id, None)

    # ---------------------------------------------------------------------------- results

    @property
    def completed(self) -> int:
        return len(self.finished)

    def held(self) -> list[str]:
        """Contacts our agents accepted and have not completed."""
        return [cid for cid in self.accepted if cid not in self.finished]

    def not_ours(self) -> list[str]:
        """Contacts this run created that none of our agents accepted: waiting, offered, with
        an agent we hold no socket for, or gone."""
        return [cid for cid in self.scheduled if cid not in self.accepted]

    @property
    def routed(self) -> int:
        """Created contacts that reached some agent's socket as an offer."""
        return sum(1 for cid in self.scheduled if cid in self.offered)

    def unrouted(self) -> list[str]:
        return [cid for cid in self.scheduled if cid not in self.offered]

    def double_offers(self) -> int:
        late = sum(
            1
            for _, older, t in self.conflicts
            if self.rescinded_at.get(older, math.inf) > t + GRACE_SECONDS
        )
        return late + self.split_reservations + self.double_accepts

    def snapshot(self) -> dict[str, Any]:
        """The counters of the live progress line."""
        return {
            "sent": self.sent,
            "created": len(self.scheduled),
            "routed": len(self.offered),
            "errors": sum(self.errors.values()),
        }
