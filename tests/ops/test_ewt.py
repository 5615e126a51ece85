"""The estimated wait shown to a queued contact is close to the wait it then has.

A small version of ``tests/ops/ewt_eval.py`` (docs/operations.md reports the big run).
"""

from __future__ import annotations

import pytest

from router.stats import gamma_median_factor
from tests.ops.ewt_eval import BY_AGENTS, ORACLE, evaluate


async def test_estimated_wait_error_is_small() -> None:
    """3,000 contacts, 20 agents at 90 % load: MAE under 40 s and near the true-AHT floor."""
    r = await evaluate(contacts=3000, agents=20, load=0.9, aht_seconds=240.0, seed=1)
    assert r.answered == 3000
    assert r.queued_answered > 1000
    mean = r.mae_queued["mean k*AHT/n"]
    assert r.server_mae_queued == pytest.approx(mean, abs=0.05)  # the server's, rounded
    assert mean < 40.0
    assert mean < 1.15 * r.mae_queued[ORACLE]  # measured AHT costs little against the truth
    assert mean < 0.5 * r.mae_queued["today's ASA"]  # position matters
    assert abs(r.bias_queued["mean k*AHT/n"]) < 15.0


async def test_estimate_with_abandonment() -> None:
    """With impatient customers the error stays bounded (those ahead leave: it runs high)."""
    r = await evaluate(contacts=2000, agents=20, load=0.9, aht_seconds=240.0, patience_seconds=300)
    assert r.abandoned > 0
    assert r.server_mae_queued < 30.0
    assert r.bias_queued["mean k*AHT/n"] > 0


async def test_chat_estimates_count_the_chats_agents_take_at_once() -> None:
    """Agents taking three chats each: the contact's estimate and the queue's gauge both divide
    by the capacity staffed, so they stay as close as for calls (dividing by the agents made
    them about three times too long)."""
    r = await evaluate(contacts=3000, agents=10, load=0.9, aht_seconds=240.0, seed=1, chat=3)
    assert r.answered == 3000
    assert r.queued_answered > 1000
    assert r.server_mae_queued < 1.15 * r.mae_queued[ORACLE]
    assert r.server_mae_queued < 0.3 * r.mae_queued[BY_AGENTS]
    assert r.gauge_mae_all < 1.15 * r.mae_all[ORACLE]


def test_gamma_median_factor() -> None:
    """The median of Gamma(k, 1): ln 2 for k = 1, about k - 1/3 beyond."""
    assert abs(gamma_median_factor(1) - 0.6931) < 1e-4
    assert abs(gamma_median_factor(2) - 1.6783) < 5e-3
    assert abs(gamma_median_factor(10) - 9.6687) < 1e-3
