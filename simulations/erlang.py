"""Analytic staffing for planners: Erlang B, Erlang C (M/M/N) and Erlang A (M/M/N+M).

`switchboard staff` renders `format_table(staffing_table(...))`; the per-count metrics come from
`erlang_c_metrics` or `erlang_a_metrics`. Pure Python, and safe for thousands of agents: state
probabilities are built from ratios of neighbouring states, never from a^n / n!.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# Erlang A sums the birth-death chain until the neglected tail is below this share of the mass
# summed so far; 1e-16 is under float resolution, so truncation cannot move any reported digit.
TAIL_TOLERANCE = 1e-16
# A chain this long means the patience is effectively infinite for this load: the figures are
# then Erlang A's limit as patience grows (`_unbounded_patience`), rather than minutes of loop.
MAX_QUEUE_STATES = 2_000_000
# Rows shown past the first count that meets the target, so planners see the marginal gain.
EXTRA_ROWS = 3
# Give up searching for a count that meets the target this far past the first candidate.
MAX_SEARCH_AGENTS = 100_000
# An effect this small relative to 1 is below float resolution (2.2e-16 per step).
_NEGLIGIBLE = 1e-16
# Unnormalised state weights can exceed float range under heavy overload; rescale first.
_RESCALE_ABOVE = 1e200
_SHRINK = 1e-200


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """Steady-state figures for one agent count; rates are shares of all arrivals."""

    agents: int
    offered_load: float  # Erlangs: arrivals per second x AHT seconds
    p_wait: float  # an arrival finds every agent busy (PASTA)
    service_level: float  # answered within the threshold; abandoned contacts are not answered
    asa_seconds: float  # mean wait of answered contacts
    mean_wait_seconds: float  # mean time in queue over all arrivals, abandoners included
    occupancy: float  # carried load / agents
    abandon_rate: float
    threshold_seconds: float


@dataclass(frozen=True, slots=True)
class StaffingTable:
    """Metrics per agent count and the smallest count meeting the target (None if none does)."""

    per_hour: float
    aht_seconds: float
    threshold_seconds: float
    target: float
    patience_seconds: float | None
    rows: tuple[QueueMetrics, ...]
    recommended: int | None


def erlang_b(n: int, a: float) -> float:
    """Blocking probability of M/M/n/n with offered load `a` Erlangs."""
    if n < 0 or a < 0:
        raise ValueError(f"need n >= 0 and a >= 0, got n={n}, a={a}")
    # The recursion keeps every intermediate in [0, 1], unlike a^n / n!.
    b = 1.0
    for k in range(1, n + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(n: int, a: float) -> float:
    """Probability that an arrival waits in M/M/n with load `a`; 1.0 when a >= n."""
    b = erlang_b(n, a)
    if a >= n:
        return 1.0
    return n * b / (n - a * (1.0 - b))


def erlang_c_metrics(
    arrival_rate: float, aht_seconds: float, n: int, threshold_seconds: float
) -> QueueMetrics:
    """Erlang C (infinite patience) metrics for `n` agents; unstable loads wait forever."""
    a = _offered_load(arrival_rate, aht_seconds, threshold_seconds)
    _check_agents(n)
    if a >= n:
        return QueueMetrics(n, a, 1.0, 0.0, math.inf, math.inf, 1.0, 0.0, threshold_seconds)
    c = erlang_c(n, a)
    asa = c * aht_seconds / (n - a)
    sl = 1.0 - c * math.exp(-(n - a) * threshold_seconds / aht_seconds)
    return QueueMetrics(n, a, c, sl, asa, asa, a / n, 0.0, threshold_seconds)


def erlang_a_metrics(
    arrival_rate: float,
    aht_seconds: float,
    n: int,
    threshold_seconds: float,
    patience_seconds: float,
) -> QueueMetrics:
    """Erlang A metrics for `n` agents with exponential patience of mean `patience_seconds`.

    Exact stationary distribution of the chain with death rate min(k, n)mu + max(k - n, 0)theta,
    truncated once the neglected tail is below TAIL_TOLERANCE of the summed mass.
    """
    a = _offered_load(arrival_rate, aht_seconds, threshold_seconds)
    _check_agents(n)
    if not 0 < patience_seconds < math.inf:
        raise ValueError(f"patience must be positive and finite, got {patience_seconds}")
    mu, theta = 1.0 / aht_seconds, 1.0 / patience_seconds
    t = threshold_seconds
    if (
        n <= a
        and (arrival_rate - n * mu) / theta + math.sqrt(arrival_rate / theta) > MAX_QUEUE_STATES
    ):
        # the queue settles near (arrival rate - service rate) / theta contacts, give or take
        # sqrt(arrival rate / theta): too many states to sum, and waits beyond any threshold
        return _unbounded_patience(arrival_rate, aht_seconds, n, t, theta)
    if n > a and theta <= _NEGLIGIBLE * (n * mu - arrival_rate):
        # A waiting contact abandons with probability about theta x its mean wait, 1 / (n mu -
        # lambda): below float resolution, so Erlang C, without a chain that near the load runs
        # to millions of states.
        return erlang_c_metrics(arrival_rate, aht_seconds, n, t)
    # Weights are relative to state n; states below n sum to 1/B(n, a) - 1 by the Erlang B
    # identity, computed by a recursion that overflows to inf rather than raising.
    inv_b = 1.0
    for k in range(1, n + 1):
        inv_b = 1.0 + k / a * inv_b if a > 0 else math.inf
    below = inv_b - 1.0
    if math.isinf(below):
        return QueueMetrics(n, a, 0.0, 1.0, 0.0, 0.0, a / n, 0.0, t)

    c = n * mu
    # An arrival at queue position j (j - 1 waiting ahead, FCFS) moves up when someone ahead is
    # served or abandons: rate c + i theta with i ahead. Its own patience runs out at rate
    # theta, so each phase ends after Exp(c + (i + 1) theta) and is survived with probability
    # (c + i theta) / (c + (i + 1) theta); the survival product telescopes to c / (c + j theta).
    # The phase times Exp(c + m theta), m = 1..j, sum like the j-th smallest of c/theta + j
    # i.i.d. Exp(theta) times, so P(sum <= t) = I_x(j, c/theta + 1), x = 1 - e^{-theta t}: a
    # regularised incomplete beta, evaluated as 1 - P(NegBin(beta, x) < j) term by term in log
    # space. This avoids the hypoexponential alternating sum, which cancels badly for large j.
    log_x = math.log(-math.expm1(-theta * t)) if t > 0 else -math.inf
    beta = c / theta + 1.0
    log_nb = -beta * theta * t  # log of the negative-binomial term for j = 0
    nb_cdf = 0.0  # P(NB < j), so I_x(j, beta) = 1 - nb_cdf

    weight = 1.0  # arrival finds k = n + j - 1 in system
    mass = sl_mass = aband_mass = queue_mass = answered_wait_mass = 0.0
    clear_time = 0.0  # mean time to clear j positions, given no abandonment
    j = 0
    while True:
        j += 1
        clearing = c + j * theta
        clear_time += 1.0 / clearing
        answered = c / clearing
        nb_cdf += math.exp(log_nb)
        # Clamped because the running sum can overshoot 1 by rounding.
        within = min(1.0, max(0.0, 1.0 - nb_cdf))
        mass += weight
        sl_mass += weight * answered * within
        aband_mass += weight * (1.0 - answered)
        queue_mass += weight * (j - 1)
        answered_wait_mass += weight * answered * clear_time
        log_nb += log_x + math.log((j - 1 + beta) / j)
        ratio = arrival_rate / clearing  # weight(j + 1) / weight(j); falls as j grows
        if ratio < 1.0 and weight * ratio / (1.0 - ratio) <= TAIL_TOLERANCE * mass:
            break
        if j >= MAX_QUEUE_STATES:
            return _unbounded_patience(arrival_rate, aht_seconds, n, t, theta)
        weight *= ratio
        if weight > _RESCALE_ABOVE:
            # Every output is a ratio of these sums, so shrinking them all alike is harmless.
            weight, below, mass = weight * _SHRINK, below * _SHRINK, mass * _SHRINK
            sl_mass, aband_mass = sl_mass * _SHRINK, aband_mass * _SHRINK
            queue_mass, answered_wait_mass = queue_mass * _SHRINK, answered_wait_mass * _SHRINK

    total = below + mass
    p_abandon = aband_mass / total
    answered_share = 1.0 - p_abandon
    return QueueMetrics(
        agents=n,
        offered_load=a,
        p_wait=mass / total,
        service_level=(below + sl_mass) / total,
        asa_seconds=answered_wait_mass / total / answered_share,
        mean_wait_seconds=queue_mass / total / arrival_rate,  # Little's law on the queue
        occupancy=a * answered_share / n,
        abandon_rate=p_abandon,
        threshold_seconds=t,
    )


def _unbounded_patience(
    arrival_rate: float, aht_seconds: float, n: int, threshold_seconds: float, theta: float
) -> QueueMetrics:
    """Erlang A's limit as patience grows without bound, for a patience too long to sum the
    chain: Erlang C above the load; at or below it every contact waits without bound (nobody
    is answered in time, as Erlang C shows an unstable count) and the arrivals beyond what the
    agents can serve, a share 1 - n/a, abandon.

    Below the load the queue holds about m = (arrival rate - n mu) / theta contacts, give or
    take s = sqrt(arrival rate / theta) (normal, cut at 0). A contact is answered within the
    threshold t only if the q ahead of it clear in time: they leave at n mu + q theta (served
    or abandoning), which clears at most n mu (e^(theta t) - 1) / theta of them. Should the
    queue be that short with probability 1e-5 or more, the limit's service level of 0 is not
    safe to show: ValueError then, rather than a wrong figure.
    """
    a = arrival_rate * aht_seconds
    if n > a:
        return erlang_c_metrics(arrival_rate, aht_seconds, n, threshold_seconds)
    mean = (arrival_rate - n / aht_seconds) / theta
    spread = math.sqrt(arrival_rate / theta)

    def below(x: float) -> float:  # P(normal(mean, spread) <= x)
        return 0.5 * math.erfc((mean - x) / (spread * math.sqrt(2.0)))

    cleared = n / aht_seconds * math.expm1(theta * threshold_seconds) / theta
    in_time = (below(cleared) - below(0.0)) / max(1.0 - below(0.0), 1e-300)
    if in_time > 1e-5:
        raise ValueError(
            f"Erlang A for {n} agents: a patience this long keeps about"
            f" {_load_text(mean + spread)} contacts waiting, too many to sum, and a threshold"
            f" of {threshold_seconds:g} s is too long to take its service level as 0"
        )
    abandon = 1.0 - n / a
    return QueueMetrics(n, a, 1.0, 0.0, math.inf, math.inf, 1.0, abandon, threshold_seconds)


def staffing_table(
    per_hour: float,
    aht: float,
    threshold: float,
    target: float,
    patience: float | None = None,
    n_min: int | None = None,
    n_max: int | None = None,
) -> StaffingTable:
    """Rows per agent count and the smallest count whose service level meets `target`.

    Erlang C without `patience`, Erlang A with it. By default rows run from the smallest stable
    count (Erlang C) or from the load, or a few rows below the answer if it is lower (Erlang A),
    to EXTRA_ROWS past the answer; `n_min`/`n_max` pin the range and the answer is then the
    first row in range meeting the target.
    """
    if per_hour < 0:
        raise ValueError(f"per_hour must be >= 0, got {per_hour}")
    if not 0 < target < 1:
        raise ValueError(f"target must be a fraction in (0, 1), got {target}")
    rate = per_hour / 3600.0
    a = _offered_load(rate, aht, threshold)
    if a > MAX_SEARCH_AGENTS:
        raise ValueError(
            f"an offered load of {_load_text(a)} Erlangs needs more agents than this table"
            f" computes (at most {MAX_SEARCH_AGENTS:,})"
        )

    def metrics(n: int) -> QueueMetrics:
        if patience is None:
            return erlang_c_metrics(rate, aht, n, threshold)
        return erlang_a_metrics(rate, aht, n, threshold, patience)

    first_stable = math.floor(a) + 1
    best = _smallest_meeting(metrics, target, first_stable, patience is not None, a)
    if n_min is None:
        n_min = first_stable if patience is None else max(1, min(math.floor(a), best - EXTRA_ROWS))
    if n_max is None:
        n_max = max(best, n_min) + EXTRA_ROWS
    _check_agents(n_min)
    if n_max < n_min:
        raise ValueError(f"n_max {n_max} is below n_min {n_min}")
    rows = tuple(metrics(n) for n in range(n_min, n_max + 1))
    recommended = next((r.agents for r in rows if r.service_level >= target), None)
    return StaffingTable(per_hour, aht, threshold, target, patience, rows, recommended)


def _smallest_meeting(
    metrics: Callable[[int], QueueMetrics],
    target: float,
    first_stable: int,
    abandons: bool,
    a: float,
) -> int:
    # Service level rises with the agent count, so bisection finds the answer in O(log n)
    # evaluations. Counts below the load are probed only if the first stable count already
    # meets the target: with long patience they need very long chains.
    def meets(n: int) -> bool:
        return metrics(n).service_level >= target

    if meets(first_stable):
        if not abandons:
            return first_stable
        # Answered share is at most n / a, so no count below target * a can meet the target.
        low, high = max(1, math.ceil(target * a)) - 1, first_stable
    else:
        low, step = first_stable, 1
        while not meets(first_stable + step):
            low = first_stable + step
            step *= 2
            if step > MAX_SEARCH_AGENTS:
                raise ValueError(f"no agent count up to {low} meets target {target}")
        high = first_stable + step
    # Invariant: high meets the target, low does not (or is 0).
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if meets(mid) else (mid, high)
    return high


def format_table(table: StaffingTable) -> str:
    """Plain-text rendering of a staffing table, the recommended row marked with '*'."""
    model = "Erlang C" if table.patience_seconds is None else "Erlang A"
    load = table.rows[0].offered_load if table.rows else 0.0
    head = (
        f"{model}: {table.per_hour:g} contacts/hour, AHT {table.aht_seconds:g} s"
        + ("" if table.patience_seconds is None else f", patience {table.patience_seconds:g} s")
        + f", offered load {load:.2f} Erlangs"
    )
    lines = [
        head,
        f"Target: {table.target:.1%} answered within {table.threshold_seconds:g} s",
        "",
        f"{'agents':>8}  {'service level':>13}  {'ASA s':>8}  {'occupancy':>9}  "
        f"{'abandon rate':>12}  {'P(wait)':>8}",
    ]
    for row in table.rows:
        mark = "*" if row.agents == table.recommended else " "
        asa = "inf" if math.isinf(row.asa_seconds) else f"{row.asa_seconds:.1f}"
        lines.append(
            f"{row.agents:>7}{mark}  {row.service_level:>13.1%}  {asa:>8}  "
            f"{row.occupancy:>9.1%}  {row.abandon_rate:>12.2%}  {row.p_wait:>8.1%}"
        )
    lines.append("")
    if table.recommended is None:
        lines.append("No agent count in this range meets the target.")
    else:
        plural = "" if table.recommended == 1 else "s"
        lines.append(f"* smallest count meeting the target: {table.recommended} agent{plural}")
    return "\n".join(lines) + "\n"


def _load_text(a: float) -> str:
    # (a 300-digit figure says no more than 5.56e+299)
    return f"{a:,.0f}" if a < 1e15 else f"{a:.3g}"


def _offered_load(arrival_rate: float, aht_seconds: float, threshold_seconds: float) -> float:
    if arrival_rate < 0:
        raise ValueError(f"arrival rate must be >= 0, got {arrival_rate}")
    if not 0 < aht_seconds < math.inf:
        raise ValueError(f"AHT must be positive and finite, got {aht_seconds}")
    if threshold_seconds < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold_seconds}")
    return arrival_rate * aht_seconds


def _check_agents(n: int) -> None:
    if n < 1:
        raise ValueError(f"agent count must be >= 1, got {n}")
