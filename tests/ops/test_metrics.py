"""/metrics through the real app on a real Redis: names, help, buckets, values, Redis down.

Counters are checked against contacts this test drove itself; queue gauges against
``GET /v1/queues`` (the same Redis read), and across two instances sharing one Redis.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient

from config.routing import demo_config_path, load_routing
from config.settings import Settings
from queues.contract import Event
from queues.embedded import EmbeddedRedis
from router import appkeys as k
from router.app import check_clock, check_durability, check_eviction, create_app
from router.fastredis import serve_client
from router.metrics import Metrics, thresholds
from tests.ops.conftest import (
    ADMIN,
    DASHBOARD,
    GATEWAY,
    OPS_ROUTING,
    PROMETHEUS_DIR,
    AppFactory,
    Ops,
    promtool_check_metrics,
    tool,
    value,
)
from tests.support import json_logs

_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


async def _until(check: Callable[[], Awaitable[bool]], limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def _traffic(ops: Ops) -> dict[str, str]:
    """Drive one of each outcome in billing; returns the contact ids by what happened."""
    await ops.agent("a1", billing=5)
    answered = await ops.contact()
    assert answered["status"] == "offered"
    accept = f"/v1/reservations/{answered['reservation_id']}/accept"
    first = await ops.call("POST", accept)
    assert await ops.call("POST", accept) == first  # a desk's retry: answered, not counted again
    queued = await ops.contact()
    assert queued["status"] == "queued"
    await ops.call("POST", f"/v1/contacts/{queued['id']}/abandon")
    await ops.call("POST", f"/v1/contacts/{answered['id']}/complete", {"wrap_up_seconds": 0.2})

    async def free() -> bool:
        return not (await ops.call("GET", "/v1/agents/a1"))["load"]

    await _until(free)  # wrap-up ended
    rejected = await ops.contact()
    assert rejected["status"] == "offered"
    await ops.call("POST", f"/v1/reservations/{rejected['reservation_id']}/reject")
    timed_out = await ops.contact()
    assert timed_out["agent_id"] == "a1"  # a1 declined `rejected`, so it takes this one

    async def away() -> bool:
        return bool((await ops.call("GET", "/v1/agents/a1"))["state"] == "away")

    await _until(away)  # the 0.3 s offer timeout fired: a1 missed it and is set away
    await ops.call("POST", f"/v1/contacts/{rejected['id']}/abandon")
    await ops.call("POST", "/v1/agents/a1/state", {"state": "available"})
    again = await ops.call("GET", f"/v1/contacts/{timed_out['id']}")
    assert again["status"] == "offered"
    await ops.call("POST", f"/v1/contacts/{timed_out['id']}/abandon")  # rescinds the offer
    return {"answered": answered["id"], "rescinded": timed_out["id"]}


async def test_counters_follow_the_contacts_driven(
    make_app: AppFactory, routing_file: Path
) -> None:
    """Offered, answered, within threshold, abandoned and reservation outcomes count exactly
    (an accept repeated once: counted once)."""
    ops = await make_app(config=str(routing_file))
    await _traffic(ops)
    text = await ops.metrics()
    lab = {"tenant": ops.tenant, "queue": "billing", "channel": "voice", "segment": "standard"}
    assert value(text, "switchboard_contacts_offered_total", **lab) == 4
    assert value(text, "switchboard_contacts_answered_total", **lab) == 1
    assert value(text, "switchboard_contacts_answered_within_threshold_total", **lab) == 1
    abandoned = "switchboard_contacts_abandoned_total"
    assert value(text, abandoned, **lab, before_threshold="true") == 3
    assert value(text, abandoned, **lab, before_threshold="false") == 0
    assert value(text, "switchboard_queue_wait_seconds_count", **lab) == 1
    assert value(text, "switchboard_queue_wait_seconds_bucket", **lab, le="7.5") == 1
    assert value(text, "switchboard_handle_time_seconds_count", **lab) == 1
    wrap = value(text, "switchboard_wrap_up_seconds_total", tenant=ops.tenant, queue="billing")
    assert wrap == pytest.approx(0.2)
    assert value(text, "switchboard_reservations_offered_total") == 4
    for outcome in ("accepted", "rejected", "timed_out", "rescinded"):
        assert value(text, "switchboard_reservations_total", outcome=outcome) == 1, outcome
    assert value(text, "switchboard_routing_decision_seconds_count") == 4
    # series for combinations not seen yet exist at 0, so `increase` sees their first contact
    assert value(text, "switchboard_contacts_answered_total", **{**lab, "segment": "platinum"}) == 0


async def test_the_time_counters_start_at_zero(make_app: AppFactory, routing_file: Path) -> None:
    """Before any contact, the wrap-up, wait and handle-time counters have their series at 0,
    as the contact counters do: a series born at its first increment hides it from
    ``increase``, so ASA and occupancy would leave a series' first contact out."""
    ops = await make_app(config=str(routing_file))
    text = await ops.metrics()
    for queue in ("billing", "sales"):
        for channel in ("voice", "chat", "email", "sms"):
            wrap = {"tenant": ops.tenant, "queue": queue, "channel": channel}
            assert value(text, "switchboard_wrap_up_seconds_total", **wrap) == 0, wrap
            for segment in ("platinum", "standard"):
                lab = {**wrap, "segment": segment}
                for name in ("wait", "handle"):
                    total = f"switchboard_contacts_{name}_seconds_total"
                    assert value(text, total, **lab) == 0, (total, lab)


async def test_routing_time_ends_with_the_enqueue(make_app: AppFactory, routing_file: Path) -> None:
    """``switchboard_routing_decision_seconds`` times the customer lookup, the rules and the
    atomic enqueue, as documented: not the wait for the offer to reach the agent's socket
    (here made slow) nor the bookkeeping after it."""
    ops = await make_app(config=str(routing_file))
    service = ops.client.app[k.SERVICE]
    sent = service.offers_out

    async def slow_offers(tenant: str, events: list[Event]) -> None:
        await asyncio.sleep(0.3)
        if sent is not None:
            await sent(tenant, events)

    service.offers_out = slow_offers
    await ops.agent("a1", billing=5)
    assert (await ops.contact())["status"] == "offered"
    text = await ops.metrics()
    assert value(text, "switchboard_routing_decision_seconds_count") == 1
    assert value(text, "switchboard_routing_decision_seconds_bucket", le="0.25") == 1


async def test_a_cancelled_offer_is_counted_as_rescinded(
    make_app: AppFactory, routing_file: Path
) -> None:
    """The gateway cancelling an offered contact ends its reservation as ``rescinded`` (and
    counts no abandonment), so every reservation offered is counted once as it ends."""
    ops = await make_app(config=str(routing_file))
    await ops.agent("a1", billing=5)
    contact = await ops.contact()
    assert contact["status"] == "offered"
    await ops.call("POST", f"/v1/contacts/{contact['id']}/cancel", token=GATEWAY)
    text = await ops.metrics()
    assert value(text, "switchboard_reservations_offered_total") == 1
    ended = {
        outcome: value(text, "switchboard_reservations_total", outcome=outcome)
        for outcome in ("accepted", "rejected", "timed_out", "rescinded")
    }
    assert ended == {"accepted": 0, "rejected": 0, "timed_out": 0, "rescinded": 1}
    lab = {"tenant": ops.tenant, "queue": "billing", "channel": "voice", "segment": "standard"}
    abandoned = "switchboard_contacts_abandoned_total"
    for early in ("true", "false"):
        assert value(text, abandoned, **lab, before_threshold=early) == 0


async def test_a_callback_is_counted_under_the_channel_it_came_in_on(
    make_app: AppFactory, routing_file: Path
) -> None:
    """A call turned into a callback is offered, answered and handled under one channel label
    (the one it came in on), so a channel's service level counts it once, in and out."""
    ops = await make_app(config=str(routing_file))
    await ops.agent("a1", "offline", billing=5)  # able to call back
    call = await ops.contact(**{"from": "+1 415 555 0100"})
    assert call["status"] == "queued"
    await ops.call("POST", f"/v1/contacts/{call['id']}/callback", {}, token=GATEWAY)
    await ops.agent("a1", billing=5)
    offered = await ops.call("GET", f"/v1/contacts/{call['id']}")
    assert (offered["status"], offered["channel"]) == ("offered", "callback")
    await ops.call("POST", f"/v1/reservations/{offered['reservation_id']}/accept")
    await ops.call("POST", f"/v1/contacts/{call['id']}/complete", {})
    text = await ops.metrics()
    lab = {"tenant": ops.tenant, "queue": "billing", "segment": "standard"}
    for name in (
        "switchboard_contacts_offered_total",
        "switchboard_contacts_answered_total",
        "switchboard_queue_wait_seconds_count",
        "switchboard_handle_time_seconds_count",
    ):
        assert value(text, name, **lab, channel="voice") == 1, name
        assert not value(text, name, **lab, channel="callback"), name


async def test_cel_errors_are_exported_from_zero_and_logged_sparingly(
    make_app: AppFactory, routing_file: Path
) -> None:
    """A rule condition that fails at run time is counted under its config location, from a
    series at 0 (so ``increase`` sees the first error), kept across a config reload, and logged
    by location only at its 1st and 10th failure."""
    vip = '  - {name: vip, when: "contact.attributes.vip == true", steps: [{queue: sales}]}\n'
    await asyncio.to_thread(
        routing_file.write_text, OPS_ROUTING.replace("rules:\n", "rules:\n" + vip)
    )
    ops = await make_app(config=str(routing_file))
    errors = "switchboard_cel_errors_total"
    text = await ops.metrics()
    for where in ("segments.platinum", "rules.vip.when", "rules.default.when"):
        assert value(text, errors, expression=where) == 0, where
    assert value(text, errors, expression="queues.sales.agents") == 0
    with json_logs(b"cel-test") as stream:
        for n in range(11):
            # no `vip` attribute: the comparison is an error, so the rule is skipped
            contact = await ops.contact(attributes={"case": f"n{n}", "email": "ann@example.com"})
            assert contact["queue"] == "billing"
        sales = await ops.contact(attributes={"vip": True})
        assert sales["queue"] == "sales"
    text = await ops.metrics()
    assert value(text, errors, expression="rules.vip.when") == 11
    assert value(text, errors, expression="rules.default.when") == 0
    logged = [json.loads(line) for line in stream.getvalue().splitlines()]
    failed = [e for e in logged if e.get("event") == "cel.failed"]
    assert [(e["expression"], e["count"]) for e in failed] == [
        ("rules.vip.when", 1),
        ("rules.vip.when", 10),
    ]
    assert "ann@example.com" not in stream.getvalue()
    # a reload builds a new engine: the counter carries on instead of going back to 0
    await asyncio.to_thread(routing_file.write_text, OPS_ROUTING)
    assert (await ops.call("POST", "/v1/config/reload"))["rules"] == 2
    assert value(await ops.metrics(), errors, expression="rules.vip.when") == 11


async def test_queue_gauges_match_get_queues(make_app: AppFactory, routing_file: Path) -> None:
    """Service level, waits and staffing on /metrics are the figures GET /v1/queues gives."""
    ops = await make_app(config=str(routing_file))
    await _traffic(ops)
    await ops.agent("s1", state="away", sales=3)
    await ops.contact(intent="sales")  # waits in sales: s1 is away
    text = await ops.metrics()
    queues = {q["name"]: q for q in (await ops.call("GET", "/v1/queues"))["queues"]}
    billing, sales = queues["billing"], queues["sales"]
    key = {"tenant": ops.tenant, "queue": "billing"}
    assert billing["service_level"] == pytest.approx(0.25)  # 1 in time of 1 answered + 3 left
    assert value(text, "switchboard_queue_service_level_ratio", **key) == billing["service_level"]
    ewt = value(text, "switchboard_queue_estimated_wait_seconds", **key)
    assert ewt == billing["estimated_wait_seconds"]
    assert value(text, "switchboard_queue_today_contacts", **key, outcome="abandoned") == 3
    assert value(text, "switchboard_queue_today_contacts", **key, outcome="offered") == 4
    skey = {"tenant": ops.tenant, "queue": "sales"}
    assert value(text, "switchboard_queue_waiting", **skey) == sales["waiting"] == 1
    assert value(text, "switchboard_queue_agents_staffed", **skey) == sales["agents_staffed"] == 1
    assert value(text, "switchboard_queue_agents", **skey, state="away") == 1
    assert value(text, "switchboard_queue_agents", **skey, state="available") == 0
    oldest = value(text, "switchboard_queue_oldest_wait_seconds", **skey)
    assert oldest is not None
    assert 0 <= oldest < 5
    assert value(text, "switchboard_queue_service_level_ratio", **skey) is None  # no outcome yet
    assert value(text, "switchboard_redis_up") == 1
    target = "switchboard_service_level_target_ratio"
    assert value(text, target, queue="billing", channel="voice") == 0.85  # the queue override
    assert value(text, target, queue="sales", channel="voice") == 0.80  # the channel level
    # a segment with its own level: its contacts are held to it whatever their queue
    segment_target = "switchboard_segment_service_level_target_ratio"
    assert value(text, segment_target, segment="platinum") == 0.95
    assert (
        value(text, "switchboard_segment_service_level_threshold_seconds", segment="platinum") == 3
    )
    assert value(text, segment_target, segment="standard") is None  # none of its own


async def test_a_queue_removed_by_a_reload_leaves_the_gauges(
    make_app: AppFactory, routing_file: Path
) -> None:
    """After a config reload removes a queue, /metrics no longer reports it (as GET /v1/queues
    does not) rather than repeating its last staffing and service level for good."""
    ops = await make_app(config=str(routing_file))
    await ops.agent("s1", sales=3)
    sale = await ops.contact(intent="sales")
    await ops.call("POST", f"/v1/reservations/{sale['reservation_id']}/accept")
    key = {"tenant": ops.tenant, "queue": "sales"}
    text = await ops.metrics()
    assert value(text, "switchboard_queue_agents_staffed", **key) == 1
    assert value(text, "switchboard_queue_service_level_ratio", **key) == 1
    without_sales = "\n".join(
        line
        for line in OPS_ROUTING.splitlines()
        if "sales" not in line and "most_skilled" not in line
    )
    await asyncio.to_thread(routing_file.write_text, without_sales + "\n")
    assert (await ops.call("POST", "/v1/config/reload"))["queues"] == 1
    assert [q["name"] for q in (await ops.call("GET", "/v1/queues"))["queues"]] == ["billing"]
    # a refresh begun before the reload, naming the old queues, ends after it
    await ops.client.app[k.SERVICE].queues(ops.tenant, ["billing", "sales"])
    text = await ops.metrics()
    for name in ("switchboard_queue_agents_staffed", "switchboard_queue_service_level_ratio"):
        assert value(text, name, **key) is None, name
    assert value(text, "switchboard_queue_agents_staffed", **{**key, "queue": "billing"}) == 0


async def test_gauges_agree_across_instances(make_app: AppFactory, routing_file: Path) -> None:
    """Two instances on one Redis report the same queue gauges; counters stay per instance."""
    one = await make_app(config=str(routing_file))
    two = await make_app(config=str(routing_file))
    await one.agent("s1", state="away", sales=3)
    for _ in range(3):
        await one.contact(intent="sales")
    a, b = await one.metrics(), await two.metrics()
    key = {"tenant": one.tenant, "queue": "sales"}
    for name in ("switchboard_queue_waiting", "switchboard_queue_agents_staffed"):
        assert value(a, name, **key) == value(b, name, **key) == (3 if "wait" in name else 1)
    lab = {**key, "channel": "voice", "segment": "standard"}
    assert value(a, "switchboard_contacts_offered_total", **lab) == 3
    assert value(b, "switchboard_contacts_offered_total", **lab) == 0


def test_wait_buckets_include_every_threshold() -> None:
    """The wait histogram has a bucket at each channel, segment and queue threshold."""
    config = load_routing(
        {
            "service_levels": {"chat": {"threshold_seconds": 42, "target": 0.8}},
            "segments": [
                {
                    "name": "vip",
                    "when": "true",
                    "service_level": {"threshold_seconds": 3.5, "target": 0.9},
                }
            ],
            "queues": [
                {
                    "name": "q",
                    "agents": "true",
                    "service_level": {"threshold_seconds": 13, "target": 0.9},
                }
            ],
            "rules": [{"name": "d", "steps": [{"queue": "q"}]}],
        }
    )
    found = thresholds(config)
    assert {42, 3.5, 13, 20, 14400, 3600} <= found  # chat, segment, queue, voice/email/sms
    metrics = Metrics(CollectorRegistry(), found)
    assert found <= set(metrics.wait_buckets)
    demo = load_routing(demo_config_path())
    assert {10, 20, 60, 900, 14400} <= set(
        Metrics(CollectorRegistry(), thresholds(demo)).wait_buckets
    )


async def test_every_family_has_help_and_type(make_app: AppFactory, routing_file: Path) -> None:
    """Each switchboard_ sample belongs to a family with HELP and TYPE."""
    ops = await make_app(config=str(routing_file))
    await _traffic(ops)
    text = await ops.metrics()
    helped = set(re.findall(r"^# HELP (\S+) ", text, re.M))
    typed = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    samples = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    ours = {s for s in samples if s.startswith("switchboard_")}
    assert len(ours) > 20
    for name in ours:
        family = next((f for f in typed if name == f or name in {f + x for x in _SUFFIXES}), None)
        assert family is not None, f"{name} has no TYPE"
        assert family in helped, f"{family} has no HELP"


async def test_promtool_check_metrics_passes(make_app: AppFactory, routing_file: Path) -> None:
    """promtool check metrics accepts the app's /metrics after every kind of outcome."""
    promtool = tool("promtool")
    ops = await make_app(config=str(routing_file))
    await _traffic(ops)
    result = promtool_check_metrics(promtool, await ops.metrics())
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip(), result.stdout


async def test_metrics_token_guards_the_scrape(make_app: AppFactory, routing_file: Path) -> None:
    """With SWITCHBOARD_METRICS_TOKEN set, /metrics is a 401 problem without that bearer token
    (an admin token is not it) and the usual text with it."""
    ops = await make_app(config=str(routing_file), metrics_token="scrape-7d1e")
    for headers in ({}, {"Authorization": f"Bearer {ADMIN}"}, {"Authorization": "scrape-7d1e"}):
        async with ops.client.get("/metrics", headers=headers) as resp:
            assert resp.status == 401, headers
            assert resp.content_type == "application/problem+json"
            assert resp.headers["WWW-Authenticate"] == "Bearer"
    async with ops.client.get("/metrics", headers={"Authorization": "Bearer scrape-7d1e"}) as ok:
        assert ok.status == 200
        assert value(await ok.text(), "switchboard_redis_up") == 1


@pytest.mark.redis
async def test_scrape_succeeds_with_redis_down(
    aiohttp_client: AiohttpClient, tmp_path: Path, routing_file: Path
) -> None:
    """With Redis gone, /metrics still answers 200 with switchboard_redis_up 0 and no gauges."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    (tmp_path / "redis").mkdir()
    server.start()
    try:
        settings = Settings(
            redis_url=server.url, admin_token=SecretStr(ADMIN), config=str(routing_file)
        )
        client = await aiohttp_client(create_app(settings))
        ops = Ops(client, "default")
        before = await ops.metrics()
        assert value(before, "switchboard_redis_up") == 1
        assert value(before, "switchboard_queue_waiting", queue="billing") == 0
    finally:
        server.stop()
    after = await ops.metrics()
    assert value(after, "switchboard_redis_up") == 0
    assert value(after, "switchboard_queue_waiting", queue="billing") is None
    assert value(after, "switchboard_service_level_target_ratio", queue="billing") == 0.85
    assert value(after, "switchboard_contacts_offered_total", queue="billing") == 0


async def test_dashboard_reads_only_series_that_exist(
    make_app: AppFactory, routing_file: Path
) -> None:
    """Every series the Grafana dashboard queries is exported or recorded by the shipped rules."""
    ops = await make_app(config=str(routing_file))
    await _traffic(ops)
    text = await ops.metrics()
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    rules = yaml.safe_load((PROMETHEUS_DIR / "switchboard-rules.yml").read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"]}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) > 20
    used = {n for e in exprs for n in re.findall(r"\bswitchboard[_:][\w:]+", e)}
    missing = {n for n in used if n not in exported and n not in recorded}
    assert not missing, missing
    assert "up" in " ".join(exprs)


async def test_clock_offset_from_redis_is_exported_and_warned(
    make_app: AppFactory, routing_file: Path
) -> None:
    """Each instance compares its clock with Redis's ``TIME``: in step, the gauge is near 0;
    a clock 3 s ahead shows as +3 s and is logged as a ``clock.skew`` warning."""
    ops = await make_app(config=str(routing_file))
    app = ops.client.app
    offset = None
    for _ in range(50):  # the instance measures once at startup, in the background
        offset = value(await ops.metrics(), "switchboard_clock_offset_seconds")
        if offset is not None:
            break
        await asyncio.sleep(0.05)
    assert offset is not None
    assert abs(offset) < 0.25
    service = app[k.SERVICE]
    wall = service.clock

    class Ahead:
        def now_ms(self) -> int:
            return wall.now_ms() + 3000

    service.clock = Ahead()
    with json_logs(b"clock-test") as stream:
        measured = await check_clock(app)
    assert measured is not None
    assert 2.75 < measured < 3.25
    shown = value(await ops.metrics(), "switchboard_clock_offset_seconds")
    assert shown is not None
    assert 2.75 < shown < 3.25
    logged = [json.loads(line) for line in stream.getvalue().splitlines()]
    skews = [e for e in logged if e.get("event") == "clock.skew"]
    assert len(skews) == 1
    assert 2.75 < skews[0]["offset_seconds"] < 3.25
    assert skews[0]["level"] == "warning"
    service.clock = wall
    with json_logs(b"clock-test") as stream:
        assert abs(await check_clock(app) or 9) < 0.25
    assert "clock.skew" not in stream.getvalue()


async def test_a_shared_redis_that_does_not_fsync_each_write_is_warned_of(
    tmp_path: Path, redis_url: str
) -> None:
    """At startup on ``SWITCHBOARD_REDIS_URL`` the server reads Redis's append-only settings:
    the test suite's server (no persistence) draws a ``redis.not_durable`` warning naming
    them; one with ``appendonly yes`` and ``appendfsync always`` draws none."""
    plain = serve_client(redis_url)
    durable_server = EmbeddedRedis(tmp_path / "durable", persistent=True, fsync="always")
    await asyncio.to_thread(durable_server.start)
    durable = serve_client(durable_server.url)
    try:
        with json_logs(b"durability-test", level="warning") as stream:
            assert await check_durability(plain) is False
            assert await check_durability(durable) is True
        logged = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(e["event"], e["appendonly"], e["appendfsync"]) for e in logged] == [
            ("redis.not_durable", "no", "everysec")
        ]
    finally:
        await plain.aclose(close_connection_pool=True)
        await durable.aclose(close_connection_pool=True)
        await asyncio.to_thread(durable_server.stop)


async def test_a_shared_redis_that_may_evict_keys_is_warned_of(tmp_path: Path) -> None:
    """At startup on ``SWITCHBOARD_REDIS_URL`` the server reads Redis's memory policy: a
    ``maxmemory`` with a policy that evicts (``allkeys-lru`` here) draws a ``redis.evicts``
    warning naming both, since an evicted contact is lost without a trace; ``noeviction``, or
    no ``maxmemory`` at all, draws none."""
    server = EmbeddedRedis(tmp_path / "evicts", persistent=False)
    await asyncio.to_thread(server.start)
    client = serve_client(server.url)
    try:
        with json_logs(b"eviction-test", level="warning") as stream:
            assert await check_eviction(client) is True  # no maxmemory
            await client.config_set("maxmemory-policy", "allkeys-lru")
            assert await check_eviction(client) is True  # a policy, but no limit to apply it
            await client.config_set("maxmemory", "2gb")
            assert await check_eviction(client) is False
            await client.config_set("maxmemory-policy", "noeviction")
            assert await check_eviction(client) is True
        logged = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(e["event"], e["maxmemory_policy"], e["maxmemory"]) for e in logged] == [
            ("redis.evicts", "allkeys-lru", 2 * 1024**3)
        ]
    finally:
        await client.aclose(close_connection_pool=True)
        await asyncio.to_thread(server.stop)
