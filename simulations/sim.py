"""The discrete-event simulator: the real routing engine and store core in virtual time.

Each arrival goes through ``Engine.decide`` and ``Engine.new_contact`` and one
``TenantCore.enqueue_contact``, exactly the calls the server makes; agents accept offers
(``accept_reservation``) after an acceptance delay, complete after the handle time
(``complete_contact``, whose wrap-up the core times itself), customers leave when their
patience runs out (``abandon_contact``), shifts switch agents on and off (``set_agent_state``),
and the core's own timers (offer timeouts, workflow steps, wrap-up ends) fire when due through
``claim_timers``/``fire_timer``. No routing decision is made here: the simulator moves the
clock and records what the core reports.

Time is integer milliseconds. Events wait in a heap; the core's timer set is a second queue,
read directly, so a timer fires exactly when due. Randomness comes from one numpy
``SeedSequence`` per replication, split per stream and quantity, so changing agent counts
leaves every arrival, handle time and patience as it was (common random numbers).
"""

from __future__ import annotations

import gc
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from queues.contract import Event
from queues.memory import TenantCore
from router.engine import Decision
from simulations.distributions import Sampler
from simulations.model import (
    ABANDONED,
    AGENT,
    ANSWERED,
    END,
    OUTCOME,
    QUEUE,
    START,
    STREAM,
    WAIT,
    WAITING,
    Model,
    Run,
)
from simulations.streams import SEEDS_PER_STREAM, Source

_ARRIVAL, _ACCEPT, _COMPLETE, _ABANDON, _SHIFT_ON, _SHIFT_OFF, _BACK = range(7)
_TIMER_BATCH = 256
_TIMER_LEASE_MS = 60_000
_PROGRESS_EVERY = 16_384
_NEVER = float("inf")

Progress = Callable[[float], None]


def run_replication(
    model: Model, seed: np.random.SeedSequence, progress: Progress | None = None
) -> Run:
    """Simulate one replication of ``model``; the same seed gives the same run."""
    started = time.perf_counter()
    enabled = gc.isenabled()
    # Hundreds of thousands of long-lived records make the cyclic collector rescan the heap
    # again and again for nothing: the loop frees its garbage by reference counting. It is
    # paused for the run and collects whatever is left afterwards.
    gc.disable()
    try:
        run = _Replication(model, seed, progress).run()
    finally:
        if enabled:
            gc.enable()
    run.wall_seconds = time.perf_counter() - started
    return run


class _Replication:
    def __init__(self, model: Model, seed: np.random.SeedSequence, progress: Progress | None):
        self.m, self.progress = model, progress
        self.core = TenantCore(views=False)  # replies without contact views: records are read
        self.engine = model.engine
        self.warmup_ms, self.horizon_ms = model.warmup_ms, model.horizon_ms
        self.decide_once = not model.engine.reads_clock
        self.decided: dict[int, Decision] = {}
        streams, groups = model.streams, model.groups
        # Spawning advances a SeedSequence; a copy keeps this run independent of whatever was
        # spawned from ``seed`` before, so the same seed always means the same run.
        fresh = np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key)
        seeds = iter(fresh.spawn(SEEDS_PER_STREAM * len(streams) + len(groups)))

        def rng() -> np.random.Generator:
            return np.random.default_rng(next(seeds))

        self.sources = [Source(s, rng, model.horizon_ms) for s in streams]
        self.delay = [Sampler(g.accept_delay, rng()) for g in groups]
        self.qindex = {name: i for i, name in enumerate(model.queues)}
        self.sindex = {name: i for i, name in enumerate(model.segments)}
        self.group_of = [gi for gi, g in enumerate(groups) for _ in range(g.count)]
        n_agents = len(self.group_of)
        self.active = [0] * n_agents  # contacts in handle or wrap-up, per agent
        self.busy_since = [0] * n_agents
        self.on_shift = [False] * n_agents
        self.leaving = [False] * n_agents  # shift over, finishing a contact
        self.staffed_since = [0] * n_agents
        self.busy_ms = [0] * n_agents
        self.staffed_ms = [0] * n_agents
        self.contacts: list[list[Any]] = []
        self.heap: list[tuple[int, int, int, Any, Any]] = []
        self.seq = itertools.count()
        self.waiting = self.busy = self.staffed = self.unresolved = 0
        # Step functions of time, as (time, level) pairs: contacts waiting, agents with work,
        # agents on shift. Kept as flat lists because they grow by millions of entries.
        self.trace: dict[str, tuple[list[int], list[int]]] = {
            k: ([0], [0]) for k in ("waiting", "busy", "staffed")
        }
        self.wait_times, self.wait_levels = self.trace["waiting"]
        self.busy_times, self.busy_levels = self.trace["busy"]

    # ---------------------------------------------------------------------------- setup

    def _setup(self) -> None:
        core, m = self.core, self.m
        k = 0
        for g in m.groups:
            for _ in range(g.count):
                core.upsert_agent(replace(g.template, id=f"a{k}"), 0)
                for start, end in g.shifts:
                    if start < m.horizon_ms:
                        self._push(start, _SHIFT_ON, k, None)
                        if end < m.horizon_ms:  # the last shift of the day stays to drain
                            self._push(end, _SHIFT_OFF, k, None)
                k += 1
        for s, source in enumerate(self.sources):
            t = source.arrivals.next()
            if t >= 0:
                self._push(t, _ARRIVAL, s, None)

    def _push(self, t: int, kind: int, a: Any, b: Any) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), kind, a, b))

    def _window(self, start: int, end: int) -> int:
        return max(0, min(end, self.m.horizon_ms) - max(start, self.m.warmup_ms))

    # --------------------------------------------------------------------------- events

    def _events(self, events: list[Event], now: int) -> None:
        for ev in events:
            kind = ev["t"]
            if kind == "offer":
                agent = int(ev["a"][1:])
                sampler = self.delay[self.group_of[agent]]
                delay = sampler.constant
                if delay is None:
                    delay = sampler()
                if delay == 0:
                    self._accept(ev["r"], ev["c"], now, agent)
                else:
                    self._push(now + delay, _ACCEPT, ev["r"], ev["c"])
            elif kind == "contact":
                if ev["s"] == "completed":
                    self._work_end(int(ev["c"][1:]), now)
            elif kind == "rescind" and ev["why"] == "timeout":
                self._push(now + self.m.away_ms, _BACK, int(ev["a"][1:]), None)

    def _arrive(self, s: int, now: int) -> None:
        source = self.sources[s]
        n = len(self.contacts)
        cid = f"c{n}"
        views = source.views
        view = views[0]
        if len(views) > 1:
            u = source.pick() * source.cumulative[-1]
            for i, edge in enumerate(source.cumulative):
                if u < edge:
                    view = views[i]
                    break
        engine = self.engine
        # A decision that does not read the clock is a pure function of the view: decided once.
        decision = self.decided.get(id(view)) if self.decide_once else None
        if decision is None:
            decision = engine.decide(view.contact, view.customer, now)
            if self.decide_once:
                self.decided[id(view)] = decision
        new = engine.new_contact(cid, decision, source.channel, {"id": cid}, {}, now)
        rec = [
            now,
            s,
            self.sindex[decision.segment],
            self.qindex[decision.home_queue],
            WAITING,
            0,
            new.sl_threshold_ms,
            decision.service_level.target,
            -1,
            -1,
            -1,
        ]
        self.contacts.append(rec)
        self.waiting += 1
        self.unresolved += 1
        self.wait_times.append(now)
        self.wait_levels.append(self.waiting)
        # Drawn for every contact, used or not, so that staffing never shifts the random numbers.
        patience = source.patience() if source.patience is not None else -1
        t = source.arrivals.next()
        if t >= 0:
            heapq.heappush(self.heap, (t, next(self.seq), _ARRIVAL, s, None))
        events = self.core.enqueue_contact(new, now)[2]
        if events:
            self._events(events, now)
        if patience >= 0 and rec[OUTCOME] == WAITING:  # answered at once: no one to abandon
            heapq.heappush(self.heap, (now + patience, next(self.seq), _ABANDON, n, None))

    def _accept(self, rid: str, cid: str, now: int, agent: int = -1) -> None:
        code, payload, events = self.core.accept_reservation(rid, "", now)
        if code != 0:
            return  # rescinded meanwhile: abandoned, timed out or the agent went offline
        n = int(cid[1:])
        rec = self.contacts[n]
        if agent < 0:
            agent = int(events[0]["a"][1:])
        rec[OUTCOME], rec[WAIT], rec[AGENT], rec[START] = ANSWERED, payload["wait"], agent, now
        rec[QUEUE] = self.qindex[self.core.contacts[cid].queue]
        self.waiting -= 1
        self.unresolved -= 1
        self.wait_times.append(now)
        self.wait_levels.append(self.waiting)
        if self.active[agent] == 0:
            self.busy_since[agent] = now
            self.busy += 1
            self.busy_times.append(now)
            self.busy_levels.append(self.busy)
        self.active[agent] += 1
        handle = self.sources[rec[STREAM]].handle()
        heapq.heappush(self.heap, (now + handle, next(self.seq), _COMPLETE, n, agent))

    def _complete(self, n: int, agent: int, now: int) -> None:
        rec = self.contacts[n]
        wrap = self.sources[rec[STREAM]].wrap
        wrap_ms = wrap() if wrap is not None else self.m.queue_wrap_ms[rec[QUEUE]]
        reply = self.core.complete_contact(f"c{n}", f"a{agent}", wrap_ms, "", now)
        self._events(reply[2], now)

    def _work_end(self, n: int, now: int) -> None:
        rec = self.contacts[n]
        rec[END] = now
        agent = rec[AGENT]
        self.active[agent] -= 1
        if self.active[agent] == 0:
            since = self.busy_since[agent]
            if now > self.warmup_ms and since < self.horizon_ms:
                self.busy_ms[agent] += self._window(since, now)
            self.busy -= 1
            self.busy_times.append(now)
            self.busy_levels.append(self.busy)
            if self.leaving[agent]:
                self._off_duty(agent, now)

    def _abandon(self, n: int, now: int) -> None:
        rec = self.contacts[n]
        if rec[OUTCOME] != WAITING:
            return
        code, payload, events = self.core.abandon_contact(f"c{n}", now)
        if code != 0:
            return
        rec[OUTCOME], rec[WAIT] = ABANDONED, payload["wait"]
        rec[QUEUE] = self.qindex[self.core.contacts[f"c{n}"].queue]
        self.waiting -= 1
        self.unresolved -= 1
        self.wait_times.append(now)
        self.wait_levels.append(self.waiting)
        self._events(events, now)

    def _shift(self, agent: int, on: bool, now: int) -> None:
        if on:
            self.leaving[agent] = False
            if not self.on_shift[agent]:
                self.on_shift[agent] = True
                self.staffed_since[agent] = now
                self.staffed += 1
                self._staffed(now)
            self._events(self.core.set_agent_state(f"a{agent}", "available", now)[2], now)
            return
        self._events(self.core.set_agent_state(f"a{agent}", "offline", now)[2], now)
        if self.active[agent] > 0:
            self.leaving[agent] = True  # staffed until the contact in hand is done
        elif self.on_shift[agent]:
            self._off_duty(agent, now)

    def _off_duty(self, agent: int, now: int) -> None:
        self.leaving[agent] = self.on_shift[agent] = False
        self.staffed_ms[agent] += self._window(self.staffed_since[agent], now)
        self.staffed -= 1
        self._staffed(now)

    def _staffed(self, now: int) -> None:
        times, levels = self.trace["staffed"]
        times.append(now)
        levels.append(self.staffed)

    def _back(self, agent: int, now: int) -> None:
        if self.on_shift[agent] and not self.leaving[agent]:
            self._events(self.core.set_agent_state(f"a{agent}", "available", now)[2], now)

    # ----------------------------------------------------------------------------- loop

    def run(self) -> Run:
        self._setup()
        m, core, heap, timers = self.m, self.core, self.heap, self.core.timers
        horizon, stop = m.horizon_ms, m.horizon_ms + m.drain_ms
        pop, arrive, complete, accept = heapq.heappop, self._arrive, self._complete, self._accept
        progress, lowest = self.progress, timers.lowest
        now = events = 0
        while True:
            # The core's timers and the heap are two queues; whichever is due first goes.
            due = lowest()
            if due != _NEVER and (not heap or due <= heap[0][0]):
                now = int(due)
                if now > stop:
                    break
                claimed = core.claim_timers(now, _TIMER_BATCH, _TIMER_LEASE_MS)[1]["timers"]
                for member in claimed:
                    self._events(core.fire_timer(member, now)[2], now)
            elif heap:
                now, _, kind, a, b = pop(heap)
                if now > stop:
                    break
                if kind == _ARRIVAL:
                    arrive(a, now)
                elif kind == _COMPLETE:
                    complete(a, b, now)
                elif kind == _ABANDON:
                    self._abandon(a, now)
                elif kind == _ACCEPT:
                    accept(a, b, now)
                elif kind == _BACK:
                    self._back(a, now)
                else:
                    self._shift(a, kind == _SHIFT_ON, now)
            else:
                break
            events += 1
            if now >= horizon and self.unresolved == 0:
                break
            if progress is not None and events % _PROGRESS_EVERY == 0:
                progress(min(1.0, now / horizon))
        return self._finish(now, events)

    def _finish(self, end: int, events: int) -> Run:
        # Nothing left to happen before the horizon (arrivals over early, or none at all):
        # agents still on shift stay so until the horizon, idle, and that time is staffed.
        until = max(end, self.horizon_ms)
        for agent, active in enumerate(self.active):
            if active:
                self.busy_ms[agent] += self._window(self.busy_since[agent], until)
            if self.on_shift[agent]:
                self.staffed_ms[agent] += self._window(self.staffed_since[agent], until)
        rows = self.contacts
        contacts = np.array(rows, dtype=np.float64) if rows else np.zeros((0, 11))
        traces = {
            name: (np.array(times, dtype=np.int64), np.array(levels, dtype=np.int64))
            for name, (times, levels) in self.trace.items()
        }
        return Run(
            contacts=contacts,
            agent_group=np.array(self.group_of, dtype=np.int64),
            agent_busy_ms=np.array(self.busy_ms, dtype=np.float64),
            agent_staffed_ms=np.array(self.staffed_ms, dtype=np.float64),
            traces=traces,
            end_ms=end,
            events=events,
        )
