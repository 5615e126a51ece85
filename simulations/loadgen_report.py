"""What the load test shows: the live progress line on stderr and the final table."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from simulations.loadgen_track import clock

if TYPE_CHECKING:
    from simulations.loadgen_track import Tracker
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


def format_report(result: dict[str, Any]) -> str:
    lines = [
        f"loadtest: {result['rate']:g}/s for {result['duration_seconds']:g} s, "
        f"{result['agents']} agents ({result['sockets']} on sockets)",
        f"sent {result['sent']}  created {result['created']}  routed {result['routed']}  "
        f"errors {result['errors']}  lost {result['lost']}  double offers "
        f"{result['double_offers']}  still queued {result['still_queued']}",
        f"throughput {result['throughput_per_second']:.1f}/s  accepted {result['accepted']}  "
        f"completed {result['completed']}",
        f"{'latency (ms)':<22}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}",
    ]
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
    return "\n".join(lines)
