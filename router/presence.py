"""Agent presence across instances: which sockets this instance holds, told to Redis.

Each instance has an id, random per process. When an agent's socket opens or closes here, the
instance tells the store how many sockets of that agent it now holds (``socket_opened``,
``socket_closed``): the count is set, not added to, so a call repeated changes nothing. The
store sets an agent offline only when it has no socket left on any live instance, so a tab
closing on one instance, or a dead socket timing out after the desk reconnected elsewhere,
leaves an agent with a socket on another instance as it is.

An instance is live while it beats: ``run`` calls ``instance_beat`` for each tenant it holds
sockets in, three times per ``timeout``. An instance not heard from for ``timeout`` is taken
for dead by whichever instance's timer loop fires its sweep timer first (even in a tenant where
that one holds no socket): its sockets are dropped and its agents left with none set offline.

Should a call not reach Redis, or the beat find that this instance was swept meanwhile (cut
off from Redis for longer than the timeout), the next beat of that tenant sends every socket
the instance holds there, which replaces what Redis has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from queues.contract import Event, Store
from queues.errors import SwitchboardError
from router.clock import Clock
from router.hub import Hub

log = structlog.get_logger("switchboard.presence")


class Presence:
    """This instance's sockets as the store should count them, and its beats (module doc)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        hub: Hub,
        instance: str,
        timeout_s: float,
        on_events: Callable[[list[Event]], None],
        closing: asyncio.Event,
    ) -> None:
        self.store = store
        self.clock = clock
        self.hub = hub
        self.instance = instance
        self.timeout_ms = max(1, round(timeout_s * 1000))
        self.interval = timeout_s / 3
        self.on_events = on_events
        #: set on shutdown: no more beats (see ``beat``)
        self.closing = closing
        #: tenants whose sockets Redis may have wrong: the next beat sends them all
        self.dirty: set[str] = set()
        #: tenants where the store has recorded this instance (by any call that reached it)
        self.recorded: set[str] = set()

    def sockets(self, tenant: str, agent_id: str) -> int:
        """How many sockets of the agent this instance holds now."""
        return len(self.hub.agents.get((tenant, agent_id), ()))

    def held(self, tenant: str) -> dict[str, int]:
        """Every agent of the tenant with sockets here, and how many."""
        return {aid: len(s) for (t, aid), s in self.hub.agents.items() if t == tenant and s}

    async def opened(self, tenant: str, agent_id: str) -> None:
        """A socket of the agent opened here (it is already in the hub)."""
        # (the count is read and the call written in one step: calls leave in the order the
        # sockets changed)
        n = self.sockets(tenant, agent_id)
        try:
            out = await self.store.socket_opened(
                tenant, agent_id, self.instance, max(n, 1), self.clock.now_ms(), self.timeout_ms
            )
        except SwitchboardError as exc:
            self._lost(tenant, "opened", exc)
            return
        if self._record_lost(tenant, out.value.known):
            self.dirty.add(tenant)  # swept meanwhile: the next beat sends all

    async def closed(self, tenant: str, agent_id: str) -> None:
        """A socket of the agent closed here (it is already out of the hub)."""
        n = self.sockets(tenant, agent_id)
        try:
            out = await self.store.socket_closed(
                tenant, agent_id, self.instance, n, self.clock.now_ms()
            )
        except SwitchboardError as exc:
            self._lost(tenant, "closed", exc)
            return
        self.on_events(out.events)
        if self._record_lost(tenant, out.value.known):
            self.dirty.add(tenant)

    def _record_lost(self, tenant: str, known: bool) -> bool:
        """Whether a call found the store without a record of this instance in ``tenant``
        (``known`` false) where it had one before: swept while it lived on, so the sockets it
        had recorded there are gone. The first call in a tenant finds none and lost nothing
        (each socket opened since was told on its own): no need to send them all again, which
        for thousands of agents is one long script."""
        lost = not known and tenant in self.recorded
        self.recorded.add(tenant)
        return lost

    def _lost(self, tenant: str, what: str, exc: SwitchboardError) -> None:
        self.dirty.add(tenant)
        log.warning("presence.call_failed", call=what, tenant=tenant, error=str(exc))

    async def beat(self) -> None:
        """One beat for every tenant this instance holds sockets in (or must send again).

        None once the instance shuts down: its sockets stay counted in Redis (they are closed
        without ``closed``) until the sweep, so a desk has the timeout to reconnect to another
        instance before its agent is set offline, and one that does not is set offline then.
        """
        if self.closing.is_set():
            return
        tenants = {t for (t, _), s in self.hub.agents.items() if s} | self.dirty
        for tenant in sorted(tenants):
            if self.closing.is_set():
                return
            sync = tenant in self.dirty
            self.dirty.discard(tenant)
            try:
                out = await self.store.instance_beat(
                    tenant,
                    self.instance,
                    self.clock.now_ms(),
                    self.timeout_ms,
                    self.held(tenant) if sync else None,
                )
                if self._record_lost(tenant, out.value.known) and not sync:
                    # swept while it lived on: what Redis had of its sockets is gone
                    log.warning("presence.swept_while_alive", tenant=tenant)
                    out = await self.store.instance_beat(
                        tenant,
                        self.instance,
                        self.clock.now_ms(),
                        self.timeout_ms,
                        self.held(tenant),
                    )
            except SwitchboardError as exc:
                self._lost(tenant, "beat", exc)
                continue
            self.on_events(out.events)

    async def run(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception:
                log.exception("presence.failed")
            await asyncio.sleep(self.interval)
