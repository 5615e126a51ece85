"""The timer loop every instance runs: claim due timers atomically, then fire them.

Timers (offer timeouts, step escalations, wrap-up ends, scheduled callbacks) live in one
sorted set per tenant. ``claim_timers`` leases due members to one caller, so two instances
never fire the same timer twice at once; a crashed instance's lease runs out and another
instance fires it. Each firing is its own atomic script that re-checks it still applies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from queues.contract import Event, Store
from queues.errors import StoreUnavailable
from router.clock import Clock

log = structlog.get_logger("switchboard.timers")


class TimerLoop:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        tenants: Callable[[], list[str]],
        on_events: Callable[[list[Event]], None],
        batch: int = 200,
        lease_ms: int = 5000,
        max_sleep_ms: int = 100,
    ) -> None:
        self.store = store
        self.clock = clock
        self.tenants = tenants
        self.on_events = on_events
        self.batch = batch
        self.lease_ms = lease_ms
        self.max_sleep_ms = max_sleep_ms
        self.fired = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Run the next pass now (a new timer may be due sooner than the loop would look)."""
        self._wake.set()

    async def run_once(self) -> int | None:
        """One pass over every tenant; returns the earliest next due time seen (ms)."""
        next_due: int | None = None
        for tenant in self.tenants():
            now = self.clock.now_ms()
            claim = await self.store.claim_timers(tenant, now, self.batch, self.lease_ms)
            for timer in claim.timers:
                outcome = await self.store.fire_timer(tenant, timer, self.clock.now_ms())
                if outcome.value:
                    self.fired += 1
                    self.on_events(outcome.events)
            if claim.timers and len(claim.timers) >= self.batch:
                next_due = self.clock.now_ms()  # more are due: go again at once
            elif claim.next_due_ms is not None:
                next_due = (
                    claim.next_due_ms if next_due is None else min(next_due, claim.next_due_ms)
                )
        return next_due

    async def run(self) -> None:
        while True:
            try:
                next_due = await self.run_once()
            except StoreUnavailable as exc:
                log.warning("timers.store_unavailable", error=str(exc))
                next_due = None
            except Exception:
                log.exception("timers.failed")
                next_due = None
            sleep_ms = self.max_sleep_ms
            if next_due is not None:
                sleep_ms = max(0, min(sleep_ms, next_due - self.clock.now_ms()))
            self._wake.clear()
            if sleep_ms:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), sleep_ms / 1000)
