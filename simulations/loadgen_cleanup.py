"""Leaving the server as the load test found it, and finding it so.

At the end of a run (after Ctrl-C or a failure too) the simulated agents stop taking offers,
complete at once what they hold and go offline, which withdraws the offers still pending
(``SimAgent.finish``). Then, as the admin over REST, the contacts an agent accepted but could
not complete (its socket failed) are completed, and the run's other contacts, still waiting or
offered, are cancelled: the gateway withdrawing them, not customers abandoning, so they count
against no service level.

A run that dies before that (SIGKILL, a crash) leaves its agents holding contacts and its
contacts in line, and the next run would start on agents at capacity. The next run sets load
agents left online offline, completes the contacts each holds (the agent's ``contacts``, which
the PUT of the agent answers with; those in wrap-up free the agent by themselves), and cancels
the load test's contacts still waiting or offered, which it finds in its customers' histories
(the PUT of each pool customer answers with the customer's last contacts: the server does not
list waiting contacts). A slot whose agent is still busy after that (a completion failed, or
contacts accepted before the server listed them) moves to a spare id, ``lt-a3-1``, ``lt-a3-2``,
..., whose own leftovers are cleared the same way. The server cannot delete an agent. One load
test per server (tenant) at a time: a second one would take the first one's agents and contacts
for leftovers.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import orjson

from simulations.loadgen_agents import SimAgent
from simulations.loadgen_http import HttpClient
from simulations.loadgen_track import Tracker

#: every agent id the load test uses starts so (``lt-a<slot>``, spares ``lt-a<slot>-<n>``)
AGENT_PREFIX = "lt-a"
#: spare ids tried for a slot whose agent stays busy
SPARES = 9
_CONCURRENCY = 64
_REQUEST_SECONDS = 30.0
#: bound on the whole end-of-run cleanup (a server that stopped answering)
_CLEANUP_SECONDS = 120.0
_WAITING = ("queued", "offered")
#: the capacity a contact of these channels takes, where it is not the channel's own
_CAPACITY = {"callback": "voice"}

Put = Callable[[list[tuple[str, dict[str, Any]]]], Awaitable[list[dict[str, Any]]]]


def home_id(slot: int) -> str:
    return f"{AGENT_PREFIX}{slot}"


class AgentsBusy(RuntimeError):
    """A slot's agent and all its spares stay busy after their contacts were completed."""


@dataclass
class Tidied:
    """What a cleanup did; ``failures`` counts requests that failed (not 404 or 409: a contact
    gone or already past the state asked for is clean)."""

    cancelled: int = 0
    completed: int = 0
    agents_offline: int = 0
    agents_replaced: int = 0
    failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Rest:
    """The cleanup's admin requests, ``_CONCURRENCY`` at a time: on the lean client when there
    is one (cancelling tens of thousands of contacts after a POST-only run), else aiohttp."""

    def __init__(self, http: aiohttp.ClientSession, base: str, lean: HttpClient | None) -> None:
        self.http = http
        self.base = base
        self.lean = lean
        self.gate = asyncio.Semaphore(_CONCURRENCY)

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON body); status 0 when the exchange failed."""
        data = orjson.dumps(body) if body is not None else b""
        try:
            async with self.gate, asyncio.timeout(_REQUEST_SECONDS):
                if self.lean is not None:
                    status, raw = await self.lean.request(method, path, data)
                else:
                    async with self.http.request(method, self.base + path, data=data) as resp:
                        status, raw = resp.status, await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return 0, {}
        try:
            parsed = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            parsed = {}
        return status, parsed if isinstance(parsed, dict) else {}

    async def each(
        self, method: str, paths: Iterable[str], body: dict[str, Any] | None, done: Tidied
    ) -> int:
        """One request per path; returns how many answered 200 (failures go to ``done``)."""
        statuses = await asyncio.gather(*(self.call(method, p, body) for p in paths))
        done.failures += sum(1 for s, _ in statuses if s not in (200, 404, 409))
        return sum(1 for s, _ in statuses if s == 200)

    async def cancel(self, contact_ids: list[str], done: Tidied) -> None:
        """Cancel waiting contacts; stops after a first batch that all answer 404 (a server
        that keeps no contacts, like the benchmark's bare ceiling app)."""
        first = contact_ids[:_CONCURRENCY]
        statuses = await asyncio.gather(
            *(self.call("POST", f"/v1/contacts/{c}/cancel") for c in first)
        )
        done.cancelled += sum(1 for s, _ in statuses if s == 200)
        done.failures += sum(1 for s, _ in statuses if s not in (200, 404, 409))
        if first and all(s == 404 for s, _ in statuses):
            return
        rest = (f"/v1/contacts/{c}/cancel" for c in contact_ids[_CONCURRENCY:])
        done.cancelled += await self.each("POST", rest, None, done)

    async def complete(self, contact_ids: Iterable[str], done: Tidied) -> None:
        """Complete held contacts as the admin, without wrap-up: the agent is free at once."""
        paths = (f"/v1/contacts/{c}/complete" for c in contact_ids)
        done.completed += await self.each("POST", paths, {"wrap_up_seconds": 0}, done)

    async def offline(self, agent_ids: Iterable[str], done: Tidied) -> None:
        paths = (f"/v1/agents/{a}/state" for a in agent_ids)
        done.agents_offline += await self.each("POST", paths, {"state": "offline"}, done)


# ------------------------------------------------------------------------- end of a run


async def leave_clean(rest: Rest, agents: list[SimAgent], tracker: Tracker) -> dict[str, Any]:
    """Agents finish and go offline, held contacts are completed, the rest cancelled.
    Never raises (but for cancellation); returns what it did and how long it took."""
    started = time.perf_counter()
    done = Tidied()
    before = tracker.completed
    try:
        async with asyncio.timeout(_CLEANUP_SECONDS):
            said = await asyncio.gather(*(a.finish(limit=5.0) for a in agents))
            done.completed += tracker.completed - before  # over the agents' own sockets
            done.agents_offline += sum(said)
            await rest.offline([a.id for a, ok in zip(agents, said, strict=True) if not ok], done)
            await rest.complete(tracker.held(), done)
            await rest.cancel(tracker.not_ours(), done)
    except TimeoutError:
        done.failures += 1
    out: dict[str, Any] = done.as_dict()
    del out["agents_replaced"]
    return {**out, "seconds": round(time.perf_counter() - started, 3)}


# ------------------------------------------------------------------------ start of a run


@dataclass
class _Leftovers:
    waiting: list[str]  # the load test's contacts queued or offered (from the histories)
    wrapping: dict[str, Counter[str]]  # agent -> capacity channel -> contacts in wrap-up

    @classmethod
    def of(cls, customers: Iterable[dict[str, Any]]) -> _Leftovers:
        waiting: dict[str, None] = {}
        for customer in customers:
            for item in customer.get("history") or []:
                cid = item.get("contact_id")
                if isinstance(cid, str) and item.get("status") in _WAITING:
                    waiting[cid] = None
        return cls(list(waiting), {})

    async def release(
        self, rest: Rest, ids: list[str], agents: list[dict[str, Any]], done: Tidied
    ) -> None:
        """Complete the contacts each agent holds (its ``contacts``, as the PUT answered);
        note those already in wrap-up, which free their agent by themselves."""
        held = [(aid, cid) for aid, agent in zip(ids, agents, strict=True) for cid in _held(agent)]
        body = {"wrap_up_seconds": 0}
        statuses = await asyncio.gather(
            *(rest.call("POST", f"/v1/contacts/{cid}/complete", body) for _, cid in held)
        )
        done.completed += sum(1 for s, _ in statuses if s == 200)
        done.failures += sum(1 for s, _ in statuses if s not in (200, 404, 409))
        # 409: not assigned any more; wrapping, unless it ended since
        late = [pair for pair, (s, _) in zip(held, statuses, strict=True) if s == 409]
        now = await asyncio.gather(*(rest.call("GET", f"/v1/contacts/{cid}") for _, cid in late))
        for (aid, _), (status, contact) in zip(late, now, strict=True):
            if status == 200 and contact.get("status") == "wrapping":
                channel = str(contact.get("channel", ""))
                self.wrapping.setdefault(aid, Counter())[_CAPACITY.get(channel, channel)] += 1

    def busy(self, agent: dict[str, Any]) -> bool:
        """Load beyond contacts in wrap-up (which free the agent by themselves)."""
        ending = self.wrapping.get(agent.get("id", ""), Counter())
        return any(n > ending[ch] for ch, n in (agent.get("load") or {}).items())


def _held(agent: dict[str, Any]) -> list[str]:
    """The contacts an agent holds, as its resource lists them."""
    listed = agent.get("contacts")
    return [cid for cid in listed if isinstance(cid, str)] if isinstance(listed, list) else []


async def _still_busy(
    rest: Rest, ids: list[str], replies: list[dict[str, Any]], left: _Leftovers, done: Tidied
) -> list[int]:
    """Indexes into ``ids`` whose agent is busy now (asked again: the replies are older)."""
    loaded = [n for n, reply in enumerate(replies) if reply.get("load")]
    now = await asyncio.gather(*(rest.call("GET", f"/v1/agents/{ids[n]}") for n in loaded))
    done.failures += sum(1 for status, _ in now if status != 200)
    return [n for n, (status, agent) in zip(loaded, now, strict=True) if left.busy(agent)]


async def prepare_agents(
    rest: Rest, put: Put, profiles: list[dict[str, Any]], customers: list[dict[str, Any]]
) -> tuple[list[str], dict[str, int]]:
    """PUT one agent per profile and clear what an earlier run left; returns the agent ids
    (``lt-a<slot>``, or a spare where that one stays busy) and what was recovered. Raises
    ``AgentsBusy``."""
    done = Tidied()
    left = _Leftovers.of(customers)
    ids = [home_id(slot) for slot in range(len(profiles))]
    replies = await put([(f"/v1/agents/{a}", p) for a, p in zip(ids, profiles, strict=True)])
    await rest.offline([a for a, r in zip(ids, replies, strict=True) if _online(r)], done)
    await rest.cancel(left.waiting, done)
    await left.release(rest, ids, replies, done)
    slots = await _still_busy(rest, ids, replies, left, done)
    for spare in range(1, SPARES + 1):
        if not slots:
            break
        for slot in slots:
            ids[slot] = f"{home_id(slot)}-{spare}"
        tried = [ids[slot] for slot in slots]
        replies = await put([(f"/v1/agents/{ids[s]}", profiles[s]) for s in slots])
        await rest.offline([a for a, r in zip(tried, replies, strict=True) if _online(r)], done)
        await left.release(rest, tried, replies, done)
        slots = [slots[n] for n in await _still_busy(rest, tried, replies, left, done)]
    if slots:
        raise AgentsBusy(
            f"agent {home_id(slots[0])} and its {SPARES} spares are all still busy after "
            "their contacts were completed (a completion failed, or they hold contacts accepted "
            "before the server listed them); complete those, or run against a fresh server"
        )
    done.agents_replaced = sum(1 for slot, a in enumerate(ids) if a != home_id(slot))
    return ids, done.as_dict()


def _online(agent: dict[str, Any]) -> bool:
    return bool(agent.get("state", "offline") != "offline")
