"""Estimated-wait accuracy: predicted wait at arrival against the wait each contact then had.

A scripted day through the real routing path: ``router.engine.Engine`` decides and enqueues
into a ``MemoryStore`` (the Lua scripts mirrored in Python) on a manual clock. One voice queue,
``agents`` agents, Poisson arrivals at ``load`` x the agents' capacity, exponential handle times
and, optionally, exponential patience. Agents accept every offer at once. With ``--chat N``
the contacts are chats and each agent takes N at once, each chat handled as if alone (the
handle time does not grow with the chats an agent holds).

At each arrival the contact gets the estimate the server would show (``QueueStats`` over a
fresh snapshot: today's AHT from the store's counters, position and staffed agents from the
enqueue reply); a contact offered at once is shown no estimate and is predicted 0. When it is
answered, its actual wait is known. Other estimators are scored on the same arrivals.

    python -m tests.ops.ewt_eval --contacts 20000 --json ewt.json
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from config.routing import load_routing
from queues.contract import Event
from queues.errors import ContactNotWaiting
from queues.memory import MemoryStore
from router.clock import ManualClock
from router.engine import Engine, cel_views
from router.stats import QueueStats, gamma_median_factor

TENANT = "eval"
QUEUE = "q"
DAY_MS = 86_400_000
#: a Monday 00:00 UTC, so the store's per-day counters start empty with the run
START_MS = 1_700_438_400_000

#: estimator name -> f(position, the capacity staffed (agents, for calls), aht seconds, today's
#: ASA or None) -> seconds
Estimator = Callable[[int, int, float, float | None], float]
ESTIMATORS: dict[str, Estimator] = {
    # the k-th departure of n busy agents: mean of Gamma(k, n / AHT)
    "mean k*AHT/n": lambda k, n, aht, asa: k * aht / n,
    # the same distribution's median, which minimises the absolute error
    "median (k-1/3)*AHT/n": lambda k, n, aht, asa: gamma_median_factor(k) * aht / n,
    # position-blind: today's average speed of answer of the queue
    "today's ASA": lambda k, n, aht, asa: asa or 0.0,
}

#: the mean with the true AHT instead of the measured one: what a perfect AHT would give
ORACLE = "mean, true AHT (oracle)"
#: with chats: the mean over the agents staffed rather than their capacity (the server's
#: estimate until 2026-11-24)
BY_AGENTS = "mean k*AHT/agents"


@dataclass
class EwtResult:
    contacts: int
    agents: int
    load: float
    aht_seconds: float
    patience_seconds: float | None
    seed: int
    chat: int = 0  # chats each agent takes at once; 0: calls
    answered: int = 0
    abandoned: int = 0
    queued_answered: int = 0  # answered contacts that were shown an estimate
    mean_wait_seconds: float = 0.0
    #: estimator -> MAE (s) over answered contacts that were shown an estimate
    mae_queued: dict[str, float] = field(default_factory=dict)
    #: estimator -> MAE (s) over every answered contact (immediate offers predicted 0)
    mae_all: dict[str, float] = field(default_factory=dict)
    #: estimator -> mean signed error (s) over queued answered contacts (+: too high)
    bias_queued: dict[str, float] = field(default_factory=dict)
    #: the server's estimate (router.stats) MAE over queued answered contacts
    server_mae_queued: float = 0.0
    #: the queue's estimated-wait gauge (a contact joining now) just before each arrival,
    #: against that arrival's wait: MAE over every answered contact
    gauge_mae_all: float = 0.0


async def evaluate(
    contacts: int = 3000,
    agents: int = 20,
    load: float = 0.9,
    aht_seconds: float = 240.0,
    patience_seconds: float | None = None,
    seed: int = 1,
    chat: int = 0,
) -> EwtResult:
    """Run the scripted day and score every estimator against the actual waits."""
    rng = random.Random(seed)
    config = load_routing(
        {
            "service_levels": {
                "voice": {"threshold_seconds": 20, "target": 0.8},
                "chat": {"threshold_seconds": 60, "target": 0.8},
            },
            "queues": [{"name": QUEUE, "agents": "agent.skills.q >= 1"}],
            "rules": [{"name": "default", "steps": [{"queue": QUEUE}]}],
        }
    )
    store = MemoryStore()
    engine = Engine(config, store)
    clock = ManualClock(START_MS)
    stats = QueueStats(config)
    channel, places = ("chat", chat) if chat else ("voice", 1)
    for i in range(agents):
        doc = {"name": f"a{i}", "skills": {"q": 1}, "capacity": {channel: places}}
        await engine.upsert_agent(TENANT, f"a{i}", doc, clock.now_ms())
        await engine.set_agent_state(TENANT, f"a{i}", "available", clock.now_ms())

    rate_per_ms = load * agents * places / (aht_seconds * 1000)
    heap: list[tuple[int, int, str, str]] = []  # (due ms, tiebreak, kind, contact id)
    order = itertools.count()
    t = START_MS
    for n in range(contacts):
        t += max(1, round(rng.expovariate(rate_per_ms)))
        heapq.heappush(heap, (t, next(order), "arrive", f"c{n}"))
    arrived: dict[str, int] = {}
    predicted: dict[str, dict[str, float] | None] = {}
    server: dict[str, float] = {}
    gauge: dict[str, float] = {}
    waits: dict[str, float] = {}
    abandoned = 0

    async def take(events: list[Event]) -> None:
        for ev in events:
            if ev.get("t") != "offer":
                continue
            now = clock.now_ms()
            await store.accept(TENANT, ev["r"], ev["a"], now)
            waits[ev["c"]] = (now - arrived[ev["c"]]) / 1000
            handle = max(1, round(rng.expovariate(1 / (aht_seconds * 1000))))
            heapq.heappush(heap, (now + handle, next(order), "complete", ev["c"]))

    while heap:
        due, _, kind, cid = heapq.heappop(heap)
        clock.ms = due
        if kind == "arrive":
            arrived[cid] = due
            before = (await store.queue_snapshot(TENANT, [QUEUE], due))[0]
            stats.update(TENANT, [before], due)
            gauge[cid] = stats.render(TENANT, before, due).estimated_wait_seconds or 0.0
            cview, uview = cel_views({"channel": channel}, None)
            decision = engine.decide(cview, uview, due)
            doc = {"id": cid, "channel": channel, "customer": {"segment": decision.segment}}
            record = engine.new_contact(cid, decision, channel, doc, {}, due)
            out = await engine.route(TENANT, record, due)
            state = out.value.contact
            if state.status == "queued" and state.position is not None:
                snap = (await store.queue_snapshot(TENANT, [QUEUE], due))[0]
                stats.update(TENANT, [snap], due)
                aht = stats.aht(TENANT, QUEUE)
                answered = snap.stats.get("answered", 0)
                asa = snap.stats.get("wait_ms", 0) / answered / 1000 if answered else None
                # (n: the capacity staffed on the contact's line, agents for calls)
                k, n = state.position, state.lines[0][2]
                guesses = {name: f(k, n, aht, asa) for name, f in ESTIMATORS.items()}
                guesses[ORACLE] = k * aht_seconds / n
                if chat:
                    guesses[BY_AGENTS] = k * aht / state.staffed
                predicted[cid] = guesses
                server[cid] = stats.contact_wait(QUEUE, state.lines, TENANT) or 0.0
            else:
                predicted[cid] = None
            await take(out.events)
            if patience_seconds:
                patience = max(1, round(rng.expovariate(1 / (patience_seconds * 1000))))
                heapq.heappush(heap, (due + patience, next(order), "abandon", cid))
        elif kind == "complete":
            done = await store.complete(TENANT, cid, None, 0, "", due)
            await take(done.events)
        elif cid not in waits:
            try:
                gone = await store.abandon(TENANT, cid, due)
            except ContactNotWaiting:
                continue
            abandoned += 1
            await take(gone.events)

    result = EwtResult(contacts, agents, load, aht_seconds, patience_seconds, seed, chat)
    result.answered = len(waits)
    result.abandoned = abandoned
    result.mean_wait_seconds = sum(waits.values()) / max(1, len(waits))
    queued = [cid for cid in waits if predicted[cid] is not None]
    result.queued_answered = len(queued)
    for name in [*ESTIMATORS, ORACLE, *([BY_AGENTS] if chat else [])]:
        errs = [(predicted[cid] or {})[name] - waits[cid] for cid in queued]
        everyone = [
            (predicted[cid] or {}).get(name, 0.0) - waits[cid] if predicted[cid] else -waits[cid]
            for cid in waits
        ]
        result.mae_queued[name] = _mean_abs(errs)
        result.bias_queued[name] = sum(errs) / max(1, len(errs))
        result.mae_all[name] = _mean_abs(everyone)
    result.server_mae_queued = _mean_abs([server[cid] - waits[cid] for cid in queued])
    result.gauge_mae_all = _mean_abs([gauge[cid] - waits[cid] for cid in waits])
    return result


def _mean_abs(values: list[float]) -> float:
    return sum(abs(v) for v in values) / len(values) if values else math.nan


def _print(r: EwtResult) -> None:
    print(
        f"{r.contacts} {'chats' if r.chat else 'contacts'}, {r.agents} agents"
        f"{f' taking {r.chat} chats each' if r.chat else ''}, load {r.load}, "
        f"AHT {r.aht_seconds} s, patience {r.patience_seconds} s, seed {r.seed}: "
        f"{r.answered} answered "
        f"({r.queued_answered} queued first), {r.abandoned} abandoned, "
        f"mean wait {r.mean_wait_seconds:.1f} s"
    )
    print(f"{'estimator':<24}{'MAE queued (s)':>16}{'bias queued (s)':>17}{'MAE all (s)':>13}")
    for name in r.mae_queued:
        print(
            f"{name:<24}{r.mae_queued[name]:>16.1f}{r.bias_queued[name]:>17.1f}"
            f"{r.mae_all[name]:>13.1f}"
        )
    print(f"{'server (router.stats)':<24}{r.server_mae_queued:>16.1f}")
    print(f"{'queue gauge (joining)':<24}{'':>16}{'':>17}{r.gauge_mae_all:>13.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=3000)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--load", type=float, default=0.9)
    parser.add_argument("--aht", type=float, default=240.0)
    parser.add_argument("--patience", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chat", type=int, default=0, help="chats, this many per agent at once")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args(argv)
    result = asyncio.run(
        evaluate(
            args.contacts, args.agents, args.load, args.aht, args.patience, args.seed, args.chat
        )
    )
    _print(result)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(asdict(result), f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
