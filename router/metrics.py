"""Prometheus metrics: counters and histograms per instance, registered on an injected registry.

Counters count what this instance did (sum them across instances in PromQL). Queue gauges are
read from Redis at scrape time by ``QueueCollector`` so every instance reports the same values
(aggregate them with ``max``, never ``sum``). Labels are bounded: tenant, queue, channel,
segment, outcome; never a contact, customer or agent id. ``docs/operations.md`` says what
each family means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from config.routing import Channel, RoutingConfig
from queues.contract import Abandoned, Accepted, Completed, ContactState, Event
from router.engine import Decision

CHANNELS: tuple[str, ...] = get_args(Channel)
WAIT_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600, 14400)
HANDLE_BUCKETS = (10, 30, 60, 120, 180, 240, 300, 450, 600, 900, 1200, 1800, 3600)
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
#: rescind reasons (api-v1 §3) -> reservation outcome; everything else is "rescinded"
_RESCIND = {"timeout": "timed_out"}
OUTCOMES = ("accepted", "rejected", "timed_out", "rescinded")
_CONTACT = ["tenant", "queue", "channel", "segment"]


def thresholds(config: RoutingConfig) -> set[float]:
    """Every service-level threshold a contact can get: channel defaults, segment and queue."""
    out = {config.service_level(ch).threshold_seconds for ch in CHANNELS}
    out |= {s.service_level.threshold_seconds for s in config.segments if s.service_level}
    out |= {q.service_level.threshold_seconds for q in config.queues if q.service_level}
    return out


def _segment(doc: dict[str, Any]) -> str:
    customer = doc.get("customer")
    return str(customer.get("segment", "")) if isinstance(customer, dict) else ""


def _channel(c: ContactState) -> str:
    """The channel a contact came in on: a call turned into a callback is still counted where
    it was offered, so a channel's series add up (and its service level) over its life."""
    channel = c.doc.get("channel")
    return channel if isinstance(channel, str) and channel else c.channel


def _labels(tenant: str, c: ContactState) -> tuple[str, str, str, str]:
    """The ``_CONTACT`` label values of a contact, in their order."""
    return (tenant, c.queue, _channel(c), _segment(c.doc))


class Metrics:
    """The per-instance counters and histograms, one method per thing that happened."""

    def __init__(self, registry: CollectorRegistry, thresholds: Iterable[float] = ()) -> None:
        #: the wait histogram's buckets; a threshold missing here (added by a config reload
        #: after start) makes "answered within threshold" unreadable from the histogram alone
        self.wait_buckets = tuple(sorted({*WAIT_BUCKETS, *thresholds}))
        self.offered = Counter(
            "switchboard_contacts_offered",
            "Contacts that entered a queue (counted on the first queue of their workflow).",
            _CONTACT,
            registry=registry,
        )
        self.answered = Counter(
            "switchboard_contacts_answered",
            "Contacts accepted by an agent (counted on the queue that answered them).",
            _CONTACT,
            registry=registry,
        )
        self.answered_sl = Counter(
            "switchboard_contacts_answered_within_threshold",
            "Contacts accepted within their own service-level threshold.",
            _CONTACT,
            registry=registry,
        )
        self.abandoned_c = Counter(
            "switchboard_contacts_abandoned",
            "Contacts whose customer left before an agent accepted; before_threshold=true "
            "when they left before their service-level threshold.",
            [*_CONTACT, "before_threshold"],
            registry=registry,
        )
        # (the wait and handle time again as counters: created at 0 with the other counters,
        # unlike the histograms, so ASA and occupancy over a window miss no first contact)
        self.wait_total = Counter(
            "switchboard_contacts_wait_seconds",
            "Total wait (arrival to acceptance) of answered contacts; ASA = its increase / "
            "that of switchboard_contacts_answered_total.",
            _CONTACT,
            registry=registry,
        )
        self.handle_total = Counter(
            "switchboard_contacts_handle_seconds",
            "Total handle time (acceptance to completion, without wrap-up) of completed contacts.",
            _CONTACT,
            registry=registry,
        )
        self.offers = Counter(
            "switchboard_reservations_offered",
            "Reservations made: a contact offered to an agent.",
            registry=registry,
        )
        self.reservations = Counter(
            "switchboard_reservations",
            "Reservations ended, by outcome: accepted, rejected, timed_out, rescinded.",
            ["outcome"],
            registry=registry,
        )
        self.wait = Histogram(
            "switchboard_queue_wait_seconds",
            "Time from arrival to acceptance of answered contacts; the buckets include every "
            "configured service-level threshold.",
            _CONTACT,
            buckets=self.wait_buckets,
            registry=registry,
        )
        self.handle = Histogram(
            "switchboard_handle_time_seconds",
            "Time from acceptance to completion (talk time, without wrap-up).",
            _CONTACT,
            buckets=HANDLE_BUCKETS,
            registry=registry,
        )
        self.wrap = Counter(
            "switchboard_wrap_up_seconds",
            "After-contact work (wrap-up) time granted at completion.",
            ["tenant", "queue", "channel"],
            registry=registry,
        )
        self.decision = Histogram(
            "switchboard_routing_decision_seconds",
            "Time to route a new contact: customer lookup, rules and the atomic enqueue.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.reservations.labels(outcome)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def prepare(self, tenants: Iterable[str], config: RoutingConfig) -> None:
        """Create every counter series at 0 so PromQL's ``increase`` sees the first contact.

        A series born at 1 hides its first increment from ``rate``/``increase``; the label
        space is small (tenants x queues x channels x segments), so it is created up front.
        """
        for tenant in tenants:
            for q in config.queues:
                for ch in CHANNELS:
                    self.wrap.labels(tenant, q.name, ch)
                    for s in config.segments:
                        labels = (tenant, q.name, ch, s.name)
                        self.offered.labels(*labels)
                        self.answered.labels(*labels)
                        self.answered_sl.labels(*labels)
                        self.abandoned_c.labels(*labels, "true")
                        self.abandoned_c.labels(*labels, "false")
                        self.wait_total.labels(*labels)
                        self.handle_total.labels(*labels)

    def events(self, events: list[Event], rejected: int = 0) -> None:
        for ev in events:
            kind = ev.get("t")
            if kind == "offer":
                self.offers.inc()
            elif kind == "rescind":
                self.reservations.labels(_RESCIND.get(str(ev.get("why")), "rescinded")).inc()
        if rejected:
            self.reservations.labels("rejected").inc(rejected)

    def routed(
        self, tenant: str, d: Decision, channel: str, events: list[Event], seconds: float
    ) -> None:
        self._child(self.offered, (tenant, d.home_queue, channel, d.segment)).inc()
        self.decision.observe(seconds)
        self.events(events)

    def _child(self, metric: Any, values: tuple[str, ...]) -> Any:
        """``metric.labels(*values)``, remembered: the label space is small and fixed, and
        looking a child up through prometheus_client takes a lock and several calls."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def accepted(self, tenant: str, value: Accepted, events: list[Event]) -> None:
        labels = _labels(tenant, value.contact)
        self._child(self.answered, labels).inc()
        if value.within_threshold:
            self._child(self.answered_sl, labels).inc()
        self._child(self.wait, labels).observe(value.wait_ms / 1000)
        # (a counter takes no negative step: instances whose clocks disagree can record one)
        self._child(self.wait_total, labels).inc(max(0, value.wait_ms) / 1000)
        self._child(self.reservations, ("accepted",)).inc()
        self.events(events)

    def abandoned(self, tenant: str, value: Abandoned, events: list[Event]) -> None:
        labels = (*_labels(tenant, value.contact), str(value.short).lower())
        self._child(self.abandoned_c, labels).inc()
        self.events(events)

    def completed(
        self, tenant: str, value: Completed, events: list[Event], wrap_seconds: float = 0.0
    ) -> None:
        c = value.contact
        labels = _labels(tenant, c)
        self._child(self.handle, labels).observe(value.handle_ms / 1000)
        self._child(self.handle_total, labels).inc(max(0, value.handle_ms) / 1000)
        if wrap_seconds > 0:
            self.wrap.labels(tenant, c.queue, _channel(c)).inc(wrap_seconds)
        self.events(events)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class QueueCollector(Collector):
    """Gauges read at scrape time: queue state from the latest Redis snapshot, config targets.

    The ``/metrics`` handler reads a fresh snapshot first and reports the outcome through
    ``mark``: when that read failed, ``switchboard_redis_up`` is 0 and the Redis-derived
    gauges are left out rather than repeated stale (the scrape itself still succeeds).
    """

    def __init__(self, service: Callable[[], Any]) -> None:
        self._service = service
        self.redis_up = True
        #: this instance's clock minus Redis's (seconds), once measured (``app.check_clock``)
        self.clock_offset: float | None = None

    def mark(self, ok: bool) -> None:
        self.redis_up = ok

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up = _gauge(
            "switchboard_redis_up",
            "1 when this instance's last read of Redis (at this scrape) succeeded, else 0.",
            [],
        )
        up.add_metric([], 1.0 if self.redis_up else 0.0)
        yield up
        if self.clock_offset is not None:
            offset = _gauge(
                "switchboard_clock_offset_seconds",
                "This instance's clock minus Redis's (TIME), as last measured.",
                [],
            )
            offset.add_metric([], self.clock_offset)
            yield offset
        try:
            service = self._service()
        except KeyError:  # scraped before startup finished
            return
        yield from self._targets(service.config)
        yield self._cel_errors(service.engine.expressions(), service.engine.cel_errors)
        if self.redis_up:
            yield from self._queues(service)

    @staticmethod
    def _cel_errors(expressions: list[str], counts: Mapping[str, int]) -> CounterMetricFamily:
        family = CounterMetricFamily(
            "switchboard_cel_errors",
            "CEL expressions that failed at run time on this instance (treated as false, or a "
            "priority of 0), by config location.",
            labels=["expression"],
        )
        # every expression of the config from 0, and any a reload has since removed
        for where in dict.fromkeys([*expressions, *sorted(counts)]):
            family.add_metric([where], counts.get(where, 0))
        return family

    @staticmethod
    def _targets(config: RoutingConfig) -> Iterator[GaugeMetricFamily]:
        lab = ["queue", "channel"]
        target = _gauge(
            "switchboard_service_level_target_ratio",
            "Service-level target of a queue for a channel (the queue's override, else the "
            "channel's level), from the routing config.",
            lab,
        )
        threshold = _gauge(
            "switchboard_service_level_threshold_seconds",
            "Service-level threshold of a queue for a channel, from the routing config.",
            lab,
        )
        for q in config.queues:
            for ch in CHANNELS:
                level = q.service_level or config.service_level(ch)
                target.add_metric([q.name, ch], level.target)
                threshold.add_metric([q.name, ch], level.threshold_seconds)
        segment_target = _gauge(
            "switchboard_segment_service_level_target_ratio",
            "Service-level target of a segment that has its own level (its contacts are held "
            "to it in every queue), from the routing config.",
            ["segment"],
        )
        segment_threshold = _gauge(
            "switchboard_segment_service_level_threshold_seconds",
            "Service-level threshold of a segment that has its own level, from the routing config.",
            ["segment"],
        )
        for s in config.segments:
            if s.service_level:
                segment_target.add_metric([s.name], s.service_level.target)
                segment_threshold.add_metric([s.name], s.service_level.threshold_seconds)
        yield from (target, threshold, segment_target, segment_threshold)

    @staticmethod
    def _queues(service: Any) -> Iterator[GaugeMetricFamily]:
        stats = service.stats
        now = service.clock.now_ms()
        lab = ["tenant", "queue"]
        waiting = _gauge("switchboard_queue_waiting", "Contacts waiting in the queue.", lab)
        held = _gauge(
            "switchboard_queue_scheduled_callbacks",
            "Callbacks scheduled for later, out of line until their time (not in waiting).",
            lab,
        )
        oldest = _gauge(
            "switchboard_queue_oldest_wait_seconds",
            "Wait so far of the queue's oldest waiting contact (0 when none waits).",
            lab,
        )
        ewt = _gauge(
            "switchboard_queue_estimated_wait_seconds",
            "Estimated wait of a contact joining the queue now (absent with no agent staffed).",
            lab,
        )
        staffed = _gauge(
            "switchboard_queue_agents_staffed",
            "Agents of the queue who are not offline (available or away).",
            lab,
        )
        agents = _gauge(
            "switchboard_queue_agents",
            "Agents of the queue by state (available, away); offline agents are not counted.",
            [*lab, "state"],
        )
        sl = _gauge(
            "switchboard_queue_service_level_ratio",
            "Today's (UTC) service level: answered within threshold / (answered + abandoned); "
            "absent before the day's first outcome. GET /v1/queues reports the same figure.",
            lab,
        )
        today = _gauge(
            "switchboard_queue_today_contacts",
            "Today's (UTC) contact counts of the queue, all instances, by outcome.",
            [*lab, "outcome"],
        )
        wait_s = _gauge(
            "switchboard_queue_today_wait_seconds",
            "Today's (UTC) total wait of the queue's answered contacts (ASA = this / answered).",
            lab,
        )
        handle_s = _gauge(
            "switchboard_queue_today_handle_seconds",
            "Today's (UTC) total handle time of the queue's completed contacts.",
            lab,
        )
        wrap_s = _gauge(
            "switchboard_queue_today_wrap_up_seconds",
            "Today's (UTC) total wrap-up time granted to the queue's completed contacts.",
            lab,
        )
        for (tenant, _), snap in sorted(stats.snapshots.items()):
            out = stats.render(tenant, snap, now)
            key = [tenant, snap.name]
            waiting.add_metric(key, snap.waiting)
            held.add_metric(key, snap.held)
            oldest.add_metric(key, out.oldest_wait_seconds or 0.0)
            if out.estimated_wait_seconds is not None:
                ewt.add_metric(key, out.estimated_wait_seconds)
            staffed.add_metric(key, snap.staffed)
            agents.add_metric([*key, "available"], snap.available)
            agents.add_metric([*key, "away"], max(0, snap.staffed - snap.available))
            if out.service_level is not None:
                sl.add_metric(key, out.service_level)
            for outcome, field in _TODAY:
                today.add_metric([*key, outcome], snap.stats.get(field, 0))
            wait_s.add_metric(key, snap.stats.get("wait_ms", 0) / 1000)
            handle_s.add_metric(key, snap.stats.get("handle_ms", 0) / 1000)
            wrap_s.add_metric(key, snap.stats.get("wrap_ms", 0) / 1000)
        yield from (
            waiting,
            held,
            oldest,
            ewt,
            staffed,
            agents,
            sl,
            today,
            wait_s,
            handle_s,
            wrap_s,
        )


#: (outcome label, the store's per-queue per-day counter)
_TODAY = (
    ("offered", "offered"),
    ("answered", "answered"),
    ("answered_within_threshold", "answered_sl"),
    ("abandoned", "abandoned"),
    ("abandoned_before_threshold", "abandoned_short"),
    ("cancelled", "cancelled"),
    ("handled", "handled"),
)
