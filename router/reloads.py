"""Routing config reloads that reach every instance on the same Redis.

``POST /v1/config/reload`` validates the config file and applies it on the instance it reaches;
that instance then announces the reload on the notice channel (``router.customers.CHANNEL``),
and every other instance reloads its own config file (in a usual deployment the same file):
an invalid file there is logged and the instance keeps the config it runs, and a valid file
that differs from the announcing instance's (compared by a digest of the parsed config) is
applied and logged as a warning, since the instances now route by different rules.

A reload that removes (or renames) a queue some contact under way still depends on is refused
(``QueuesStillWaiting``): in line there, on offer from it, or with it in a step still ahead.
That check runs again once the new config is in force, on every instance, to report what came
to depend on a removed queue while the old config still routed (see ``ConfigReloads.reload``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from config.routing import ConfigInvalid, RoutingConfig, load_routing
from queues.contract import PendingOffer, Store
from router import models as m
from router.customers import CHANNEL
from router.service import Service

log = structlog.get_logger("switchboard.config")

Publish = Callable[[str, bytes], Awaitable[int]]


def digest(config: RoutingConfig) -> str:
    """Equal for equal configs, however their files are laid out."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


#: agents, queues or contacts read together by the reload guard (one script, or one pipelined
#: batch of scripts, each)
_BATCH = 256


@dataclass
class InUse:
    """The contacts still under way that depend on queues a reload removes, per queue, over
    every tenant. Each contact counts once per queue, under the first of: in line there
    (scheduled callbacks included), on offer from it, or with the queue in its workflow (its
    current step's, or a later step's: a step's timeout sends it there)."""

    waiting: dict[str, int] = field(default_factory=dict)
    offered: dict[str, int] = field(default_factory=dict)
    ahead: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.waiting or self.offered or self.ahead)

    def queues(self) -> list[str]:
        return sorted(self.waiting.keys() | self.offered.keys() | self.ahead.keys())

    def totals(self) -> dict[str, int]:
        """Queue -> the contacts that depend on it."""
        counts = (self.waiting, self.offered, self.ahead)
        return {q: sum(n.get(q, 0) for n in counts) for q in self.queues()}

    def listed(self) -> str:
        return ", ".join(f"{q!r} ({self._counts(q)})" for q in self.queues())

    def _counts(self, queue: str) -> str:
        parts = []
        if n := self.waiting.get(queue, 0):
            parts.append(f"{n} waiting")
        if n := self.offered.get(queue, 0):
            parts.append(f"{n} on offer")
        if n := self.ahead.get(queue, 0):
            parts.append(f"{n} whose workflow leads there")
        return ", ".join(parts)


class QueuesStillWaiting(Exception):
    """A reload would remove queues that contacts still wait in, are on offer from or would
    move on to: nobody could take them."""

    def __init__(self, in_use: InUse) -> None:
        self.in_use = in_use
        super().__init__(
            "the new config removes queues that contacts still wait in, are on offer from or"
            f" would move on to at a later step: {in_use.listed()}; nothing was applied (keep"
            " the queues until those contacts are answered or gone, or move them first)"
        )


def _add(counts: dict[str, int], queue: str) -> None:
    counts[queue] = counts.get(queue, 0) + 1


def _batches(items: list[str]) -> list[list[str]]:
    return [items[at : at + _BATCH] for at in range(0, len(items), _BATCH)]


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
        ``QueuesStillWaiting`` for one that removes (or renames) a queue that contacts wait in
        (scheduled callbacks included), are on offer from, or have in the steps of their
        workflow still ahead of them: no agent would be a member of it any more, so they
        would wait for good.

        The check cannot hold the store still while the config is applied: a contact routed
        (here, or on an instance that has not followed yet), offered or moved on meanwhile
        by the old config may still depend on a removed queue. The check therefore runs
        again once the new config is in force here and the other instances are told, and
        what it finds is reported in ``stranded`` (and logged) rather than undone; None
        there when that check failed (the store went away: logged too).
        """
        config = load_routing(self.path)
        service = self.service()
        removed = _removed(service.config, config)
        if removed:
            in_use = await self.in_use(service, removed, _names(config))
            if in_use:
                raise QueuesStillWaiting(in_use)
        out = await service.reload(self.tenants, config)
        # (told before the second check: each instance routes by the old config until it
        # follows, and the check reads every contact under way)
        out.instances_notified = await self._announce(digest(config))
        if removed:
            try:
                out.stranded = await self._recheck(service, removed, config, "this instance")
            except Exception as exc:  # applied all the same: the answer says it is unchecked
                log.error("config.reload_check_failed", error=str(exc) or type(exc).__name__)
                out.stranded = None
        return out

    async def _recheck(
        self, service: Service, removed: set[str], config: RoutingConfig, source: str
    ) -> dict[str, int]:
        """The check again, once ``config`` is in force here: the contacts that came to
        depend on a removed queue between the first check and the apply (logged)."""
        late = await self.in_use(service, removed, _names(config))
        if late:
            log.warning(
                "config.reload_stranded", source=source, queues=late.totals(), detail=late.listed()
            )
        return late.totals()

    async def in_use(self, service: Service, removed: set[str], queues: list[str]) -> InUse:
        """What depends on the ``removed`` queues, over every tenant (see ``InUse``).

        The contacts under way are found where they are listed, never by a scan of the
        keyspace: the lines of the ``removed`` queues and of ``queues`` (those of the config
        in force), of each agent (named by a step), the scheduled callbacks, and each agent's
        pending offers (an offered contact has left every line). Their workflows are then
        read a batch at a time. A reload is rare: this reads every contact under way, in
        ``_BATCH`` steps.
        """
        out = InUse()
        store = service.store
        for tenant in self.tenants:
            agents = [a for a, _, _ in await store.list_agents(tenant)]
            counted: dict[str, set[str]] = {}  # queue -> contacts counted against it
            live: set[str] = set()
            for q in sorted(removed):
                there = await store.list_contacts(tenant, [q], [])
                counted[q] = set(there)
                live.update(there)
                if there:
                    out.waiting[q] = out.waiting.get(q, 0) + len(there)
            for offer in await self._offers(store, tenant, agents):
                live.add(offer.contact_id)
                # (an offer by name, from a last_agent or preferred_agents step, names no
                # queue: its contact counts by its workflow below)
                q = offer.queue
                if q in removed and offer.contact_id not in counted[q]:
                    counted[q].add(offer.contact_id)
                    _add(out.offered, q)
            for batch in _batches(queues):
                live.update(await store.list_contacts(tenant, batch, []))
            live.update(await store.list_contacts(tenant, [], [], callbacks=True))
            for batch in _batches(agents):
                live.update(await store.list_contacts(tenant, [], batch))
            for batch in _batches(sorted(live)):
                for cid, ahead in (await store.workflow_queues(tenant, batch)).items():
                    for q in ahead:
                        if q in removed and cid not in counted[q]:
                            counted[q].add(cid)
                            _add(out.ahead, q)
        return out

    async def _offers(self, store: Store, tenant: str, agents: list[str]) -> list[PendingOffer]:
        """Every pending offer of the tenant, read from each agent's: a reload is rare, and
        this keeps the offer scripts as they are."""
        offers: list[PendingOffer] = []
        # (a batch at a time: Redis pipelines them on one connection, where one read after
        # another would be 10,000 round trips for 10,000 agents)
        for batch in _batches(agents):
            for pending in await asyncio.gather(*(store.pending_offers(tenant, a) for a in batch)):
                offers += pending
        return offers

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
        service = self.service()
        removed = _removed(service.config, config)
        try:
            out = await service.reload(self.tenants, config)
        except Exception as exc:  # the store is down: this instance keeps its config
            log.error("config.reload_failed", error=str(exc) or type(exc).__name__)
            return
        log.info("config.reloaded", source="another instance", queues=out.queues, rules=out.rules)
        if removed:
            # this instance routed by the old config until now: what it routed since the
            # announcing instance's check is found here
            try:
                await self._recheck(service, removed, config, "another instance")
            except Exception as exc:
                log.error("config.reload_check_failed", error=str(exc) or type(exc).__name__)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _removed(old: RoutingConfig, new: RoutingConfig) -> set[str]:
    """The queues of ``old`` that ``new`` does not have (removed, or renamed)."""
    return {q.name for q in old.queues} - {q.name for q in new.queues}


def _names(config: RoutingConfig) -> list[str]:
    return [q.name for q in config.queues]
