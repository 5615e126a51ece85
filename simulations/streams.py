"""The random inputs of one arrival stream: Poisson arrival times and per-contact draws.

Each stream owns its generators (split from the replication's ``SeedSequence``), so a change to
one stream or to the staffing leaves every other stream's random numbers as they were.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from simulations.distributions import Draws, Sampler
from simulations.model import StreamModel

#: generators each stream takes from the replication's seed sequence, used or not
SEEDS_PER_STREAM = 5


class Arrivals:
    """Poisson arrivals of one stream, piecewise constant in rate (an intraday profile)."""

    __slots__ = ("gap", "horizon", "interval", "rates", "t")

    def __init__(self, stream: StreamModel, gap: Draws, horizon: int) -> None:
        self.rates, self.interval = stream.rates_per_ms, stream.interval_ms
        self.gap, self.horizon, self.t = gap, horizon, 0.0

    def next(self) -> int:
        """The next arrival in ms, or -1 past the horizon. Exponential gaps are memoryless,
        so a gap that crosses an interval boundary is redrawn from the boundary at the new
        rate, which is exact for a piecewise-constant rate."""
        t, rates, interval = self.t, self.rates, self.interval
        while t < self.horizon:
            k = int(t // interval)
            rate, end = rates[k % len(rates)], (k + 1) * interval
            if rate > 0:
                nxt = t + self.gap() / rate
                if nxt < end:
                    self.t = nxt
                    return math.floor(nxt) if nxt < self.horizon else -1
            t = end
        self.t = t
        return -1


class Source:
    """One arrival stream's state and random streams, bundled for the hot path."""

    __slots__ = ("arrivals", "channel", "cumulative", "handle", "patience", "pick", "views", "wrap")

    def __init__(self, stream: StreamModel, rng: Callable[[], np.random.Generator], horizon: int):
        self.channel, self.views, self.cumulative = stream.channel, stream.views, stream.cumulative
        self.arrivals = Arrivals(stream, Draws(rng(), "exponential"), horizon)
        self.pick = Draws(rng(), "uniform")
        self.handle = Sampler(stream.handle, rng())
        # Every stream takes the same number of seeds, used or not, so that adding patience or
        # wrap-up to one stream leaves the random numbers of every other stream as they were.
        patience, wrap = rng(), rng()
        self.patience = Sampler(stream.patience, patience) if stream.patience else None
        self.wrap = Sampler(stream.wrap_up, wrap) if stream.wrap_up else None
