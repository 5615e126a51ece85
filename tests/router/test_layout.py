"""An app brings Redis data written in an earlier layout up to date as it starts, and, when
Redis is not there yet, as soon as it is."""

from __future__ import annotations

import asyncio
from pathlib import Path

from redis.asyncio import Redis
from structlog.testing import capture_logs

from queues.embedded import EmbeddedRedis
from queues.keys import Keys
from queues.redis_store import RedisStore
from router.app import upgrade_layouts
from tests.router.conftest import ApiFactory


async def test_an_app_starting_on_layout_0_data_counts_its_staffing_again(
    make_api: ApiFactory, redis_url: str, tenant: str
) -> None:
    """Staffing kept as layout 0 kept it (one counter per queue) is recounted when an app
    starts: the queue and the waiting contact's estimate show the agents staffed."""
    first = await make_api()
    await first.agent("a1", capacity={"chat": 3}, billing=5)
    await first.state("a1", "away")
    created = await first.contact(channel="chat", intent="billing", language="en")
    # what layout 0 had for this: a counter q:billing:staffed (1 agent signed in, none
    # available), no staffing hash and no layout recorded
    keys = Keys(tenant)
    client = Redis.from_url(redis_url)
    try:
        assert await client.delete(keys.queue_staffing("billing"), keys.layout()) == 2
        await client.set(keys.queue_staffed("billing"), 2**32)
        before = await first.get("/v1/queues/billing")
        assert before["agents_staffed"] == 0
        with capture_logs() as logs:
            second = await make_api()
        upgraded = [e for e in logs if e["event"] == "redis.layout_upgraded"]
        assert upgraded == [
            {"event": "redis.layout_upgraded", "log_level": "info", "tenant": tenant,
             "found": 0, "layout": 1, "agents": 1},
        ]  # fmt: skip
        assert (await second.get("/v1/queues/billing"))["agents_staffed"] == 1
        contact = await second.get(f"/v1/contacts/{created['id']}")
        # one place ahead of nobody, three chats at once: 180 s / 3
        assert contact["estimated_wait_seconds"] == 60.0
        assert await client.exists(keys.queue_staffed("billing")) == 0
    finally:
        await client.aclose()


async def test_layouts_are_upgraded_once_redis_answers(tmp_path: Path, tenant: str) -> None:
    """With Redis not there at start, the upgrade is tried again until it answers (warning
    once), then done; a tenant with no data has its layout recorded without a word."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    client = Redis.from_url(server.url)
    store = RedisStore(client)
    try:
        with capture_logs() as logs:
            upgrading = asyncio.create_task(upgrade_layouts(store, [tenant]))
            await asyncio.sleep(2.5)  # two tries at least, one warning
            assert not upgrading.done()
            await asyncio.to_thread(server.start)
            await asyncio.wait_for(upgrading, 5.0)
        events = [e["event"] for e in logs]
        assert events == ["redis.layout_unchecked"]
        assert await client.get(Keys(tenant).layout()) == b"1"
    finally:
        await client.aclose()
        server.stop()
