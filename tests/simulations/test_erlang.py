"""Erlang B/C/A staffing maths against published figures and independent computations."""

from __future__ import annotations

import math
import time
from decimal import Decimal, localcontext

import pytest

from simulations.erlang import (
    QueueMetrics,
    erlang_a_metrics,
    erlang_b,
    erlang_c,
    erlang_c_metrics,
    format_table,
    staffing_table,
)

# Reference load: 100 calls per 30 min, AHT 180 s, threshold 20 s (A = 10 Erlangs).
RATE = 100 / 1800
AHT = 180.0
THRESHOLD = 20.0
PATIENCE = 300.0


def matches(value: float, published: str) -> bool:
    """True when `value` rounds to `published` at the precision it was published with."""
    decimals = len(published.partition(".")[2])
    return abs(value - float(published)) <= 0.5 * 10.0**-decimals + 1e-12


def metrics_for(n: int, patience: float | None = None, rate: float = RATE) -> QueueMetrics:
    if patience is None:
        return erlang_c_metrics(rate, AHT, n, THRESHOLD)
    return erlang_a_metrics(rate, AHT, n, THRESHOLD, patience)


def test_erlang_b_known_value() -> None:
    """B(10, 10) is the textbook 0.2146 and the recursion starts from B(0, a) = 1."""
    assert erlang_b(10, 10.0) == pytest.approx(0.21458, abs=5e-6)
    assert erlang_b(0, 3.0) == 1.0
    assert erlang_b(1, 3.0) == pytest.approx(3.0 / 4.0)


def test_erlang_c_is_one_at_or_above_capacity() -> None:
    """Erlang C returns a probability of waiting of exactly 1 once the load reaches n."""
    assert erlang_c(10, 10.0) == 1.0
    assert erlang_c(10, 12.5) == 1.0
    assert 0.0 < erlang_c(11, 10.0) < 1.0


def test_erlang_c_reference_row_11() -> None:
    """N = 11 reproduces the published P(wait) 0.6821 and occupancy 0.909."""
    m = metrics_for(11)
    assert matches(m.p_wait, "0.6821")
    assert matches(m.occupancy, "0.909")


def test_erlang_c_reference_row_14() -> None:
    """N = 14 reproduces P(wait) 0.17413, SL 0.88835, ASA 7.836 s and occupancy 0.71429."""
    m = metrics_for(14)
    assert matches(m.p_wait, "0.17413")
    assert matches(m.service_level, "0.88835")
    assert matches(m.asa_seconds, "7.836")
    assert matches(m.occupancy, "0.71429")
    assert m.abandon_rate == 0.0
    assert m.mean_wait_seconds == m.asa_seconds


def test_erlang_c_reference_row_15() -> None:
    """N = 15 reproduces P(wait) 0.102, SL 0.941 and occupancy 0.667."""
    m = metrics_for(15)
    assert matches(m.p_wait, "0.102")
    assert matches(m.service_level, "0.941")
    assert matches(m.occupancy, "0.667")


def test_erlang_a_reference_row() -> None:
    """N = 14, patience 300 s reproduces all five published Erlang A figures."""
    m = metrics_for(14, PATIENCE)
    assert matches(m.p_wait, "0.14526")
    assert matches(m.abandon_rate, "0.013984")
    assert matches(m.occupancy, "0.704297")
    assert matches(m.mean_wait_seconds, "4.195")
    assert matches(m.service_level, "0.916792")


def test_erlang_a_abandonment_agrees_with_littles_law() -> None:
    """Abandon rate equals theta * mean queue length / lambda = mean wait / patience."""
    for n, patience in [(14, 300.0), (9, 60.0), (4, 20.0)]:
        m = metrics_for(n, patience)
        assert m.abandon_rate == pytest.approx(m.mean_wait_seconds / patience, rel=1e-10)


def test_erlang_a_long_patience_converges_to_erlang_c() -> None:
    """Erlang A approaches Erlang C as patience grows, the gap shrinking like 1 / patience."""
    for n in (11, 14, 20):
        c_m = metrics_for(n)
        gaps = []
        for patience in (1e9, 1e12):
            a_m = metrics_for(n, patience)
            gaps.append(a_m.service_level - c_m.service_level)
            assert a_m.p_wait == pytest.approx(c_m.p_wait, abs=1e3 / patience)
            assert a_m.service_level == pytest.approx(c_m.service_level, abs=1e3 / patience)
            assert a_m.asa_seconds == pytest.approx(c_m.asa_seconds, rel=1e4 / patience)
            assert a_m.abandon_rate < 1e3 / patience
        assert gaps[1] == pytest.approx(gaps[0] / 1e3, rel=1e-2)


def test_erlang_a_patience_too_long_to_sum_is_its_limit() -> None:
    """A patience too long to sum the chain gives Erlang A's limit, not an error: Erlang C above
    the load; at or below it nobody answered in time and 1 - N/A abandoning."""
    for n in (11, 14):
        a_m, c_m = metrics_for(n, 1e300), metrics_for(n)
        assert a_m.service_level == pytest.approx(c_m.service_level, rel=1e-12)
        assert a_m.asa_seconds == pytest.approx(c_m.asa_seconds, rel=1e-12)
        assert a_m.p_wait == pytest.approx(c_m.p_wait, rel=1e-12)
        assert a_m.abandon_rate == 0.0
    for n in (5, 9, 10):
        m = metrics_for(n, 1e300)
        assert (m.service_level, m.p_wait, m.occupancy) == (0.0, 1.0, 1.0)
        assert m.abandon_rate == pytest.approx(1 - n / 10, abs=1e-12)
        assert math.isinf(m.asa_seconds)


def test_erlang_a_with_negligible_abandonment_is_erlang_c_without_a_chain() -> None:
    """Above the load, a patience whose abandonment is below float resolution gives Erlang C
    itself, computed directly: near the load (A = 99,999 on 100,001 agents) the chain ran to
    its 2,000,000-state limit for each count, 23 s for one table."""
    for n in (11, 14):
        assert metrics_for(n, 1e300) == metrics_for(n)
    rate, aht = 99_999 / 3600, 3600.0
    started = time.perf_counter()
    near = erlang_a_metrics(rate, aht, 100_001, THRESHOLD, 1e300)
    assert time.perf_counter() - started < 0.5
    assert near == erlang_c_metrics(rate, aht, 100_001, THRESHOLD)
    # and where abandonment still shows (the gap shrinking like 1 / patience), it is summed
    assert metrics_for(11, 1e12).abandon_rate > 0


def test_erlang_a_tiny_patience_is_the_loss_system() -> None:
    """As patience shrinks, whoever finds every agent busy leaves at once: the abandon rate is
    Erlang B's blocking, everyone else is answered at once."""
    for n in (8, 11, 14):
        m = metrics_for(n, 1e-9)
        assert m.abandon_rate == pytest.approx(erlang_b(n, 10.0), rel=1e-9)
        assert m.service_level == pytest.approx(1 - erlang_b(n, 10.0), rel=1e-9)
        assert m.asa_seconds < 1e-6


def test_erlang_a_limit_is_refused_where_its_service_level_could_show() -> None:
    """The limit's service level of 0 is given only where no contact can be answered in time:
    with 19,000,000,000 waiting and 20 s it is (about 2,000,000 clear in 20 s); at the load,
    where the queue is 10,000,000 give or take as many, or with a threshold as long as the
    patience, Erlang A refuses rather than show 0."""
    rate = 1e5  # A = 100,000 on an AHT of 1 s
    m = erlang_a_metrics(rate, 1.0, 99_981, 20.0, 1e9)
    assert (m.service_level, m.p_wait) == (0.0, 1.0)
    assert m.abandon_rate == pytest.approx(19 / 100_000, rel=1e-9)
    for args in [(rate, 1.0, 100_000, 20.0, 1e9), (RATE, AHT, 10, 1e300, 1e300)]:
        with pytest.raises(ValueError, match="too long to take its service level as 0"):
            erlang_a_metrics(*args)


def test_erlang_a_limit_meets_the_chain_where_it_takes_over() -> None:
    """Just below the patience where the limit takes over (N = 5, A = 10: (lambda - N mu) x
    patience = 2,000,000 queued), the summed chain already gives the limit's figures."""
    summed = metrics_for(5, 7.0e7)  # about 1,940,000 queued: still summed
    limit = metrics_for(5, 7.3e7)
    assert math.isfinite(summed.asa_seconds)
    assert math.isinf(limit.asa_seconds)
    assert summed.abandon_rate == pytest.approx(limit.abandon_rate, abs=1e-6)
    assert summed.service_level < 1e-12
    assert limit.service_level == 0.0
    assert summed.occupancy == pytest.approx(1.0, abs=1e-6)


def _chain_reference(n: int, patience: float, states: int) -> tuple[list[float], float, float]:
    """Independent stationary distribution, by plain products over a fixed long truncation."""
    lam, mu, theta = RATE, 1 / AHT, 1 / patience
    weights = [1.0]
    for k in range(1, n + states):
        weights.append(weights[-1] * lam / (min(k, n) * mu + max(k - n, 0) * theta))
    total = math.fsum(weights)
    probs = [w / total for w in weights]
    p_wait = math.fsum(probs[n:])
    p_abandon = math.fsum(
        p * (k - n + 1) * theta / (n * mu + (k - n + 1) * theta)
        for k, p in enumerate(probs)
        if k >= n
    )
    return probs, p_wait, p_abandon


def test_erlang_a_truncation_is_negligible() -> None:
    """The truncated chain matches a 3000-state one to 1e-12, underloaded and overloaded."""
    for n, patience in [(14, 300.0), (11, 5000.0), (6, 120.0)]:
        _, p_wait, p_abandon = _chain_reference(n, patience, 3000)
        m = metrics_for(n, patience)
        assert m.p_wait == pytest.approx(p_wait, abs=1e-12)
        assert m.abandon_rate == pytest.approx(p_abandon, abs=1e-12)


def _answered_within_exact(n: int, patience: float, j: int, t: float) -> float:
    """P(answered within t) at queue position j, from the hypoexponential in 60 digits."""
    with localcontext() as ctx:
        ctx.prec = 60
        c, theta = Decimal(n) / Decimal(AHT), 1 / Decimal(patience)
        # Tagged customer leaves phase i ahead at rate c + i theta, or abandons at theta.
        rates = [c + m * theta for m in range(1, j + 1)]
        tail = Decimal(0)
        for i, ri in enumerate(rates):
            coeff = Decimal(1)
            for k, rk in enumerate(rates):
                if k != i:
                    coeff *= rk / (rk - ri)
            tail += coeff * (-ri * Decimal(t)).exp()
        survive = c / (c + j * theta)
        return float(survive * (1 - tail))


def test_erlang_a_service_level_matches_hypoexponential() -> None:
    """SL(t) equals the chain weighted by exact per-position answer-within-t probabilities."""
    n, patience = 12, 30.0
    probs, _, _ = _chain_reference(n, patience, 40)
    expected = math.fsum(probs[:n]) + math.fsum(
        p * _answered_within_exact(n, patience, k - n + 1, THRESHOLD)
        for k, p in enumerate(probs)
        if k >= n
    )
    assert metrics_for(n, patience).service_level == pytest.approx(expected, abs=1e-12)


def test_zero_threshold_service_level_is_immediate_answers() -> None:
    """At threshold 0 only arrivals finding a free agent count, in Erlang C and Erlang A."""
    c_m = erlang_c_metrics(RATE, AHT, 14, 0.0)
    a_m = erlang_a_metrics(RATE, AHT, 14, 0.0, PATIENCE)
    assert c_m.service_level == pytest.approx(1 - c_m.p_wait)
    assert a_m.service_level == pytest.approx(1 - a_m.p_wait)


def test_large_n_is_stable() -> None:
    """N = 1000, A = 950 gives finite probabilities without overflow, in both models."""
    rate = 950 / AHT
    c_m = erlang_c_metrics(rate, AHT, 1000, THRESHOLD)
    a_m = erlang_a_metrics(rate, AHT, 1000, THRESHOLD, PATIENCE)
    assert 0.0 < erlang_b(1000, 950.0) < erlang_c(1000, 950.0) < 1.0
    for m in (c_m, a_m):
        assert 0.0 < m.p_wait < 1.0
        assert 0.0 < m.service_level < 1.0
        assert math.isfinite(m.asa_seconds)
    assert a_m.p_wait < c_m.p_wait
    overloaded = erlang_a_metrics(rate, AHT, 900, THRESHOLD, PATIENCE)
    assert overloaded.abandon_rate >= 1 - 900 / 950
    assert overloaded.occupancy <= 1.0


def test_extreme_overload_rescales_instead_of_overflowing() -> None:
    """One agent facing 950 Erlangs keeps finite figures: busy always, nearly all abandon."""
    m = erlang_a_metrics(950 / AHT, AHT, 1, THRESHOLD, PATIENCE)
    assert m.p_wait == pytest.approx(1.0)
    assert m.occupancy == pytest.approx(1.0, abs=1e-9)
    assert m.abandon_rate == pytest.approx(1 - 1 / 950, abs=1e-9)
    assert math.isfinite(m.asa_seconds)


def test_tiny_load_on_many_agents_never_waits() -> None:
    """A load far below N (B underflows to 0) reports no waiting rather than failing."""
    for m in (metrics_for(5000), metrics_for(5000, PATIENCE)):
        assert m.p_wait == 0.0
        assert m.service_level == 1.0
        assert m.asa_seconds == 0.0


def test_unstable_erlang_c() -> None:
    """Erlang C at or above capacity waits forever: P(wait) 1, SL 0, ASA inf, occupancy 1."""
    for n in (8, 10):
        m = metrics_for(n)
        assert (m.p_wait, m.service_level, m.occupancy) == (1.0, 0.0, 1.0)
        assert math.isinf(m.asa_seconds)


def test_staffing_table_erlang_c_picks_smallest_meeting() -> None:
    """The reference load at 80/20 needs 14 agents under Erlang C; rows run 11 to 17."""
    table = staffing_table(200, AHT, THRESHOLD, 0.8)
    assert table.recommended == 14
    assert [r.agents for r in table.rows] == list(range(11, 18))
    by_n = {r.agents: r for r in table.rows}
    assert by_n[13].service_level < 0.8 <= by_n[14].service_level


def test_staffing_table_erlang_a_picks_smallest_meeting() -> None:
    """With patience 300 s the same load needs 13 agents; 12 falls short."""
    table = staffing_table(200, AHT, THRESHOLD, 0.8, patience=PATIENCE)
    assert table.recommended == 13
    by_n = {r.agents: r for r in table.rows}
    assert by_n[12].service_level < 0.8 <= by_n[13].service_level
    assert table.rows[0].agents == 10


def test_staffing_table_finds_answers_below_the_load() -> None:
    """Short patience can meet the target below the load; the search still finds the smallest."""
    table = staffing_table(19000, AHT, THRESHOLD, 0.8, patience=60.0)
    assert table.recommended is not None
    assert table.recommended < 950
    below = erlang_a_metrics(19000 / 3600, AHT, table.recommended - 1, THRESHOLD, 60.0)
    assert below.service_level < 0.8
    assert table.rows[0].agents == table.recommended - 3


def test_staffing_table_pinned_range() -> None:
    """n_min/n_max fix the rows; no recommendation when no row meets the target."""
    table = staffing_table(200, AHT, THRESHOLD, 0.8, n_min=11, n_max=13)
    assert [r.agents for r in table.rows] == [11, 12, 13]
    assert table.recommended is None
    assert staffing_table(200, AHT, THRESHOLD, 0.8, n_min=16, n_max=18).recommended == 16


def test_staffing_table_rejects_bad_input() -> None:
    """Targets outside (0, 1), non-positive AHT or patience and inverted ranges raise."""
    with pytest.raises(ValueError, match="target"):
        staffing_table(200, AHT, THRESHOLD, 1.0)
    with pytest.raises(ValueError, match="AHT"):
        staffing_table(200, 0.0, THRESHOLD, 0.8)
    with pytest.raises(ValueError, match="patience"):
        staffing_table(200, AHT, THRESHOLD, 0.8, patience=0.0)
    with pytest.raises(ValueError, match="n_max"):
        staffing_table(200, AHT, THRESHOLD, 0.8, n_min=15, n_max=12)


def test_format_table_marks_recommended_row() -> None:
    """The rendering has the column headings and marks exactly the recommended count."""
    text = format_table(staffing_table(200, AHT, THRESHOLD, 0.8, patience=PATIENCE))
    assert "agents" in text
    assert "service level" in text
    assert "abandon rate" in text
    assert "Erlang A" in text
    rows = [line.split() for line in text.splitlines() if line[:8].strip().rstrip("*").isdigit()]
    marked = [row for row in rows if row[0].endswith("*")]
    assert [row[0] for row in rows] == ["10", "11", "12", "13*", "14", "15", "16"]
    assert len(marked) == 1
    assert marked[0][1] == "85.8%"
    assert "smallest count meeting the target: 13 agents" in text
