"""Routing config reloads that reach every instance on the same Redis.

``POST /v1/config/reload`` validates the config file and applies it on the instance it reaches;
that instance then announces the reload on the notice channel (``router.customers.CHANNEL``),
and every other instance reloads its own config file (in a usual deployment the same file):
an invalid file there is logged and the instance keeps the config it runs, and a valid file
that differs from the announcing instance's (compared by a digest of the parsed config) is
applied and logged as a warning, since the instances now route by different rules.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog

from config.routing import ConfigInvalid, RoutingConfig, load_routing
from router import models as m
from router.customers import CHANNEL
from router.service import Service

log = structlog.get_logger("switchboard.config")

Publish = Callable[[str, bytes], Awaitable[int]]


def digest(config: RoutingConfig) -> str:
    """Equal for equal configs, however their files are laid out."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


#: agents whose pending offers are read together by the reload guard
_BATCH = 256


class QueuesStillWaiting(Exception):
    """A reload would remove queues that contacts still wait in or are on offer from: nobody
    could take them."""

    def __init__(self, waiting: dict[str, int], offered: dict[str, int]) -> None:
        self.waiting = waiting  # queue -> contacts waiting in it, over every tenant
        self.offered = offered  # queue -> contacts on offer from it, over every tenant
        listed = ", ".join(
            f"{q!r} ({_counts(waiting.get(q, 0), offered.get(q, 0))})"
            for q in sorted(waiting.keys() | offered.keys())
        )
        super().__init__(
            "the new config removes queues that contacts still wait in or are on offer from:"
            f" {listed}; nothing was applied (keep the queues until they are empty and their"
            " offers answered, or move their contacts first)"
        )


def _counts(waiting: int, offered: int) -> str:
    parts = [f"{waiting} waiting"] if waiting else []
    if offered:
        parts.append(f"{offered} on offer")
    return ", ".join(parts)


class ConfigReloads:
    def __init__(
        self,
        path: str,
        service: Callable[[], Service],
        tenants: list[str],
        instance: str,
        publish: Publish | None = None,
    ) -> None:
        self.path = path
        self.service = service
        self.tenants = tenants
        self.instance = instance
        self.publish = publish
        self.tasks: set[asyncio.Task[None]] = set()

    async def reload(self) -> m.ReloadOut:
        """Validate and apply the config file here, then tell the other instances.

        Raises ``ConfigInvalid`` (nothing applied anywhere) for an invalid file, and
        ``QueuesStillWaiting`` for one that removes (or renames) a queue contacts wait in
        (scheduled callbacks included) or are on offer from: no agent would be a member of it
        any more, so they would wait for good.
        """
        config = load_routing(self.path)
        service = self.service()
        removed = sorted({q.name for q in service.config.queues} - {q.name for q in config.queues})
        if removed:
            waiting: dict[str, int] = {}
            now = service.clock.now_ms()
            for tenant in self.tenants:
                for snap in await service.store.queue_snapshot(tenant, removed, now):
                    # (a scheduled callback comes back to its queue at its time)
                    count = snap.waiting + snap.held
                    if count:
                        waiting[snap.name] = waiting.get(snap.name, 0) + count
            offered = await self._offered_from(service, set(removed))
            if waiting or offered:
                raise QueuesStillWaiting(waiting, offered)
        out = await service.reload(self.tenants, config)
        out.instances_notified = await self._announce(digest(config))
        return out

    async def _offered_from(self, service: Service, queues: set[str]) -> dict[str, int]:
        """How many contacts are on offer from each of ``queues``, over every tenant.

        An offered contact has left the waiting sets, so the queue snapshot does not see it;
        the recomputed memberships would rescind its offer and it would wait in a queue nobody
        is a member of. Read from each agent's pending offers: a reload is rare, and this keeps
        the offer scripts as they are. An offer by name (``last_agent``, ``preferred_agents``)
        names no queue and counts against none.
        """
        offered: dict[str, int] = {}
        store = service.store
        for tenant in self.tenants:
            agents = [a for a, _, _ in await store.list_agents(tenant)]
            # (a batch at a time: Redis pipelines them on one connection, where one read after
            # another would be 10,000 round trips for 10,000 agents)
            for at in range(0, len(agents), _BATCH):
                batch = agents[at : at + _BATCH]
                for offers in await asyncio.gather(
                    *(store.pending_offers(tenant, a) for a in batch)
                ):
                    for offer in offers:
                        if offer.queue in queues:
                            offered[offer.queue] = offered.get(offer.queue, 0) + 1
        return offered

    async def _announce(self, sha: str) -> int:
        if self.publish is None:
            return 0
        notice = {"k": "config", "i": self.instance, "sha": sha}
        try:
            listeners = await self.publish(CHANNEL, orjson.dumps(notice))
        except Exception as exc:
            log.warning("config.reload_notice_failed", error=str(exc) or type(exc).__name__)
            return 0
        return max(listeners - 1, 0)  # this instance hears its own notice

    def on_notice(self, notice: dict[str, Any]) -> None:
        """A notice of kind ``config``: reload unless it is this instance's own."""
        if notice.get("i") == self.instance:
            return
        task = asyncio.create_task(self._follow(str(notice.get("sha", ""))))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _follow(self, sha: str) -> None:
        try:
            config = load_routing(self.path)
        except ConfigInvalid as exc:
            problems = [f"{p.path or '(top)'}: {p.message}" for p in exc.problems]
            log.error("config.reload_failed", source="another instance", problems=problems)
            return
        mine = digest(config)
        if mine != sha:
            log.warning("config.reload_differs", announced=sha, applied=mine)
        try:
            out = await self.service().reload(self.tenants, config)
        except Exception as exc:  # the store is down: this instance keeps its config
            log.error("config.reload_failed", error=str(exc) or type(exc).__name__)
            return
        log.info("config.reloaded", source="another instance", queues=out.queues, rules=out.rules)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
