"""Service-level figures against scenarios worked out by hand, on an injected clock.

Each test drives contacts through the real app on the real Redis, moving a ``ManualClock``
that the service, the timer loop and the presence share, then reads ``/metrics`` and
``GET /v1/queues`` and compares them with what the scenario must give.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from router import appkeys as k
from router.clock import ManualClock
from tests.ops.conftest import GATEWAY, AppFactory, Ops, value

#: billing's threshold is 7.5 s and sales' the voice default, 20 s; an escalation leaves
#: billing for sales after 10 s
ROUTING = """\
service_levels:
  voice: {threshold_seconds: 20, target: 0.80}
segments:
  - {name: standard, when: "true"}
queues:
  - name: billing
    agents: "agent.skills.billing >= 1"
    offer_timeout_seconds: 4
    service_level: {threshold_seconds: 7.5, target: 0.85}
  - name: sales
    agents: "agent.skills.sales >= 1"
rules:
  - name: escalate
    when: "contact.intent == 'escalate'"
    steps: [{queue: billing, timeout_seconds: 10}, {queue: sales}]
  - {name: default, when: "true", steps: [{queue: billing}]}
"""
#: 2024-10-04 01:00 UTC
START_MS = 20_000 * 86_400_000 + 3_600_000


class Scenario:
    """One app whose clock moves only when told (``advance``), timers firing as it does."""

    def __init__(self, ops: Ops) -> None:
        self.ops = ops
        self.clock = ManualClock(START_MS)
        app = ops.client.app
        app[k.SERVICE].clock = self.clock
        app[k.TIMERS].clock = self.clock
        app[k.PRESENCE].clock = self.clock

    async def advance(self, seconds: float) -> None:
        """Move the clock and let the timer loop fire what fell due."""
        self.clock.advance(seconds)
        timers = self.ops.client.app[k.TIMERS]
        fired = timers.fired
        timers.wake()
        deadline = time.monotonic() + 0.5
        # a pass that fires nothing is over at once; one that fires runs its scripts
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if timers.fired != fired:
                fired = timers.fired
                deadline = time.monotonic() + 0.1

    async def status(self, contact_id: str) -> dict[str, object]:
        out: dict[str, object] = await self.ops.call("GET", f"/v1/contacts/{contact_id}")
        return out


async def scenario(make_app: AppFactory, tmp_path: Path) -> Scenario:
    path = tmp_path / "routing.yaml"
    await asyncio.to_thread(path.write_text, ROUTING)
    return Scenario(await make_app(config=str(path)))


async def test_an_escalated_contact_counts_where_it_ends_with_its_first_threshold(
    make_app: AppFactory, tmp_path: Path
) -> None:
    """A contact escalated from billing to sales is offered on billing, answered (or
    abandoned) on sales, and judged by billing's 7.5 s threshold, not sales' 20 s."""
    run = await scenario(make_app, tmp_path)
    ops = run.ops
    await ops.agent("s1", "away", sales=3)
    answered = await ops.contact(intent="escalate")
    left = await ops.contact(intent="escalate")
    await run.advance(10.5)
    assert (await run.status(answered["id"]))["queue"] == "sales"
    await run.advance(1.5)  # 12 s: late for billing's threshold, in time for sales'
    await ops.call("POST", "/v1/agents/s1/state", {"state": "available"})
    offer = await run.status(answered["id"])
    assert offer["status"] == "offered"
    await ops.call("POST", f"/v1/reservations/{offer['reservation_id']}/accept")
    await ops.call("POST", f"/v1/contacts/{left['id']}/abandon", token=GATEWAY)
    text = await ops.metrics()
    lab = {"tenant": ops.tenant, "channel": "voice", "segment": "standard"}
    billing, sales = {**lab, "queue": "billing"}, {**lab, "queue": "sales"}
    assert value(text, "switchboard_contacts_offered_total", **billing) == 2
    assert value(text, "switchboard_contacts_offered_total", **sales) == 0
    assert value(text, "switchboard_contacts_answered_total", **sales) == 1
    assert value(text, "switchboard_contacts_answered_within_threshold_total", **sales) == 0
    assert value(text, "switchboard_queue_wait_seconds_sum", **sales) == 12
    abandoned = "switchboard_contacts_abandoned_total"
    assert value(text, abandoned, **sales, before_threshold="false") == 1
    assert value(text, abandoned, **billing, before_threshold="false") == 0
    today = "switchboard_queue_today_contacts"
    key = {"tenant": ops.tenant, "queue": "sales"}
    assert value(text, today, **key, outcome="answered") == 1
    assert value(text, today, **key, outcome="abandoned") == 1
    assert value(text, today, **key, outcome="offered") == 0
    assert value(text, "switchboard_queue_service_level_ratio", **key) == 0


async def test_service_level_speed_of_answer_and_abandons_by_hand(
    make_app: AppFactory, tmp_path: Path
) -> None:
    """Billing (7.5 s): one answered at 5 s, one at 41 s after an offer that timed out, one
    left at 3 s and one at 41 s: service level 1 / 4 (short abandons count), ASA 23 s, the
    wait counted from arrival through the missed offer; /metrics and GET /v1/queues agree."""
    run = await scenario(make_app, tmp_path)
    ops = run.ops
    await ops.agent("a1", "away", billing=5)
    first, second, early, late = [await ops.contact() for _ in range(4)]
    await run.advance(3)
    await ops.call("POST", f"/v1/contacts/{early['id']}/abandon", token=GATEWAY)
    await run.advance(2)
    await ops.call("POST", "/v1/agents/a1/state", {"state": "available"})
    offer = await run.status(first["id"])
    await ops.call("POST", f"/v1/reservations/{offer['reservation_id']}/accept")  # 5 s
    await run.advance(20)
    await ops.call("POST", f"/v1/contacts/{first['id']}/complete", {"wrap_up_seconds": 10})
    await run.advance(10)  # wrap-up over at 35 s: a1 is offered `second`...
    assert (await run.status(second["id"]))["status"] == "offered"
    await run.advance(4)  # ...and misses it (4 s offer timeout): back in line, a1 away
    assert (await run.status(second["id"]))["status"] == "queued"
    await run.advance(1)
    await ops.call("POST", "/v1/agents/a1/state", {"state": "available"})
    await run.advance(1)
    offer = await run.status(second["id"])
    await ops.call("POST", f"/v1/reservations/{offer['reservation_id']}/accept")  # 41 s
    await ops.call("POST", f"/v1/contacts/{late['id']}/abandon", token=GATEWAY)  # 41 s
    text = await ops.metrics()
    queue = await ops.call("GET", "/v1/queues/billing")
    lab = {"tenant": ops.tenant, "queue": "billing", "channel": "voice", "segment": "standard"}
    assert value(text, "switchboard_contacts_answered_total", **lab) == 2
    assert value(text, "switchboard_contacts_answered_within_threshold_total", **lab) == 1
    abandoned = "switchboard_contacts_abandoned_total"
    assert value(text, abandoned, **lab, before_threshold="true") == 1
    assert value(text, abandoned, **lab, before_threshold="false") == 1
    assert value(text, "switchboard_queue_wait_seconds_sum", **lab) == 46
    assert value(text, "switchboard_queue_wait_seconds_bucket", **lab, le="7.5") == 1
    assert value(text, "switchboard_handle_time_seconds_sum", **lab) == 20
    assert value(text, "switchboard_contacts_wait_seconds_total", **lab) == 46
    assert value(text, "switchboard_contacts_handle_seconds_total", **lab) == 20
    wrap = {"tenant": ops.tenant, "queue": "billing", "channel": "voice"}
    assert value(text, "switchboard_wrap_up_seconds_total", **wrap) == 10
    for outcome, n in (("accepted", 2), ("timed_out", 1), ("rejected", 0), ("rescinded", 0)):
        assert value(text, "switchboard_reservations_total", outcome=outcome) == n, outcome
    key = {"tenant": ops.tenant, "queue": "billing"}
    assert queue["service_level"] == 0.25
    assert value(text, "switchboard_queue_service_level_ratio", **key) == 0.25
    today = "switchboard_queue_today_contacts"
    figures = {o: value(text, today, **key, outcome=o) for o in ("answered", "abandoned")}
    assert figures == {"answered": 2, "abandoned": 2}
    assert value(text, "switchboard_queue_today_wait_seconds", **key) == 46  # ASA 23 s


async def test_per_day_counters_take_the_utc_day_of_each_event(
    make_app: AppFactory, tmp_path: Path
) -> None:
    """A contact that arrives at 23:59:50 UTC and is answered at 00:00:10 is offered on the
    first day and answered (20 s of wait, late) on the second, whose service level it alone
    makes; the first day's figures are no longer today's."""
    run = await scenario(make_app, tmp_path)
    run.clock.ms = START_MS - 3_600_000 + 86_400_000 - 10_000  # 23:59:50
    ops = run.ops
    await ops.agent("a1", "away", billing=5)
    contact = await ops.contact()
    key = {"tenant": ops.tenant, "queue": "billing"}
    today = "switchboard_queue_today_contacts"
    assert value(await ops.metrics(), today, **key, outcome="offered") == 1
    await run.advance(20)
    await ops.call("POST", "/v1/agents/a1/state", {"state": "available"})
    offer = await run.status(contact["id"])
    await ops.call("POST", f"/v1/reservations/{offer['reservation_id']}/accept")
    text = await ops.metrics()
    figures = {o: value(text, today, **key, outcome=o) for o in ("offered", "answered")}
    assert figures == {"offered": 0, "answered": 1}
    assert value(text, "switchboard_queue_today_wait_seconds", **key) == 20
    assert value(text, "switchboard_queue_service_level_ratio", **key) == 0


async def test_estimated_wait_counts_wrap_up_as_busy_time(
    make_app: AppFactory, tmp_path: Path
) -> None:
    """An agent frees up after the call and its wrap-up: with one contact handled in 60 s
    and wrapped up in 30 s, a contact joining the one busy agent is estimated to wait 90 s."""
    run = await scenario(make_app, tmp_path)
    ops = run.ops
    await ops.agent("a1", billing=5)
    first = await ops.contact()
    await ops.call("POST", f"/v1/reservations/{first['reservation_id']}/accept")
    await run.advance(60)
    await ops.call("POST", f"/v1/contacts/{first['id']}/complete", {"wrap_up_seconds": 30})
    queue = await ops.call("GET", "/v1/queues/billing")
    assert (queue["waiting"], queue["estimated_wait_seconds"]) == (0, 90)
    second = await ops.contact()
    assert (second["status"], second["estimated_wait_seconds"]) == ("queued", 90)
    key = {"tenant": ops.tenant, "queue": "billing"}
    text = await ops.metrics()
    assert value(text, "switchboard_queue_estimated_wait_seconds", **key) == 180
    assert value(text, "switchboard_queue_today_handle_seconds", **key) == 60
    assert value(text, "switchboard_queue_today_wrap_up_seconds", **key) == 30
