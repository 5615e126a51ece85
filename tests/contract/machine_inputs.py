"""What the state machine draws: agents, contacts, workflows and who acts, plus run profiles.

Biased towards agents and contacts that meet (most agents can take most channels and sit in a
queue or two; most steps name a queue), while empty and zero cases still occur.
"""

from __future__ import annotations

import os
from typing import TypeVar

import hypothesis.strategies as st
from hypothesis import HealthCheck, Phase, settings

from queues.contract import AGENT_STATES, Step
from tests.contract.oracle import QUEUES

T = TypeVar("T")

T0 = 1_700_000_000_000
AGENTS = ("a1", "a2", "a3")
INSTANCES = ("i1", "i2")
PRESENCE_MS = 30_000  # an instance's timeout: live this long after it was last heard from
STRATEGIES = ("longest_idle", "most_skilled", "least_busy")
CHANNELS = ("voice", "chat", "chat", "email", "callback")  # chat twice: multi-capacity
OFFER_MS = {"": 20_000, "q1": 30_000, "q2": 45_000}

Memberships = list[tuple[str, float]]  # (queue, skill level); the strategy is the queue's
CAPACITY = st.fixed_dictionaries(
    {"voice": st.sampled_from([1, 1, 0]), "chat": st.integers(1, 3)},
    optional={"email": st.integers(0, 2)},
)


def mostly(common: st.SearchStrategy[T], rare: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``common`` nine times in ten, else ``rare`` (``a | b`` would draw each half the time)."""
    return st.integers(0, 9).flatmap(lambda n: common if n else rare)


MEMBERSHIPS = mostly(
    st.lists(
        st.tuples(st.sampled_from(QUEUES), st.integers(0, 10).map(float)),
        min_size=1,
        max_size=len(QUEUES),
        unique_by=lambda m: m[0],
    ),
    st.just([]),
)
EXCLUSIVE = st.sampled_from([["voice"], ["voice"], [], ["voice", "chat"]])
STATE = st.sampled_from(["available", "available", "available", *AGENT_STATES])

STEP = st.builds(
    Step,
    queues=mostly(
        st.lists(st.sampled_from(QUEUES), min_size=1, max_size=2, unique=True).map(tuple),
        st.just(()),
    ),
    agents=st.lists(st.sampled_from(AGENTS), max_size=1).map(tuple),
    timeout_ms=st.sampled_from([1_000, 5_000, 20_000]),
    agent_offer_ms=st.sampled_from([0, 0, 3_000]),
).filter(lambda s: bool(s.queues or s.agents))
Arrival = tuple[str, int, list[Step], tuple[str, str]]
ARRIVAL = st.tuples(
    st.sampled_from(CHANNELS),
    st.sampled_from([0, 0, 2_000, 10_000, 60_000]),  # priority (ms of wait credit)
    st.lists(STEP, min_size=1, max_size=3),
    st.sampled_from([("", "")] * 4 + [("k1", "h1"), ("k1", "h2"), ("k2", "h1")]),
)
POOL = st.sampled_from(["live", "live", "live", "any", "bogus"])
INDEX = st.integers(0, 50)
ACTOR = st.sampled_from(["owner", "owner", "admin", "other"])
REPORTED = st.sampled_from([True, True, True, False])  # a socket's call reached the store

# profile: (examples on both stores, steps per example); the memory store alone runs 5x the
# examples. Shrinking a failing sequence can take minutes, past CI's 60 s per-test timeout, so
# CI reports the sequence as found; the longer profiles shrink it.
_PROFILES = {"ci": (40, 40), "long": (300, 60), "soak": (3_000, 100)}
PROFILE = os.environ.get("SWITCHBOARD_STATEFUL", "ci")
EXAMPLES, STEPS = _PROFILES[PROFILE]
SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    phases=[p for p in Phase if PROFILE != "ci" or p is not Phase.shrink],
)
