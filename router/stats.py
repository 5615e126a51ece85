"""Per-queue figures derived from the store's counters: estimated wait and service level.

Estimated wait for the contact at position k of a queue staffed for n contacts at once (the
capacity on the contact's channel of the members signed in: a chat agent taking three chats
counts three) is ``k * AHT / n``: while every place is busy, places free up at a combined rate
of n / AHT, and the contact is served at the k-th departure. AHT is today's mean handle time
of the queue with its wrap-up (the store's ``(handle_ms + wrap_ms) / handled`` counters: an
agent is busy until its wrap-up ends), or ``DEFAULT_AHT_SECONDS`` before any contact has been
handled. For exponential handle times this is the mean of Gamma(k, n / AHT), the exact
expected wait while all places stay busy; ``tests/ops/ewt_eval.py`` measures it against
actual waits through the real store (docs/operations.md has the figures, and the
alternatives tried).
A contact waiting in several lines at once (the queues of an escalated step, the agents a step
names) is served by whichever reaches it first: its estimate is the shortest of its lines' own
(``contact_wait``), each with its own place, AHT and staffing (a named agent's line is that
agent's capacity on the channel, with the AHT of the contact's queue). The shortest is the
simplest figure that agrees with the position shown (the best place); it leaves out that the
lines race each other, so it runs a little long when two lines are close. The queue's own
figure (``render``: a contact joining now, on whatever channel) divides by the contacts its
agents staffed can hold at once, each agent counted for the most it takes on one channel.
Snapshots are refreshed in the background every few seconds and on every
``GET /v1/queues``, so creating a contact costs no extra Redis round trip.
"""

from __future__ import annotations

import math

from config.routing import RoutingConfig
from queues.contract import QueueSnapshot
from router import models as m

DEFAULT_AHT_SECONDS = 180.0


def service_level(stats: dict[str, int]) -> float | None:
    """Answered within threshold / (answered + abandoned); None before any outcome."""
    answered = stats.get("answered", 0)
    abandoned = stats.get("abandoned", 0)
    if answered + abandoned == 0:
        return None
    return stats.get("answered_sl", 0) / (answered + abandoned)


def gamma_median_factor(k: int) -> float:
    """Median of Gamma(k, 1): the k-th of n busy agents' departures, in units of AHT / n.

    ln 2 for k = 1 (exact); Choi's expansion k - 1/3 + 8/(405 k) beyond (error < 0.002).
    """
    return math.log(2) if k <= 1 else k - 1 / 3 + 8 / (405 * k)


def mean_handle_seconds(stats: dict[str, int]) -> float | None:
    """Today's mean time an agent spends on a contact: handle time plus wrap-up."""
    handled = stats.get("handled", 0)
    busy_ms = stats.get("handle_ms", 0) + stats.get("wrap_ms", 0)
    return busy_ms / handled / 1000 if handled else None


class QueueStats:
    def __init__(self, config: RoutingConfig) -> None:
        self.snapshots: dict[tuple[str, str], QueueSnapshot] = {}
        self.configure(config)

    def configure(self, config: RoutingConfig) -> None:
        self.queue_names = [q.name for q in config.queues]
        # a queue the config no longer has is never read again: its last snapshot would be
        # reported (on /metrics) for good
        self._known = set(self.queue_names)
        for key in [key for key in self.snapshots if key[1] not in self._known]:
            del self.snapshots[key]

    def update(self, tenant: str, snaps: list[QueueSnapshot], now_ms: int) -> None:
        for snap in snaps:
            # (a read begun before a reload may still name a queue it removed)
            if snap.name in self._known:
                self.snapshots[(tenant, snap.name)] = snap

    def aht(self, tenant: str, queue: str) -> float:
        snap = self.snapshots.get((tenant, queue))
        measured = mean_handle_seconds(snap.stats) if snap else None
        return measured or DEFAULT_AHT_SECONDS

    def estimated_wait(
        self, queue: str, position: int, staffed: int, tenant: str = "default"
    ) -> float | None:
        if staffed <= 0:
            return None
        return round(position * self.aht(tenant, queue) / staffed, 1)

    def contact_wait(
        self, queue: str, lines: list[tuple[str, int, int]], tenant: str = "default"
    ) -> float | None:
        """A waiting contact's estimated wait: the shortest of its staffed lines' estimates
        (``queue``, the contact's, lends its AHT to the lines of named agents); None when no
        line is staffed."""
        best: float | None = None
        for name, place, staffed in lines:
            wait = self.estimated_wait(name or queue, place, staffed, tenant)
            if wait is not None and (best is None or wait < best):
                best = wait
        return best

    def render(self, tenant: str, snap: QueueSnapshot, now_ms: int) -> m.QueueOut:
        oldest = snap.oldest_enqueued_ms
        return m.QueueOut(
            name=snap.name,
            waiting=snap.waiting,
            scheduled_callbacks=snap.held,
            oldest_wait_seconds=None if oldest is None else max(0.0, (now_ms - oldest) / 1000),
            agents_staffed=snap.staffed,
            agents_available=snap.available,
            service_level=service_level(snap.stats),
            estimated_wait_seconds=(
                # (an available agent may be busy: free capacity is what answers at once)
                0.0
                if snap.free > 0 and snap.waiting == 0
                else self.estimated_wait(snap.name, snap.waiting + 1, snap.places, tenant)
            ),
        )
