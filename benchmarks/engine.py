"""Routing-core benchmark (issue 2): decisions per second of MemoryStore and RedisStore.

A decision is one store call (for Redis one Lua script, one round trip), of two kinds:

* ``enqueue``: a voice contact arrives and reserves a free voice agent at once;
* ``available``: an email agent goes available and takes the best of the email contacts waiting
  across its queues.

A tenant holds ``agents`` agents in ``queues`` queues (four memberships each, strategies mixed):
half are voice agents, all available; half are email agents, all offline. ``contacts`` email
contacts wait, spread evenly over the queues. Only the decision call is timed; untimed calls
put the state back (accept + complete after ``enqueue``; offline after ``available``, which
requeues the contact with its place), so every decision sees the case's sizes.

Every case is measured beside the smallest case (another tenant of the same store), in
alternating blocks, together with a trivial EVALSHA (``return 1``) on the same client: the
ceiling of any one-round-trip call. The client is the one ``switchboard serve`` builds (scripts
on one pipelined connection); ``--client redis-py`` runs both on a plain redis-py client. Cost
growth and the Redis ratio are therefore ratios taken in the same minute, which matters on a
machine whose speed drifts. Cases grow in place along a chain (agents or contacts are added),
so 100,000 contacts are loaded only twice per store.
Ratios are printed as ``mean/median``: preemption by other work on the machine lands in means.

    python -m benchmarks.engine            # the full grid, 3 to 6 minutes
    python -m benchmarks.engine --quick    # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from time import perf_counter_ns
from typing import Any

from redis.asyncio import Redis

from benchmarks.machine import machine_info
from queues.contract import AgentSpec, NewContact, Step, Store
from queues.embedded import EmbeddedRedis, find_redis_server, server_version
from queues.keys import tenant_prefix
from queues.memory import MemoryStore
from queues.redis_store import RedisStore
from router.fastredis import serve_client
from router.serve import event_loop

RESULTS = Path(__file__).resolve().parent / "results"
MEMBERSHIPS = 4
STRATEGIES = ("longest_idle", "most_skilled", "least_busy")
PRIORITIES_MS = (0, 0, 0, 45_000, 120_000)  # standard, gold, platinum wait credit
SETUP_PARALLEL = 32  # concurrent setup calls on Redis (untimed)
TARGET_MEMORY_RATE = 50_000.0
#: the Redis client of a run: ``serve`` is the one ``switchboard serve`` builds (its scripts on
#: one pipelined connection); ``redis-py`` a plain redis-py client, as earlier runs used
CLIENTS: dict[str, Callable[[str], Redis]] = {
    "serve": serve_client,
    "redis-py": lambda url: Redis.from_url(url),
}
TARGET_REDIS_RATIO = 0.5
TARGET_GROWTH = 2.0
PACKAGES = ("redis", "hiredis", "orjson", "sortedcontainers", "uvloop", "switchboard")
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Case:
    agents: int
    contacts: int
    queues: int


SMALLEST = Case(100, 1_000, 10)
CHAINS: tuple[tuple[Case, ...], ...] = (
    (Case(1_000, 1_000, 10), Case(10_000, 1_000, 10), Case(10_000, 100_000, 10)),
    (Case(100, 1_000, 1_000), Case(100, 100_000, 1_000), Case(10_000, 100_000, 1_000)),
)
QUICK_CHAINS: tuple[tuple[Case, ...], ...] = ((Case(300, 3_000, 10),), (Case(100, 1_000, 100),))


@dataclass(slots=True)
class World:
    """One tenant grown to a case, and the virtual clock driving it (ms, one tick per call)."""

    store: Store
    tenant: str
    queues: list[str]
    rng: random.Random
    agents: int = 0
    contacts: int = 0
    voice: list[tuple[str, list[str]]] = field(default_factory=list)  # (agent, its queues)
    email: list[str] = field(default_factory=list)
    now: int = 1_800_000_000_000
    seq: int = 0

    @classmethod
    def new(cls, store: Store, tenant: str, queues: int) -> World:
        return cls(store, tenant, [f"q{i}" for i in range(queues)], random.Random(tenant))

    def tick(self) -> int:
        self.now += 1
        return self.now

    def contact(self, channel: str, queues: list[str], credit_ms: int) -> NewContact:
        self.seq += 1
        cid = f"c{self.seq}"
        doc = {"id": cid, "channel": channel, "language": "en", "intent": "billing"}
        first, overflow = queues[0], queues[1 % len(queues)]
        return NewContact(
            id=cid,
            channel=channel,
            capacity_channel=channel,
            sort_key_ms=self.now - credit_ms,
            steps=[Step((first,), (), 30_000), Step((first, overflow), (), 0)],
            offer_timeouts_ms={"": 15_000, first: 15_000, overflow: 20_000},
            sl_threshold_ms=20_000,
            home_queue=first,
            doc=json.dumps(doc),
            view=json.dumps({**doc, "customer": {"name": "A. Customer", "segment": "gold"}}),
            customer_id=f"cu{self.seq % 5_000}",
        )


async def run_all(calls: Sequence[Callable[[], Awaitable[object]]], parallel: int) -> None:
    """Await every call, ``parallel`` at a time (one connection each on Redis)."""
    pending = iter(calls)

    async def worker() -> None:
        for call in pending:
            await call()

    await asyncio.gather(*(worker() for _ in range(parallel)))


async def grow(world: World, case: Case, parallel: int) -> None:
    """Add agents and waiting email contacts until the tenant is ``case`` (untimed)."""
    if case.queues != len(world.queues) or case.agents < world.agents:
        raise ValueError(f"{case} does not grow from {world.agents} agents in {world.queues}")
    store, tenant, rng = world.store, world.tenant, world.rng
    specs, voice = [], []
    for i in range(world.agents, case.agents):
        channel = "voice" if i % 2 == 0 else "email"
        mine = rng.sample(world.queues, MEMBERSHIPS)
        memberships = [(q, STRATEGIES[int(q[1:]) % 3], float(rng.randint(1, 10))) for q in mine]
        doc = json.dumps({"name": f"Agent {i}", "skills": {"billing": 5}})
        specs.append(AgentSpec(f"a{i}", doc, {channel: 1}, memberships))
        if channel == "voice":
            voice.append((f"a{i}", mine))
        else:
            world.email.append(f"a{i}")
    world.voice += voice
    world.agents = case.agents
    await run_all([partial(store.upsert_agent, tenant, s, world.tick()) for s in specs], parallel)
    ready = [partial(store.set_agent_state, tenant, a, "available", world.tick()) for a, _ in voice]
    await run_all(ready, parallel)
    backlog = [
        world.contact("email", [world.queues[j % case.queues]], rng.choice(PRIORITIES_MS))
        for j in range(world.contacts, case.contacts)
    ]
    world.contacts = max(world.contacts, case.contacts)
    await run_all([partial(store.enqueue, tenant, c, world.tick()) for c in backlog], parallel)


async def enqueue_decisions(world: World, n: int) -> list[int]:
    """Time ``n`` enqueues that each reserve a free agent; accept + complete frees it again."""
    store, tenant, times = world.store, world.tenant, []
    for i in range(n):
        _, queues = world.voice[i % len(world.voice)]
        new = world.contact("voice", queues, PRIORITIES_MS[i % len(PRIORITIES_MS)])
        now = world.tick()
        start = perf_counter_ns()
        out = await store.enqueue(tenant, new, now)
        times.append(perf_counter_ns() - start)
        got = out.value.contact
        if got.status != "offered" or got.reservation_id is None:
            raise RuntimeError(f"enqueue did not reserve an agent: {got}")
        await store.accept(tenant, got.reservation_id, got.agent_id, world.tick())
        await store.complete(tenant, got.id, got.agent_id, 0, "", world.tick())
    return times


async def available_decisions(world: World, n: int) -> list[int]:
    """Time ``n`` agents going available and taking a contact; offline puts it back in line."""
    store, tenant, times = world.store, world.tenant, []
    for i in range(n):
        agent = world.email[i % len(world.email)]
        now = world.tick()
        start = perf_counter_ns()
        out = await store.set_agent_state(tenant, agent, "available", now)
        times.append(perf_counter_ns() - start)
        if len(out.value[0].reservations) != 1:
            raise RuntimeError(f"agent {agent} took {out.value[0].reservations}, not one contact")
        await store.set_agent_state(tenant, agent, "offline", world.tick())
    return times


async def evalsha_decisions(client: Redis, n: int) -> list[int]:
    """Time ``n`` calls of a one-line script: the round trip every decision pays at least.

    Called as ``RedisStore.run`` calls its scripts (``client.evalsha`` with the tenant prefix as
    the one key), so the two sides of the ratio pay the same client code.
    """
    script = client.register_script("return 1")
    key = tenant_prefix("bench")
    await script(keys=[key], args=[])  # loads it
    sha, evalsha = script.sha, client.evalsha
    times = []
    for _ in range(n):
        start = perf_counter_ns()
        await evalsha(sha, 1, key)
        times.append(perf_counter_ns() - start)
    return times


DECISIONS = (("enqueue", enqueue_decisions), ("available", available_decisions))
Samples = dict[tuple[str, str], list[int]]


async def interleave(worlds: list[World], client: Redis | None, rounds: int, block: int) -> Samples:
    """(tenant, decision) -> times, in alternating blocks so drift hits every tenant alike."""
    for world in worlds:
        for _, measure in DECISIONS:
            await measure(world, max(block // 5, 10))  # warm-up
    # The setup's objects are frozen, as serve freezes its survivors (SWITCHBOARD_GC_FREEZE):
    # a full collection over 10,000 agents' objects takes 0.1-0.2 s, and one landing in a
    # timed call made that case's mean 4x its median.
    gc.collect()
    gc.freeze()
    try:
        return await _rounds(worlds, client, rounds, block)
    finally:
        gc.unfreeze()


async def _rounds(worlds: list[World], client: Redis | None, rounds: int, block: int) -> Samples:
    out: Samples = defaultdict(list)
    for r in range(rounds):
        order = worlds if r % 2 == 0 else worlds[::-1]
        for decision, measure in DECISIONS:
            for world in order:
                out[(world.tenant, decision)] += await measure(world, block)
        if client is not None:
            out[("evalsha", "return 1")] += await evalsha_decisions(client, block)
    return out


def row(store: str, decision: str, case: Case, times: list[int]) -> Row:
    mean = statistics.fmean(times) / 1000
    cuts = statistics.quantiles(times, n=100)
    return {
        "store": store,
        "decision": decision,
        **asdict(case),
        "n": len(times),
        "per_s": round(1e6 / mean, 1),
        "per_s_p50": round(1e9 / cuts[49], 1),
        "mean_us": round(mean, 2),
        "p50_us": round(cuts[49] / 1000, 2),
        "p99_us": round(cuts[98] / 1000, 2),
    }


def compare(r: Row, smallest: list[int] | None, base: Row | None) -> Row:
    """Add the in-run ratios: cost over the smallest case's, rate over the trivial EVALSHA's.

    Each comes from means and from medians: on a shared machine, preemption by other work
    lands in the mean, while the median keeps the typical decision.
    """
    r["x_smallest"] = r["x_smallest_p50"] = 1.0
    if smallest is not None:
        small = row("", "", SMALLEST, smallest)
        r["smallest_mean_us"], r["smallest_p50_us"] = small["mean_us"], small["p50_us"]
        r["x_smallest"] = round(r["mean_us"] / small["mean_us"], 3)
        r["x_smallest_p50"] = round(r["p50_us"] / small["p50_us"], 3)
    if base is not None:
        r["x_evalsha"] = round(base["mean_us"] / r["mean_us"], 3)
        r["x_evalsha_p50"] = round(base["p50_us"] / r["p50_us"], 3)
    return r


async def bench_store(
    label: str,
    make_store: Callable[[], Awaitable[Store]],
    client: Redis | None,
    chains: Sequence[Sequence[Case]],
    rounds: int,
    block: int,
) -> list[Row]:
    """The smallest case alone (no chains) or beside each case of each chain."""
    parallel = 1 if client is None else SETUP_PARALLEL
    pooled: Samples = defaultdict(list)
    rows: list[Row] = []
    for chain in chains or [()]:
        store = await make_store()
        smallest = World.new(store, "smallest", SMALLEST.queues)
        await grow(smallest, SMALLEST, parallel)
        world = World.new(store, "bench", chain[0].queues if chain else 1)
        cases: list[Case | None] = [*chain] if chain else [None]
        for case in cases:
            if case is not None:
                await grow(world, case, parallel)
            worlds = [smallest] if case is None else [smallest, world]
            samples = await interleave(worlds, client, rounds, block)
            for key, times in samples.items():
                pooled[key] += times
            if case is None:
                continue
            base: Row | None = None
            if client is not None:
                base = row(f"evalsha-{label}", "return 1", case, samples[("evalsha", "return 1")])
                rows.append(base)
                print(_line(base), file=sys.stderr, flush=True)
            for decision, _ in DECISIONS:
                r = row(label, decision, case, samples[("bench", decision)])
                rows.append(compare(r, samples[("smallest", decision)], base))
                print(_line(r), file=sys.stderr, flush=True)
    head: list[Row] = []
    if client is not None:
        head.append(row(f"evalsha-{label}", "return 1", SMALLEST, pooled[("evalsha", "return 1")]))
    pooled_base = head[0] if head else None
    for decision, _ in DECISIONS:
        r = row(label, decision, SMALLEST, pooled[("smallest", decision)])
        head.append(compare(r, None, pooled_base))
    for r in head:
        print(_line(r), file=sys.stderr, flush=True)
    return head + rows


async def bench(
    chains: Sequence[Sequence[Case]],
    rounds: int,
    block: int,
    redis_block: int,
    fsync: bool,
    client_kind: str = "serve",
) -> list[Row]:
    async def memory() -> Store:
        gc.collect()
        return MemoryStore()

    rows = await bench_store("memory", memory, None, chains, rounds, block)
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        servers = [("redis", EmbeddedRedis(Path(tmp) / "plain", persistent=False), chains)]
        if fsync:
            aof = EmbeddedRedis(Path(tmp) / "aof", persistent=True, fsync="always")
            servers.append(("redis-aof-always", aof, ()))
        for label, server, server_chains in servers:
            server.start()
            client = CLIENTS[client_kind](server.url)

            async def redis(client: Redis = client) -> Store:
                await client.flushall()
                return RedisStore(client)

            try:
                rows += await bench_store(label, redis, client, server_chains, rounds, redis_block)
            finally:
                await client.aclose()
                server.stop()
    return rows


def targets(rows: list[Row], largest: Case) -> dict[str, Any]:
    """The issue's three targets from this run's rows, judged on means and on medians."""
    out: dict[str, Any] = {"smallest": asdict(SMALLEST), "largest": asdict(largest)}
    for stat, sfx in (("mean", ""), ("p50", "_p50")):
        memory = min(r["per_s" + sfx] for r in rows if r["store"] == "memory")
        ratio = min(r["x_evalsha" + sfx] for r in rows if r["store"] == "redis")
        growth: dict[str, dict[str, float]] = {}
        for store in ("memory", "redis"):
            for decision, _ in DECISIONS:
                mine = [r for r in rows if r["store"] == store and r["decision"] == decision]
                top = next(
                    r for r in mine if Case(r["agents"], r["contacts"], r["queues"]) == largest
                )
                growth[f"{store}/{decision}"] = {
                    "largest_over_smallest": top["x_smallest" + sfx],
                    "worst_over_smallest": max(r["x_smallest" + sfx] for r in mine),
                }
        worst = max(g["largest_over_smallest"] for g in growth.values())
        out[stat] = {
            "memory_min_per_s": memory,
            "memory_met": memory >= TARGET_MEMORY_RATE,
            "redis_min_x_evalsha": ratio,
            "redis_met": ratio >= TARGET_REDIS_RATIO,
            "growth": growth,
            "growth_met": worst <= TARGET_GROWTH,
        }
    return out


def machine(binary: str) -> dict[str, Any]:
    return {**machine_info(PACKAGES), "redis_server": server_version(binary)}


HEADER = (
    f"{'store':<25}{'decision':<10}{'agents':>7}{'contacts':>9}{'queues':>7}"
    f"{'per s':>9}{'mean µs':>9}{'p50 µs':>8}{'p99 µs':>8}{'x evalsha':>11}{'x smallest':>11}"
)


def _line(r: Row) -> str:
    ratio = f"{r['x_evalsha']:.2f}/{r['x_evalsha_p50']:.2f}" if "x_evalsha" in r else ""
    growth = f"{r['x_smallest']:.2f}/{r['x_smallest_p50']:.2f}" if "x_smallest" in r else ""
    return (
        f"{r['store']:<25}{r['decision']:<10}{r['agents']:>7}{r['contacts']:>9}{r['queues']:>7}"
        f"{r['per_s']:>9.0f}{r['mean_us']:>9.1f}{r['p50_us']:>8.1f}{r['p99_us']:>8.1f}"
        f"{ratio:>11}{growth:>11}"
    )


def _loop(name: str) -> asyncio.AbstractEventLoop:
    """A new event loop of the kind ``serve`` would run for ``name``."""
    return event_loop(name) or asyncio.new_event_loop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Routing-core decisions per second (issue 2).")
    parser.add_argument("--quick", action="store_true", help="small cases, few decisions")
    parser.add_argument("--json", type=Path, default=None, help="results file")
    parser.add_argument("--no-fsync", action="store_true", help="skip the appendfsync-always run")
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="serve",
        help="the Redis client: serve's own (default) or a plain redis-py one",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the event loop, as serve's SWITCHBOARD_EVENT_LOOP (auto: uvloop when installed)",
    )
    args = parser.parse_args(argv)
    chains, rounds, block, redis_block = (
        (QUICK_CHAINS, 2, 100, 100) if args.quick else (CHAINS, 5, 1_000, 300)
    )
    out = args.json or RESULTS / ("engine-quick.json" if args.quick else "engine.json")
    started, load_before = datetime.now(UTC), os.getloadavg()
    print(HEADER, file=sys.stderr)
    fsync = not (args.quick or args.no_fsync)
    with asyncio.Runner(loop_factory=partial(_loop, args.loop)) as runner:
        loop_kind = type(runner.get_loop()).__module__.split(".")[0]  # uvloop or asyncio
        rows = runner.run(bench(chains, rounds, block, redis_block, fsync, args.client))
    largest = max(
        (c for chain in chains for c in chain), key=lambda c: c.agents * c.contacts * c.queues
    )
    result = {
        "benchmark": "engine",
        "date": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "quick": args.quick,
        "method": {
            "redis_client": args.client,
            "event_loop": loop_kind,
            "memberships_per_agent": MEMBERSHIPS,
            "rounds": rounds,
            "block": {"memory": block, "redis": redis_block},
            "smallest": asdict(SMALLEST),
            "chains": [[asdict(c) for c in chain] for chain in chains],
        },
        "machine": machine(find_redis_server()),
        # other work on the machine moves absolute figures; the in-run ratios resist it
        "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "rows": rows,
        "targets": targets(rows, largest),
    }
    print("\n" + HEADER)
    for r in rows:
        print(_line(r))
    print(json.dumps(result["targets"], indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
