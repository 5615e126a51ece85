"""RedisStore: the store contract, one Lua script (one round trip, atomic) per transition."""

from __future__ import annotations

import json
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import (
    BusyLoadingError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queues import contract as c_
from queues.contract import (
    CONTACT_RETENTION_DAYS,
    Abandoned,
    Accepted,
    AgentSpec,
    AgentState,
    AgentStateName,
    Completed,
    ContactState,
    EndReason,
    Enqueued,
    NewContact,
    Outcome,
    PendingOffer,
    Presence,
    QueueSnapshot,
    Step,
    Store,
    TimerClaim,
)
from queues.errors import StoreFull, StoreUnavailable
from queues.keys import tenant_prefix
from queues.scripts import sources

_OOM = "OOM command not allowed"
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError, OSError)
_TIMER_SCRIPTS = {
    "o": "timeout_offer",
    "s": "advance_step",
    "w": "end_wrapup",
    "b": "release_callback",
    "i": "sweep_instance",
}


_loads = orjson.loads
_dumps = orjson.dumps


# (steps, offer timeouts) -> their JSON for enqueue_contact.lua and its first step's short
# fields: contacts routed by one rule share them, and encoding them costs more than looking
# them up.
_WIRED: dict[tuple[tuple[Step, ...], tuple[tuple[str, int], ...]], tuple[str, str, str]] = {}
_WIRED_MAX = 1024


def _wire_steps(steps: list[Step], timeouts: dict[str, int]) -> tuple[str, str, str]:
    """The workflow as enqueue_contact.lua reads it (each step with its queues' offer
    timeouts), its first step alone, and that step's queue, offer timeout and timeout as three
    NUL-separated fields when it is one queue and no agents (the common step: the script then
    decodes no JSON), else three empty fields."""
    key = (tuple(steps), tuple(timeouts.items()))
    wired = _WIRED.get(key)
    if wired is None:
        default = timeouts.get("")
        out: list[dict[str, Any]] = []
        for s in steps:
            step = {
                "q": s.queues,
                "t": s.timeout_ms,
                "o": [timeouts.get(q, default) for q in s.queues],
            }
            if s.agents:  # (a step without agents has neither: less for Lua to decode)
                step["a"], step["ao"] = s.agents, s.agent_offer_ms or default
            out.append(step)
        if len(_WIRED) >= _WIRED_MAX:
            _WIRED.clear()
        first = out[0]
        short = "\0\0"
        if len(first["q"]) == 1 and "a" not in first and type(first["o"][0]) is int:
            short = f"{first['q'][0]}\0{first['o'][0]}\0{first['t']}"
        wired = _WIRED[key] = (_dumps(out).decode(), _dumps(first).decode(), short)
    return wired


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class RedisStore(Store):
    """Runs the scripts on one Redis client (a plain client or a cluster client).

    ``retention_days``: how long a contact is kept once it has ended, and its customer's
    history list after the customer's last contact ended (0: for good); Redis expires them.
    """

    def __init__(self, client: Redis, retention_days: int = CONTACT_RETENTION_DAYS) -> None:
        self.client = client
        # (seconds, as the scripts take it: see keep_ended in lib.lua)
        self._keep = str(retention_days * 86400)
        self._scripts = {name: client.register_script(src) for name, src in sources().items()}
        self._shas = {name: script.sha for name, script in self._scripts.items()}
        self._prefixes: dict[str, str] = {}

    async def load_scripts(self) -> int:
        """``SCRIPT LOAD`` every script now, so that no first call pays NOSCRIPT, a load and a
        second round trip; returns how many loaded (a failure leaves the rest to first use)."""
        loaded = 0
        for script in self._scripts.values():
            try:
                await self.client.script_load(script.script)
            except _UNAVAILABLE:
                break
            loaded += 1
        return loaded

    async def upgrade_layout(self, tenant: str) -> tuple[int, int, int]:
        """Bring the tenant's data to the layout the scripts keep (upgrade_layout.lua), once;
        returns (the layout found, the layout now, how many agents it counted again). Run
        before serving: instances sharing a Redis all run the same version."""
        payload, _ = c_.unpack(await self.run("upgrade_layout", tenant))
        return int(payload["from"]), int(payload["to"]), int(payload["agents"])

    def _prefix(self, tenant: str) -> str:
        prefix = self._prefixes.get(tenant)
        if prefix is None:
            prefix = self._prefixes[tenant] = tenant_prefix(tenant)
        return prefix

    async def run(self, name: str, tenant: str, *args: str | int | float) -> list[Any]:
        """Run script ``name`` for a tenant and decode its ``[code, payload, events]`` reply."""
        prefix = self._prefixes.get(tenant) or self._prefix(tenant)
        try:
            try:
                raw = await self.client.evalsha(self._shas[name], 1, prefix, *args)
            except NoScriptError:
                # after SCRIPT FLUSH or a failover: the script loads, and runs, again
                raw = await self._scripts[name](keys=(prefix,), args=args)
        except _UNAVAILABLE as exc:
            # (a client that knows the command was never written says so: see fastredis)
            sent = getattr(exc, "sent", True)
            raise StoreUnavailable(f"redis unavailable: {exc}", sent) from exc
        except ResponseError as exc:
            # at maxmemory Redis refuses a script's first write (so the script wrote nothing):
            # Redis 6.2 reports it inside the script's error, 7 as an OOM error
            if isinstance(exc, OutOfMemoryError) or _OOM in str(exc):
                raise StoreFull("redis is out of memory (maxmemory): nothing was written") from exc
            raise
        try:
            reply: list[Any] = _loads(raw)
        except orjson.JSONDecodeError:
            # documents go out as stored: one orjson cannot read (NaN, a huge integer)
            reply = json.loads(raw)
        return reply

    async def enqueue(self, tenant: str, contact: NewContact, now: int) -> Outcome[Enqueued]:
        # One NUL-joined argument (see enqueue_contact.lua): each argument costs the client
        # about a microsecond to pack. The document, taken whole, comes last.
        steps, first, short = _wire_steps(contact.steps, contact.offer_timeouts_ms)
        idem = contact.idempotency_key
        if idem:
            idem = f"{contact.idempotency_hash}|{contact.idempotency_ttl_s}|{idem}"
        head = (
            f"{now}\0{contact.id}\0{idem}\0{contact.channel}\0{contact.capacity_channel}\0"
            f"{contact.sort_key_ms}\0{contact.sl_threshold_ms}\0{contact.customer_id}\0"
            f"{contact.home_queue}\0{short}\0{steps}\0{first}\0"
            f"{contact.view}\0"
        )
        if head.count("\0") != 15:
            raise ValueError(f"contact {contact.id!r}: a field contains NUL")
        reply = await self.run("enqueue_contact", tenant, head + contact.doc)
        payload, ev = c_.unpack(reply, contact=contact.id)
        return Outcome(Enqueued(c_.contact_state(payload["contact"]), payload["replay"]), ev)

    async def accept(
        self, tenant: str, reservation_id: str, agent_id: str | None, now: int
    ) -> Outcome[Accepted]:
        reply = await self.run("accept_reservation", tenant, now, reservation_id, agent_id or "")
        return c_.accepted(reply, reservation_id)

    async def reject(
        self, tenant: str, reservation_id: str, agent_id: str | None, now: int
    ) -> Outcome[str]:
        reply = await self.run("reject_reservation", tenant, now, reservation_id, agent_id or "")
        return c_.rejected(reply, reservation_id)

    async def abandon(
        self, tenant: str, contact_id: str, now: int, why: EndReason = "abandoned"
    ) -> Outcome[Abandoned]:
        reply = await self.run("abandon_contact", tenant, now, contact_id, why, self._keep)
        return c_.abandoned(reply, contact_id)

    async def complete(
        self,
        tenant: str,
        contact_id: str,
        agent_id: str | None,
        wrap_up_ms: int,
        disposition: str,
        now: int,
    ) -> Outcome[Completed]:
        reply = await self.run(
            "complete_contact",
            tenant,
            now,
            contact_id,
            agent_id or "",
            wrap_up_ms,
            disposition,
            self._keep,
        )
        return c_.completed(reply, contact_id)

    async def request_callback(
        self, tenant: str, contact_id: str, number: str, not_before: int, now: int
    ) -> Outcome[ContactState]:
        reply = await self.run("request_callback", tenant, now, contact_id, number, not_before)
        return c_.contact_outcome(reply, contact_id)

    async def upsert_agent(
        self, tenant: str, spec: AgentSpec, now: int
    ) -> Outcome[tuple[AgentState, bool]]:
        reply = await self.run(
            "upsert_agent",
            tenant,
            now,
            spec.id,
            spec.doc,
            _compact(spec.capacity),
            _compact([list(m) for m in spec.memberships]),
            _compact(spec.exclusive),
        )
        return c_.agent_outcome(reply, spec.id, "created")

    async def set_agent_state(
        self, tenant: str, agent_id: str, state: AgentStateName, now: int
    ) -> Outcome[tuple[AgentState, bool]]:
        if state == "offline":  # (rescinds offers: a script of its own, see agent_offline.lua)
            reply = await self.run("agent_offline", tenant, now, agent_id)
        else:
            reply = await self.run("set_agent_state", tenant, now, agent_id, state)
        return c_.agent_outcome(reply, agent_id, "changed")

    async def socket_opened(
        self, tenant: str, agent_id: str, instance: str, sockets: int, now: int, timeout_ms: int
    ) -> Outcome[Presence]:
        reply = await self.run(
            "socket_opened", tenant, now, agent_id, instance, sockets, timeout_ms
        )
        return c_.presence(reply, agent=agent_id)

    async def socket_closed(
        self, tenant: str, agent_id: str, instance: str, sockets: int, now: int
    ) -> Outcome[Presence]:
        reply = await self.run("socket_closed", tenant, now, agent_id, instance, sockets)
        return c_.presence(reply, agent=agent_id)

    async def instance_beat(
        self,
        tenant: str,
        instance: str,
        now: int,
        timeout_ms: int,
        sockets: dict[str, int] | None = None,
    ) -> Outcome[Presence]:
        sync = "" if sockets is None else _compact(sockets)
        reply = await self.run("instance_beat", tenant, now, instance, timeout_ms, sync)
        return c_.presence(reply)

    async def claim_timers(self, tenant: str, now: int, limit: int, lease_ms: int) -> TimerClaim:
        return c_.timer_claim(await self.run("claim_timers", tenant, now, limit, lease_ms))

    async def fire_timer(self, tenant: str, timer: str, now: int) -> Outcome[bool]:
        kind, args = c_.parse_timer(timer)
        if kind == "w":  # (the contact ends: see keep_ended)
            args = [*args, self._keep]
        return c_.fired(await self.run(_TIMER_SCRIPTS[kind], tenant, now, *args))

    async def contact_status(self, tenant: str, contact_id: str) -> ContactState:
        reply = await self.run("contact_status", tenant, contact_id)
        return c_.contact_outcome(reply, contact_id).value

    async def agent_status(self, tenant: str, agent_id: str) -> AgentState:
        payload, _ = c_.unpack(await self.run("agent_status", tenant, agent_id), agent=agent_id)
        return c_.agent_state(agent_id, payload["agent"])

    async def queue_snapshot(self, tenant: str, queues: list[str], now: int) -> list[QueueSnapshot]:
        reply = await self.run(
            "queue_snapshot", tenant, now, _compact(queues), _compact(c_.CAPACITY_CHANNELS)
        )
        return c_.snapshots(reply)

    async def list_agents(self, tenant: str) -> list[tuple[str, dict[str, Any], dict[str, int]]]:
        return c_.agent_list(await self.run("list_agents", tenant))

    async def pending_offers(self, tenant: str, agent_id: str) -> list[PendingOffer]:
        return c_.pending_offers(await self.run("agent_offers", tenant, agent_id), agent_id)

    async def list_contacts(
        self, tenant: str, queues: list[str], agents: list[str], callbacks: bool = False
    ) -> list[str]:
        reply = await self.run(
            "list_contacts", tenant, _compact(queues), _compact(agents), "1" if callbacks else "0"
        )
        return c_.contact_ids(reply)

    async def workflow_queues(self, tenant: str, contact_ids: list[str]) -> dict[str, list[str]]:
        return c_.workflows(await self.run("read_workflows", tenant, _compact(contact_ids)))

    async def contact_view(self, tenant: str, contact_id: str) -> str | None:
        return c_.view_text(await self.run("read_view", tenant, contact_id))

    async def replace_view(self, tenant: str, contact_id: str, old: str, new: str) -> bool:
        return c_.view_replaced(await self.run("replace_view", tenant, contact_id, old, new))
