"""The load test's workload, fixed in advance from a seeded RNG: arrivals, contacts, agents.

Arrival times are a Poisson process at a fixed rate (exponential gaps), scheduled before the run
starts so the generator stays open-loop: a slow server delays responses, never the arrivals.
Every request body is built here too, so the hot loop only sends bytes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson

#: what the demo config routes on; weights need not sum to 1
DEFAULT_MIX: dict[str, dict[str, float]] = {
    "channel": {"voice": 0.6, "chat": 0.4},
    "intent": {"billing": 0.4, "support": 0.3, "sales": 0.2, "cancel": 0.1},
    "language": {"en": 0.85, "es": 0.15},
    "segment": {"standard": 0.75, "gold": 0.2, "platinum": 0.05},
}
#: customer value per segment of the demo config (platinum >= 10000, gold >= 2000)
SEGMENT_VALUE = {"standard": 100.0, "gold": 5000.0, "platinum": 20000.0}
CAPACITY = {"voice": 1, "chat": 2, "email": 2, "sms": 2}


class MixInvalid(ValueError):
    """A ``--mix`` string that cannot be read."""


def parse_mix(text: str | None) -> dict[str, dict[str, float]]:
    """``"channel:voice=0.5,chat=0.5;language:en=1"`` over the defaults (unnamed parts kept)."""
    mix = {name: dict(weights) for name, weights in DEFAULT_MIX.items()}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        name, sep, body = part.partition(":")
        name = name.strip()
        if not sep or name not in mix:
            raise MixInvalid(f"mix part {part!r}: expected one of {sorted(mix)} then ':'")
        weights: dict[str, float] = {}
        for item in body.split(","):
            key, eq, value = item.partition("=")
            try:
                weights[key.strip()] = float(value)
            except ValueError:
                raise MixInvalid(f"mix item {item!r}: expected name=weight") from None
            if not eq or not key.strip() or weights[key.strip()] < 0:
                raise MixInvalid(f"mix item {item!r}: expected name=weight")
        if not weights or sum(weights.values()) <= 0:
            raise MixInvalid(f"mix part {part!r} has no positive weight")
        mix[name] = weights
    return mix


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), list(weights.values()))[0]


def phone(index: int) -> str:
    """A valid US number per customer (San Francisco, exchanges 200 and up)."""
    return f"+1415{200 + index // 10000:03d}{index % 10000:04d}"


@dataclass(frozen=True, slots=True)
class Arrival:
    offset: float  # seconds after the run's start
    key: str  # Idempotency-Key
    body: bytes
    channel: str


@dataclass(slots=True)
class Customers:
    """Customer pools per segment; each customer is reachable by phone and by chat handle."""

    by_segment: dict[str, list[int]] = field(default_factory=dict)
    segment_of: dict[int, str] = field(default_factory=dict)

    def profile(self, index: int) -> dict[str, Any]:
        segment = self.segment_of[index]
        return {
            "name": f"Customer {index}",
            "phones": [phone(index)],
            "emails": [f"lt-{index}@example.com"],
            "chat_handles": [f"lt-{index}"],
            "value": SEGMENT_VALUE.get(segment, 0.0),
            "churn_risk": 0.1,  # below the demo's at-risk rules: no waiting for a last agent
        }


def customers(count: int, mix: dict[str, float]) -> Customers:
    """``count`` customers split across segments in proportion to the mix (each at least 1)."""
    out = Customers()
    total = sum(mix.values())
    names = [name for name, weight in mix.items() if weight > 0]
    index = 0
    for n, name in enumerate(names):
        share = count - index if n == len(names) - 1 else round(count * mix[name] / total)
        pool = list(range(index, index + max(1, share)))
        out.by_segment[name] = pool
        for i in pool:
            out.segment_of[i] = name
        index += len(pool)
    return out


def arrivals(
    rate: float,
    duration: float,
    seed: int,
    mix: dict[str, dict[str, float]],
    pool: Customers,
    run_id: str,
) -> list[Arrival]:
    """Poisson arrivals over ``duration`` seconds, each with its contact body already encoded."""
    rng = random.Random(seed)
    out: list[Arrival] = []
    t = 0.0
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= duration:
            break
        channel = _pick(rng, mix["channel"])
        segment = _pick(rng, mix["segment"])
        who = rng.choice(pool.by_segment[segment]) if pool.by_segment.get(segment) else None
        body: dict[str, Any] = {
            "channel": channel,
            "intent": _pick(rng, mix["intent"]),
            "language": _pick(rng, mix["language"]),
        }
        if who is not None:
            body["from"] = phone(who) if channel in ("voice", "sms", "callback") else f"lt-{who}"
        if channel in ("email", "chat", "sms"):
            body["subject" if channel == "email" else "body"] = "Hello, I need help."
        if channel == "email" and who is not None:
            body["from"] = f"lt-{who}@example.com"
        # (copied: orjson's bytes keep the whole buffer it wrote into, about 4 KB, which for
        # a plan of a million arrivals is 4 GB of a loader that shares the machine it measures)
        encoded = bytes(memoryview(orjson.dumps(body)))
        out.append(Arrival(t, f"{run_id}-{len(out)}", encoded, channel))
    return out


def agent_profile(index: int, rng: random.Random) -> dict[str, Any]:
    """Every agent serves billing, support and sales; every 2nd retention, every 3rd Spanish."""
    skills = {
        "billing": rng.randint(1, 10),
        "support": rng.randint(1, 10),
        "sales": rng.randint(1, 10),
    }
    if index % 2 == 0:
        skills["retention"] = rng.randint(3, 10)
    if index % 3 == 0:
        skills["spanish"] = rng.randint(5, 10)
    return {"name": f"Load agent {index}", "skills": skills, "capacity": CAPACITY}
