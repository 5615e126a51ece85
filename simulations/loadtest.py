"""``switchboard loadtest`` (api-v1 §7): drive a running server and report latency percentiles.

Setup creates the customers (one per pool slot, segments by value) and N agents with an admin
token, opens one websocket per agent (``--ws-url`` may name another instance than ``--url``, to
test two instances on one Redis) and sets them available. Then Poisson arrivals, scheduled in
advance, are POSTed open-loop at the fixed rate; agents accept, handle and complete what they
are offered. After the arrivals a drain waits for the last offers; contacts never offered are
looked up with ``GET /v1/contacts/{id}``: still queued is *unrouted*, anything else is lost.
Then the run leaves the server as it found it (``loadgen_cleanup``): what the agents hold is
completed, they go offline, and the run's contacts still waiting are cancelled; a run that
finds leftovers of one that died clears them first.

Exit code: 0 clean; 1 if any contact was lost, offered twice at once, any request failed, the
cleanup failed, or more than ``max_unrouted`` (default 1 %) of the contacts sent were never
offered to an agent by the end of the drain (not checked without agents on sockets); 2 if the
run could not start (bad arguments, server unreachable, setup refused).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import math
import random
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
import orjson

from simulations.loadgen_agents import Behaviour, SimAgent, connect, disconnect
from simulations.loadgen_cleanup import AgentsBusy, Rest, leave_clean, prepare_agents
from simulations.loadgen_clock import Sleeper
from simulations.loadgen_http import HttpClient
from simulations.loadgen_plan import (
    Arrival,
    Customers,
    MixInvalid,
    agent_profile,
    arrivals,
    customers,
    parse_mix,
)
from simulations.loadgen_report import Progress, failed_checks, format_report, summarise
from simulations.loadgen_track import Latency, Tracker, clock
from simulations.output import write_text

_SETUP_CONCURRENCY = 64
_POST_TIMEOUT = 30.0
#: the share of the contacts sent that may end the drain never offered to an agent
MAX_UNROUTED = 0.01
# Bounds that keep the loader's own plan in memory: every arrival's request is built before the
# run (a few hundred bytes each), and customers and agents are created one request each.
MAX_ARRIVALS = 5_000_000
MAX_CUSTOMERS = 1_000_000
MAX_AGENTS = 100_000


@dataclass
class LoadConfig:
    url: str
    token: str
    rate: float
    agents: int
    duration: float
    ws_url: str = ""
    seed: int = 1
    mix: dict[str, dict[str, float]] = field(default_factory=lambda: parse_mix(None))
    customers: int = 1000
    behaviour: Behaviour = field(default_factory=Behaviour)
    #: sockets to open; the rest of the agents are created but stay offline
    sockets: int | None = None
    drain_seconds: float = 10.0
    max_unrouted: float = MAX_UNROUTED
    connections: int = 256
    progress: bool = True
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    #: called with "start" just before the first arrival and "end" after the drain
    phase: Callable[[str], None] | None = None
    #: arrivals on the lean HTTP client (``loadgen_http``) and agents on the lean websocket
    #: client (``loadgen_ws``); False: on aiohttp's clients, which cost the loader several times
    #: more CPU per contact (a ceiling it drives is then the loader's rather than the server's)
    lean_http: bool = True


class SetupFailed(RuntimeError):
    """The server refused or could not be reached while preparing the run."""


async def _put_all(
    http: aiohttp.ClientSession, base: str, items: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """PUT each item; returns the resources the server answers with, in order."""
    gate = asyncio.Semaphore(_SETUP_CONCURRENCY)

    async def one(path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with gate, http.put(base + path, data=orjson.dumps(body)) as resp:
            if resp.status >= 300:
                raise SetupFailed(f"PUT {path}: {resp.status} {(await resp.text())[:300]}")
            reply: dict[str, Any] = orjson.loads(await resp.read())
            return reply

    return list(await asyncio.gather(*(one(path, body) for path, body in items)))


Send = Callable[[Arrival], Awaitable[tuple[int, bytes]]]


def _sender(http: aiohttp.ClientSession, lean: HttpClient | None, url: str) -> Send:
    """POST one arrival: on the lean client when the server is plain http, else aiohttp."""
    if lean is not None:
        path = urlsplit(url).path

        async def lean_post(arrival: Arrival) -> tuple[int, bytes]:
            headers = {"Idempotency-Key": arrival.key}
            async with asyncio.timeout(_POST_TIMEOUT):
                return await lean.request("POST", path, arrival.body, headers)

        return lean_post

    async def post(arrival: Arrival) -> tuple[int, bytes]:
        headers = {"Idempotency-Key": arrival.key}
        async with http.post(url, data=arrival.body, headers=headers) as r:
            return r.status, await r.read()

    return post


async def _post(send: Send, arrival: Arrival, at: float, tracker: Tracker) -> None:
    tracker.sent += 1
    try:
        status, raw = await send(arrival)
    except TimeoutError:
        tracker.error("timeout")
        return
    except (aiohttp.ClientError, OSError) as exc:
        tracker.error(type(exc).__name__)
        return
    now = clock()
    if status == 201:
        tracker.created(orjson.loads(raw)["id"], at, now)
    elif status == 200:
        tracker.replays += 1
        tracker.error("replayed")
    else:
        tracker.error(f"http {status}")


async def _drive(
    send: Send, cfg: LoadConfig, plan: list[Arrival], tracker: Tracker
) -> tuple[float, Latency]:
    """Send every arrival at its scheduled time; returns (start, lateness of the sends)."""
    lag = Latency()
    pending: set[asyncio.Task[None]] = set()
    start = clock() + 0.05
    progress = Progress(cfg, tracker)
    ticker = asyncio.create_task(progress.run(start))
    sleeper = Sleeper(asyncio.get_running_loop())
    try:
        for arrival in plan:
            at = start + arrival.offset
            await sleeper.sleep_until(at)
            lag.record(clock() - at)
            task = asyncio.create_task(_post(send, arrival, at, tracker))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(set(pending))
    finally:
        if pending:  # interrupted: the cleanup should know every contact created
            await asyncio.wait(set(pending), timeout=_POST_TIMEOUT)
        sleeper.close()
        ticker.cancel()
        progress.close()
    return start, lag


async def _drain(cfg: LoadConfig, tracker: Tracker, agents: list[SimAgent]) -> None:
    """Wait for the last offers, then for the accepts already under way."""
    step = 0.05
    polls = int(cfg.drain_seconds / step)
    for _ in range(polls):
        if all(c in tracker.offered for c in tracker.scheduled):
            break
        await asyncio.sleep(step)
    for _ in range(int((cfg.behaviour.accept_delay[1] + 1.0) / step)):
        answered = len(tracker.accepted) + sum(tracker.accept_failures.values())
        if answered >= len(tracker.offered) and not any(a.waiting for a in agents):
            break
        await asyncio.sleep(step)


async def _stragglers(
    http: aiohttp.ClientSession, base: str, ids: list[str], on_sockets: set[str]
) -> dict[str, int]:
    """Classify contacts no socket was offered: still queued, with an agent we do not hold
    a socket for (routed elsewhere), or lost."""
    counts = {"still_queued": 0, "routed_elsewhere": 0, "lost": 0}
    gate = asyncio.Semaphore(_SETUP_CONCURRENCY)

    async def one(cid: str) -> None:
        async with gate:
            try:
                async with http.get(f"{base}/v1/contacts/{cid}") as resp:
                    body = await resp.json(loads=orjson.loads) if resp.status == 200 else {}
            except aiohttp.ClientError:
                body = {}
        status, agent = body.get("status"), body.get("agent_id")
        if status == "queued":
            counts["still_queued"] += 1
        elif status is not None and agent is not None and agent not in on_sockets:
            counts["routed_elsewhere"] += 1
        else:
            counts["lost"] += 1

    await asyncio.gather(*(one(cid) for cid in ids))
    return counts


async def run(cfg: LoadConfig) -> dict[str, Any]:
    """One load test; returns the §7 JSON (plus diagnostics). Raises ``SetupFailed``."""
    base = cfg.url.rstrip("/")
    run_id = f"lt{cfg.seed}-{secrets.token_hex(4)}"
    pool: Customers = customers(cfg.customers, cfg.mix["segment"]) if cfg.customers else Customers()
    plan = arrivals(cfg.rate, cfg.duration, cfg.seed, cfg.mix, pool, run_id)
    tracker = Tracker()
    headers = {"Authorization": f"Bearer {cfg.token}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30.0)
    http = aiohttp.ClientSession(
        headers=headers, timeout=timeout, connector=aiohttp.TCPConnector(limit=cfg.connections)
    )
    sockets = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    lean = (
        HttpClient(base, headers, limit=cfg.connections)
        if cfg.lean_http and urlsplit(base).scheme == "http"
        else None
    )
    rest = Rest(http, base, lean)
    agents: list[SimAgent] = []
    setup_started = time.perf_counter()
    try:
        try:
            pooled = await _put_all(
                http, base, [(f"/v1/customers/lt-cu{i}", pool.profile(i)) for i in pool.segment_of]
            )
            customers_done = time.perf_counter()
            rng = random.Random(cfg.seed)
            profiles = [agent_profile(i, rng) for i in range(cfg.agents)]

            async def put(items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
                return await _put_all(http, base, items)

            ids, recovered = await prepare_agents(rest, put, profiles, pooled)
            agents_created = time.perf_counter()
            wanted = len(ids) if cfg.sockets is None else min(cfg.sockets, len(ids))
            agents = await connect(
                sockets, cfg.ws_url or base, cfg.token, ids[:wanted], tracker, cfg.behaviour,
                cfg.seed, lean=cfg.lean_http,
            )  # fmt: skip
        except (aiohttp.ClientError, OSError) as exc:
            raise SetupFailed(f"cannot reach the server: {exc}") from exc
        except AgentsBusy as exc:
            raise SetupFailed(str(exc)) from exc
        setup = {
            "customers_seconds": round(customers_done - setup_started, 3),
            "agents_seconds": round(agents_created - customers_done, 3),
            "sockets_seconds": round(time.perf_counter() - agents_created, 3),
            "recovered": recovered,
        }
        # the setup's objects live to the end: keep the collector's pauses off the arrivals
        gc.collect()
        gc.freeze()
        if cfg.phase is not None:
            cfg.phase("start")
        start, lag = await _drive(_sender(http, lean, base + "/v1/contacts"), cfg, plan, tracker)
        if agents:
            await _drain(cfg, tracker, agents)
        if cfg.phase is not None:
            cfg.phase("end")
        held = {a.id for a in agents}
        unrouted = tracker.unrouted() if agents else []
        checked = await _stragglers(http, base, unrouted, held)
        # measured now: the cleanup's own traffic is no part of the run
        result = summarise(cfg, tracker, len(agents), checked, plan, start, lag, setup)
    finally:
        gc.unfreeze()
        try:
            # also after a failure or Ctrl-C (the task cancelled once): the server is left
            # as it was found; a second Ctrl-C stops this too
            cleanup = await leave_clean(rest, agents, tracker)
        finally:
            await disconnect(agents)
            await sockets.close()
            await http.close()
            if lean is not None:
                await lean.close()
    result["cleanup"] = cleanup
    result["completed"] = tracker.completed  # including what the cleanup completed
    result["failed_checks"] = failed_checks(result, cfg.max_unrouted)
    result["ok"] = not result["failed_checks"]
    return result


def event_loop_factory() -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """uvloop when installed (the loader then takes less of the CPU it shares with the server
    it measures), else asyncio's default loop."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def run_sync(cfg: LoadConfig) -> dict[str, Any]:
    """``run`` on a fresh event loop; the result names the loop used (``loader_loop``)."""
    name, factory = event_loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(run(cfg))
    result["loader_loop"] = name
    return result


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    """Options beyond §7's are read with defaults, so an older parser still works."""

    def span(text: str | None, default: tuple[float, float]) -> tuple[float, float]:
        if not text:
            return default
        lo, _, hi = text.partition(":")
        low, high = float(lo), float(hi or lo)
        if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
            raise ValueError(f"expected LOW:HIGH seconds, got {text!r}")
        return low, high

    defaults = Behaviour()
    if args.rate < 0 or args.agents < 0 or args.duration <= 0:
        raise ValueError("--rate and --agents must be >= 0 and --duration > 0")
    planned = args.rate * args.duration
    if planned > MAX_ARRIVALS:
        count = f"{planned:,.0f}" if planned < 1e15 else f"{planned:.3g}"
        raise ValueError(
            f"--rate {args.rate:g} for --duration {args.duration:g} s plans {count} arrivals;"
            f" a run plans at most {MAX_ARRIVALS:,}"
        )
    if args.agents > MAX_AGENTS:
        raise ValueError(f"--agents is at most {MAX_AGENTS:,}, got {args.agents:,}")
    customers = getattr(args, "customers", 1000)
    if customers > MAX_CUSTOMERS:
        raise ValueError(f"--customers is at most {MAX_CUSTOMERS:,}, got {customers:,}")
    schemes = {"--url": ("http", "https"), "--ws-url": ("http", "https", "ws", "wss")}
    for option, url in (("--url", args.url), ("--ws-url", getattr(args, "ws_url", None))):
        parts = urlsplit(url or "http://x")
        if parts.scheme not in schemes[option] or not parts.hostname:
            allowed = " or ".join(f"{s}://" for s in schemes[option])
            raise ValueError(f"{option} must be an {allowed} URL, got {url!r}")
    max_unrouted = MAX_UNROUTED if args.max_unrouted is None else float(args.max_unrouted)
    if not 0.0 <= max_unrouted <= 1.0:
        raise ValueError(f"--max-unrouted is a share from 0 to 1, got {max_unrouted:g}")
    drain = LoadConfig.drain_seconds if args.drain is None else float(args.drain)
    if not (math.isfinite(drain) and drain >= 0):
        raise ValueError(f"--drain must be >= 0 seconds, got {drain:g}")
    return LoadConfig(
        url=args.url,
        token=args.token,
        rate=args.rate,
        agents=args.agents,
        duration=args.duration,
        ws_url=getattr(args, "ws_url", None) or "",
        seed=getattr(args, "seed", 1),
        mix=parse_mix(getattr(args, "mix", None)),
        customers=customers,
        behaviour=Behaviour(
            span(getattr(args, "accept_delay", None), defaults.accept_delay),
            span(getattr(args, "handle_time", None), defaults.handle_time),
        ),
        sockets=getattr(args, "sockets", None),
        drain_seconds=drain,
        max_unrouted=max_unrouted,
        progress=not getattr(args, "no_progress", False),
    )


def _write(path: str, text: str) -> bool:
    """Write ``text`` to ``path`` (``-``: stdout); False, with the reason on stderr, if not."""
    return write_text(path, text, "loadtest")


def loadtest(args: argparse.Namespace) -> int:
    from simulations.commands import outputs_writable

    try:
        cfg = config_from_args(args)
    except (ValueError, MixInvalid) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    # (tried before the run, which takes the whole --duration, not after it)
    if args.json_out and not outputs_writable(args.json_out):
        return 2
    try:
        result = run_sync(cfg)
    except SetupFailed as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    # with --json -, stdout carries the JSON alone and the table goes to stderr
    print(format_report(result), file=sys.stderr if args.json_out == "-" else sys.stdout)
    if args.json_out and not _write(args.json_out, json.dumps(result, indent=2) + "\n"):
        return 2
    return 0 if result["ok"] else 1
