"""Prometheus metrics: counters and histograms per instance, registered on an injected registry.

Counters count what this instance did (sum them across instances in PromQL). Queue gauges are
read from Redis at scrape time by ``QueueCollector`` so every instance reports the same values.
Labels are bounded: queue, channel, segment, outcome; never a contact, customer or agent id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from queues.contract import Abandoned, Accepted, Completed, Event
from router.engine import Decision

WAIT_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600, 14400)
HANDLE_BUCKETS = (10, 30, 60, 120, 180, 240, 300, 450, 600, 900, 1200, 1800, 3600)
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_RESCIND = {"timeout": "timed_out"}


def _labels(doc: dict[str, object], channel: str, queue: str) -> dict[str, str]:
    customer = doc.get("customer")
    segment = customer.get("segment", "") if isinstance(customer, dict) else ""
    return {"queue": queue, "channel": channel, "segment": str(segment)}


class Metrics:
    def __init__(self, registry: CollectorRegistry, thresholds: Iterable[float] = ()) -> None:
        buckets = tuple(sorted({*WAIT_BUCKETS, *thresholds}))
        lab = ["queue", "channel", "segment"]
        self.offered = Counter(
            "switchboard_contacts_offered", "Contacts that entered a queue.", lab, registry=registry
        )
        self.answered = Counter(
            "switchboard_contacts_answered",
            "Contacts accepted by an agent.",
            lab,
            registry=registry,
        )
        self.answered_sl = Counter(
            "switchboard_contacts_answered_within_threshold",
            "Contacts accepted within their service-level threshold.",
            lab,
            registry=registry,
        )
        self.abandoned_c = Counter(
            "switchboard_contacts_abandoned",
            "Contacts whose customer left before an agent accepted.",
            [*lab, "before_threshold"],
            registry=registry,
        )
        self.reservations = Counter(
            "switchboard_reservations",
            "Offers to agents by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.wait = Histogram(
            "switchboard_queue_wait_seconds",
            "Time from arrival to acceptance.",
            lab,
            buckets=buckets,
            registry=registry,
        )
        self.handle = Histogram(
            "switchboard_handle_time_seconds",
            "Time from acceptance to completion.",
            ["queue", "channel"],
            buckets=HANDLE_BUCKETS,
            registry=registry,
        )
        self.decision = Histogram(
            "switchboard_routing_decision_seconds",
            "Time to route a new contact: rules, customer lookup and the atomic enqueue.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def events(self, events: list[Event], rejected: int = 0) -> None:
        for ev in events:
            kind = ev.get("t")
            if kind == "offer":
                self.reservations.labels("offered").inc()
            elif kind == "rescind":
                self.reservations.labels(_RESCIND.get(str(ev.get("why")), "rescinded")).inc()
        if rejected:
            self.reservations.labels("rejected").inc(rejected)

    def routed(self, d: Decision, channel: str, events: list[Event], seconds: float) -> None:
        self.offered.labels(d.home_queue, channel, d.segment).inc()
        self.decision.observe(seconds)
        self.events(events)

    def accepted(self, value: Accepted, events: list[Event]) -> None:
        c = value.contact
        labels = _labels(c.doc, c.channel, c.queue)
        self.answered.labels(**labels).inc()
        if value.within_threshold:
            self.answered_sl.labels(**labels).inc()
        self.wait.labels(**labels).observe(value.wait_ms / 1000)
        self.reservations.labels("accepted").inc()
        self.events(events)

    def abandoned(self, value: Abandoned, events: list[Event]) -> None:
        c = value.contact
        labels = _labels(c.doc, c.channel, c.queue)
        self.abandoned_c.labels(**labels, before_threshold=str(value.short).lower()).inc()
        self.events(events)

    def completed(self, value: Completed, events: list[Event]) -> None:
        c = value.contact
        self.handle.labels(c.queue, c.channel).observe(value.handle_ms / 1000)
        self.events(events)


class QueueCollector:
    """Queue and agent gauges from the latest Redis snapshot (refreshed at each scrape)."""

    def __init__(self, service: Callable[[], Any]) -> None:
        self._service = service

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            service = self._service()
        except KeyError:  # scraped before startup finished
            return
        stats = service.stats
        now = service.clock.now_ms()
        lab = ["tenant", "queue"]
        waiting = GaugeMetricFamily("switchboard_queue_waiting", "Contacts waiting.", labels=lab)
        oldest = GaugeMetricFamily(
            "switchboard_queue_oldest_wait_seconds",
            "Wait of the oldest waiting contact.",
            labels=lab,
        )
        ewt = GaugeMetricFamily(
            "switchboard_queue_estimated_wait_seconds",
            "Estimated wait of a contact joining the queue now.",
            labels=lab,
        )
        agents = GaugeMetricFamily(
            "switchboard_queue_agents", "Agents of the queue by state.", labels=[*lab, "state"]
        )
        for (tenant, _), snap in sorted(stats.snapshots.items()):
            out = stats.render(tenant, snap, now)
            waiting.add_metric([tenant, snap.name], snap.waiting)
            oldest.add_metric([tenant, snap.name], out.oldest_wait_seconds or 0.0)
            if out.estimated_wait_seconds is not None:
                ewt.add_metric([tenant, snap.name], out.estimated_wait_seconds)
            agents.add_metric([tenant, snap.name, "staffed"], snap.staffed)
            agents.add_metric([tenant, snap.name, "available"], snap.available)
        yield from (waiting, oldest, ewt, agents)
