"""What the load test shows: the live progress line on stderr, the result and its checks, and
the final table."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from simulations.loadgen_track import clock

if TYPE_CHECKING:
    from simulations.loadgen_plan import Arrival
    from simulations.loadgen_track import Latency, Tracker
    from simulations.loadtest import LoadConfig


class Progress:
    """A live line on stderr: redrawn in place on a terminal, one line per 5 s otherwise."""

    def __init__(self, cfg: LoadConfig, tracker: Tracker) -> None:
        self.stream = cfg.stream
        self.enabled = cfg.progress
        self.tty = self.stream.isatty()
        self.tracker = tracker
        self.total = cfg.duration

    def line(self, elapsed: float) -> str:
        s = self.tracker.snapshot()
        p99 = self.tracker.offer.percentile_ms(99) if self.tracker.offer.count else 0.0
        return (
            f"loadtest {min(elapsed, self.total):5.1f}/{self.total:.0f} s  sent {s['sent']}  "
            f"created {s['created']}  routed {s['routed']}  errors {s['errors']}  "
            f"offer p99 {p99:.2f} ms"
        )

    async def run(self, started: float) -> None:
        if not self.enabled:
            return
        period = 0.25 if self.tty else 5.0
        while True:
            await asyncio.sleep(period)
            text = self.line(clock() - started)
            self.stream.write(f"\r{text}\x1b[K" if self.tty else text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def summarise(
    cfg: LoadConfig,
    tracker: Tracker,
    sockets: int,
    checked: dict[str, int],
    plan: list[Arrival],
    start: float,
    lag: Latency,
    setup: dict[str, Any],
) -> dict[str, Any]:
    """The §7 JSON and the diagnostics, as measured at the end of the drain."""
    span = max(cfg.duration, tracker.last_event - start) if plan else cfg.duration
    done = tracker.routed if sockets else len(tracker.scheduled)
    return {
        "sent": tracker.sent,
        "routed": tracker.routed + checked["routed_elsewhere"],
        "errors": sum(tracker.errors.values()),
        "throughput_per_second": round(done / span, 2) if span > 0 else 0.0,
        "create_ms": tracker.create.summary(),
        "offer_ms": tracker.offer.summary(),
        "accept_ms": tracker.accept.summary(),
        "rate": cfg.rate,
        "duration_seconds": cfg.duration,
        "agents": cfg.agents,
        "sockets": sockets,
        "created": len(tracker.scheduled),
        "lost": checked["lost"],
        "still_queued": checked["still_queued"],
        # never offered to any agent by the end of the drain; null: no agent on a socket
        "unrouted": checked["still_queued"] + checked["lost"] if sockets else None,
        "max_unrouted": cfg.max_unrouted,
        "double_offers": tracker.double_offers(),
        "accepted": tracker.accept.count,
        "completed": tracker.completed,
        "accept_failures": dict(tracker.accept_failures),
        "error_kinds": dict(tracker.errors),
        "orphan_offers": len(tracker.early),
        "send_lag_ms": lag.summary(),
        "setup": setup,
        "seed": cfg.seed,
    }


def failed_checks(result: dict[str, Any], max_unrouted: float) -> list[str]:
    """Why a run failed, one line per check (empty: it passed)."""
    out = []
    if result["lost"]:
        out.append(f"{result['lost']} contacts lost (neither offered nor waiting)")
    if result["double_offers"]:
        out.append(f"{result['double_offers']} contacts offered twice at once")
    if result["errors"]:
        out.append(f"{result['errors']} requests failed")
    sent, unrouted = result["sent"], result["unrouted"]
    if unrouted and unrouted > max_unrouted * sent:
        out.append(
            f"{unrouted} of {sent} contacts ({100 * unrouted / sent:.1f} %) never offered to an "
            f"agent by the end of the drain (at most {100 * max_unrouted:g} % may be)"
        )
    if result["cleanup"]["failures"]:
        out.append(f"{result['cleanup']['failures']} cleanup requests failed")
    return out


def _did(counts: dict[str, Any], names: dict[str, str]) -> str:
    return ", ".join(f"{label} {counts[key]}" for key, label in names.items() if counts.get(key))


def format_report(result: dict[str, Any]) -> str:
    unrouted = result["unrouted"]
    share = 100 * (unrouted or 0) / max(1, result["sent"])
    never = "-" if unrouted is None else f"{unrouted} ({share:.1f} %)"
    lines = [
        f"loadtest: {result['rate']:g}/s for {result['duration_seconds']:g} s, "
        f"{result['agents']} agents ({result['sockets']} on sockets)",
        f"sent {result['sent']}  created {result['created']}  routed {result['routed']}  "
        f"never offered {never}  errors {result['errors']}  lost {result['lost']}  "
        f"double offers {result['double_offers']}",
        f"throughput {result['throughput_per_second']:.1f}/s  accepted {result['accepted']}  "
        f"completed {result['completed']}",
    ]
    recovered = _did(result["setup"]["recovered"], _RECOVERED)
    if recovered:
        lines.append(f"left by an earlier run: {recovered}")
    cleanup = _did(result["cleanup"], _CLEANED) or "nothing to do"
    lines.append(f"cleanup: {cleanup} ({result['cleanup']['seconds']:.1f} s)")
    lines.append(f"{'latency (ms)':<22}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
    for name, key in (
        ("create (arrival→201)", "create_ms"),
        ("offer (arrival→socket)", "offer_ms"),
        ("accept (round trip)", "accept_ms"),
        ("loader send lag", "send_lag_ms"),
    ):
        row = result[key]
        cells = "".join(f"{'-' if row[q] is None else f'{row[q]:.2f}':>9}" for q in row)
        lines.append(f"{name:<22}{cells}")
    if result["error_kinds"]:
        lines.append(f"errors by kind: {result['error_kinds']}")
    lines.extend(f"FAILED: {check}" for check in result["failed_checks"])
    return "\n".join(lines)


_RECOVERED = {
    "cancelled": "contacts cancelled",
    "completed": "held contacts completed",
    "agents_offline": "agents set offline",
    "agents_replaced": "busy agents replaced by spares",
    "failures": "failed requests",
}
_CLEANED = {
    "completed": "held contacts completed",
    "cancelled": "waiting contacts cancelled",
    "agents_offline": "agents offline",
    "failures": "failed requests",
}
