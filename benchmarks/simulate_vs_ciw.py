"""Simulator benchmark (issue 6): Switchboard against Ciw on M/M/100, and the large scenario.

The same model runs in both, in the same process, in alternating rounds so that a busy machine
slows both alike: Poisson arrivals at 0.3 per second, exponential handle times of 300 s (90
Erlangs), 100 agents, 24 hours. Ciw simulates the bare queue; Switchboard routes every contact
through the real engine (``Engine.decide``, ``Engine.new_contact``) and store core
(``TenantCore``: enqueue, accept, complete, timers) of ``simulations/scenarios/mm100.yaml``.
A round's rate is contacts arrived / wall seconds, setup and results included on both sides;
the ratio compares the medians of the rounds. The large scenario (1,000 agents, 50 queues,
about 300,000 contacts in 24 h) is timed once, end to end (load, build, run, summarise).

    python -m benchmarks.simulate_vs_ciw            # 5 rounds and the large scenario
    python -m benchmarks.simulate_vs_ciw --quick    # 2 short rounds, no large scenario
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ciw
import numpy as np

from benchmarks.machine import machine_info
from simulations.metrics import summarise
from simulations.model import Model
from simulations.scenario import load_scenario
from simulations.sim import run_replication

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SCENARIOS = ROOT / "simulations" / "scenarios"
RATE, AHT, AGENTS = 0.3, 300.0, 100
TARGET_RATIO = 1.0
TARGET_LARGE_SECONDS = 30.0
PACKAGES = ("ciw", "numpy", "sortedcontainers", "common-expression-language", "switchboard")


def ciw_round(hours: float, seed: int) -> tuple[int, float, float]:
    """One Ciw run of M/M/100: (contacts arrived, wall seconds, CPU seconds)."""
    started, cpu = time.perf_counter(), time.process_time()
    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(RATE)],
        service_distributions=[ciw.dists.Exponential(1 / AHT)],
        number_of_servers=[AGENTS],
    )
    ciw.seed(seed)
    sim = ciw.Simulation(network)
    sim.simulate_until_max_time(hours * 3600)
    sim.get_all_records()
    arrived = int(sim.nodes[0].number_of_individuals)
    return arrived, time.perf_counter() - started, time.process_time() - cpu


def switchboard_round(model: Model, seed: int) -> tuple[int, float, float]:
    """One Switchboard replication of mm100.yaml: (contacts arrived, wall s, CPU s)."""
    started, cpu = time.perf_counter(), time.process_time()
    run = run_replication(model, np.random.SeedSequence(seed))
    summarise(model, run)
    return len(run.contacts), time.perf_counter() - started, time.process_time() - cpu


def large_run() -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    model = Model.build(load_scenario(SCENARIOS / "large.yaml"))
    built = time.perf_counter()
    run = run_replication(model, np.random.SeedSequence(1))
    summary = summarise(model, run)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "agents": sum(g.count for g in model.groups),
        "queues": len(model.queues),
        "contacts": len(run.contacts),
        "events": run.events,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "build_seconds": round(built - started, 2),
        "contacts_per_second": round(len(run.contacts) / seconds, 1),
        "service_level": round(summary["overall"]["service_level"], 4),
        "target_seconds": TARGET_LARGE_SECONDS,
        "meets_target": seconds <= TARGET_LARGE_SECONDS,
    }


def machine() -> dict[str, Any]:
    return machine_info(PACKAGES)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 4 h, no large run")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--json", default=str(RESULTS / "simulate_vs_ciw.json"))
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    hours = 4.0 if args.quick else 24.0
    started = time.perf_counter()
    loaded = load_scenario(SCENARIOS / "mm100.yaml")
    shorter = loaded.spec.model_copy(update={"duration_hours": hours})
    model = Model.build(replace(loaded, spec=shorter))
    rows: list[dict[str, Any]] = []
    for r in range(rounds):
        for name in ("ciw", "switchboard"):
            gc.collect()
            if name == "ciw":
                contacts, seconds, cpu = ciw_round(hours, r)
            else:
                contacts, seconds, cpu = switchboard_round(model, r)
            rows.append(
                {
                    "round": r,
                    "simulator": name,
                    "contacts": contacts,
                    "seconds": seconds,
                    "cpu": cpu,
                }
            )
    rate = {
        name: statistics.median(
            r["contacts"] / r["seconds"] for r in rows if r["simulator"] == name
        )
        for name in ("ciw", "switchboard")
    }
    per_round = [
        (s["contacts"] / s["seconds"]) / (c["contacts"] / c["seconds"])
        for c, s in zip(rows[::2], rows[1::2], strict=True)
    ]
    ratio = rate["switchboard"] / rate["ciw"]
    # CPU time is less disturbed than wall time when other processes share the machine.
    cpu_rate = {
        name: statistics.median(r["contacts"] / r["cpu"] for r in rows if r["simulator"] == name)
        for name in ("ciw", "switchboard")
    }
    cpu_ratio = cpu_rate["switchboard"] / cpu_rate["ciw"]
    print(
        f"M/M/100 (lambda {RATE}/s, AHT {AHT:g} s, {AGENTS} agents, {hours:g} h): {rounds} rounds"
    )
    print(f"{'simulator':<14}{'contacts/s (median)':>22}{'per round':>40}")
    for name in ("ciw", "switchboard"):
        mine = [x for x in rows if x["simulator"] == name]
        each = " ".join(f"{x['contacts'] / x['seconds']:>8,.0f}" for x in mine)
        print(f"{name:<14}{rate[name]:>22,.0f}{each:>40}")
    each_ratio = ", ".join(f"{x:.2f}" for x in per_round)
    print(f"ratio switchboard / ciw: {ratio:.2f} (rounds: {each_ratio}); target >= {TARGET_RATIO}")
    print(
        f"by CPU time: ciw {cpu_rate['ciw']:,.0f}/s, switchboard {cpu_rate['switchboard']:,.0f}/s"
    )
    print(f"ratio by CPU time: {cpu_ratio:.2f}")
    large = None if args.quick else large_run()
    if large is not None:
        print(
            f"large: {large['contacts']:,} contacts, {large['agents']} agents, "
            f"{large['queues']} queues in {large['seconds']:.1f} s "
            f"({large['contacts_per_second']:,.0f} contacts/s, CPU {large['cpu_seconds']:.1f} s); "
            f"target <= {TARGET_LARGE_SECONDS:g} s"
        )
    result = {
        "benchmark": "simulate_vs_ciw",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "quick": args.quick,
        "machine": machine(),
        "model": {"per_second": RATE, "aht_seconds": AHT, "agents": AGENTS, "hours": hours},
        "rounds": [
            {
                **x,
                "seconds": round(x["seconds"], 3),
                "cpu": round(x["cpu"], 3),
                "contacts_per_second": round(x["contacts"] / x["seconds"], 1),
            }
            for x in rows
        ],
        "median_contacts_per_second": {k: round(v, 1) for k, v in rate.items()},
        "ratio": round(ratio, 3),
        "median_contacts_per_cpu_second": {k: round(v, 1) for k, v in cpu_rate.items()},
        "ratio_by_cpu": round(cpu_ratio, 3),
        "ratio_per_round": [round(x, 3) for x in per_round],
        "target_ratio": TARGET_RATIO,
        "meets_ratio_target": ratio >= TARGET_RATIO,
        "large": large,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
