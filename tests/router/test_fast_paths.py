"""What the hot path skips, and the pieces that make it cheap, still behave.

* ``complete`` finds the queue's wrap-up without a ``contact_status`` round trip;
* offers of a new contact go out before its creator answers;
* scripts run pipelined on one connection (NOSCRIPT, lost connections, silent servers);
* the event loop defaults to uvloop, and full garbage collections freeze their survivors.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queues.embedded import EmbeddedRedis
from queues.errors import StoreUnavailable
from queues.keys import valid_id
from queues.redis_store import RedisStore
from router import appkeys as k
from router.fastredis import PipelinedRedis, ScriptRunner, pack, serve_client
from router.hub import Hub
from router.problems import from_store
from router.serve import GcFreezer, event_loop
from router.service import ContactIds
from tests.contract.conftest import agent
from tests.router.conftest import Api, ApiFactory
from tests.support import count_calls


def _count_status_reads(api: Api) -> list[int]:
    return count_calls(api.client.app[k.SERVICE].store, "contact_status")


async def _offer_taken(api: Api, agent: str) -> tuple[str, Any]:
    await api.agent(agent, billing=5)
    desk = await api.ws(agent)
    await desk.send({"type": "state", "state": "available"})
    contact = await api.contact()
    offer = await desk.recv("offer")
    await desk.send({"type": "accept", "reservation_id": offer["reservation_id"]})
    await desk.recv("accepted")
    return contact["id"], desk


async def test_complete_needs_no_status_lookup(api: Api) -> None:
    """The demo queues have no wrap-up: complete is one store call."""
    reads = _count_status_reads(api)
    contact_id, desk = await _offer_taken(api, "ann")
    await desk.send({"type": "complete", "contact_id": contact_id})
    done = await desk.recv("completed")
    assert done["contact"]["status"] == "completed"
    assert reads[0] == 0


async def test_complete_uses_the_queue_remembered_at_accept(
    make_api: ApiFactory, fast_routing: Path
) -> None:
    """With a wrap-up queue, the queue named by the accept reply gives the wrap-up; a contact
    accepted elsewhere (not remembered here) is looked up, with the same result."""
    api = await make_api(config=str(fast_routing))
    reads = _count_status_reads(api)
    contact_id, desk = await _offer_taken(api, "ann")
    await desk.send({"type": "complete", "contact_id": contact_id})
    assert (await desk.recv("completed"))["contact"]["status"] == "wrapping"
    assert reads[0] == 0

    await api.until("/v1/agents/ann", lambda a: a["load"] == {})
    other_id = (await api.contact())["id"]
    offer = await desk.recv("offer")
    await desk.send({"type": "accept", "reservation_id": offer["reservation_id"]})
    await desk.recv("accepted")
    api.client.app[k.SERVICE]._accepted_queue.clear()  # as if accepted on another instance
    await desk.send({"type": "complete", "contact_id": other_id})
    assert (await desk.recv("completed"))["contact"]["status"] == "wrapping"
    assert reads[0] == 1


async def test_the_offer_goes_out_before_the_creator_hears_back(api: Api) -> None:
    """The agent's offer is written before the 201 of the POST that created the contact."""
    await api.agent("ann", billing=5)
    desk = await api.ws("ann")
    await desk.send({"type": "state", "state": "available"})
    await desk.recv("state")
    hub = api.client.app[k.HUB]
    seen: list[str] = []
    original = hub._send

    async def spy(targets: Any, out: dict[str, Any]) -> None:
        seen.append(str(out.get("type")))
        await original(targets, out)

    hub._send = spy  # type: ignore[method-assign]
    contact = await api.contact()
    assert "offer" in seen  # already sent when the 201 came back
    assert (await desk.recv("offer"))["contact"]["id"] == contact["id"]


async def test_offers_out_waits_only_for_offers_held_here() -> None:
    hub = Hub()
    hub.ready.set()
    await asyncio.wait_for(hub.offers_out("t", [{"t": "offer", "a": "x", "r": "r1"}]), 0.01)
    hub.agents[("t", "ann")] = set()
    waiting = asyncio.create_task(hub.offers_out("t", [{"t": "offer", "a": "ann", "r": "r2"}]))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    hub._event_dispatched("t", "offer|r2")
    await asyncio.wait_for(waiting, 1.0)
    hub._event_dispatched("t", "offer|r3")  # dispatched first: nothing to wait for
    await asyncio.wait_for(hub.offers_out("t", [{"t": "offer", "a": "ann", "r": "r3"}]), 0.01)
    started = asyncio.get_running_loop().time()
    await hub.offers_out("t", [{"t": "offer", "a": "ann", "r": "r4"}])  # never: gives up
    assert asyncio.get_running_loop().time() - started < 1.0


# ------------------------------------------------------------------------- pipelined scripts


class _NoPool(ConnectionPool):
    """A pool that fails if anything goes through redis-py's own connections."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a command went through redis-py's pool")


def test_pack_encodes_like_redis_py() -> None:
    assert pack(["SET", "k", 1, 2.5, b"\x00"]) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\n2.5\r\n$1\r\n\x00\r\n"
    )
    with pytest.raises(Exception, match="bool"):
        pack(["SET", True])


async def test_scripts_run_pipelined_and_survive_a_script_flush(
    redis_server: EmbeddedRedis,
) -> None:
    runner = ScriptRunner(redis_server.url)
    client = PipelinedRedis(_NoPool.from_url(redis_server.url), runner)
    try:
        script = client.register_script("return {ARGV[1], tonumber(ARGV[2]) + 1}")
        replies = await asyncio.gather(*(script(keys=["x"], args=["a", n]) for n in range(50)))
        assert replies == [[b"a", n + 1] for n in range(50)]
        await runner.execute("SCRIPT", "FLUSH")
        assert await script(keys=["x"], args=["b", 1]) == [b"b", 2]
        with pytest.raises(ResponseError):
            await client.register_script("return redis.call('NOPE')")(keys=["x"])
        assert await script(keys=["x"], args=["c", 2]) == [b"c", 3]  # still in step
        # a direct EVALSHA takes the same connection, and NOSCRIPT still reads as redis-py's
        assert await client.evalsha(script.sha, 1, "x", "d", 3) == [b"d", 4]
        await runner.execute("SCRIPT", "FLUSH")
        with pytest.raises(NoScriptError):
            await client.evalsha(script.sha, 1, "x", "e", 4)
    finally:
        await client.aclose()


async def test_a_lost_connection_fails_waiting_commands_then_reconnects(
    tmp_path: Path,
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    runner = ScriptRunner(server.url, connect_timeout=1.0)
    try:
        assert await runner.execute("PING") == b"PONG"
        await asyncio.to_thread(server.stop)
        with pytest.raises(RedisConnectionError) as refused:
            await runner.execute("PING")
        assert getattr(refused.value, "sent", True) is False  # never written: nothing applied
        await asyncio.to_thread(server.start)
        assert await runner.execute("PING") == b"PONG"
    finally:
        await runner.close()
        await asyncio.to_thread(server.stop)


async def test_a_command_written_to_a_frozen_redis_may_have_been_applied(
    tmp_path: Path,
) -> None:
    """A command written before Redis stopped answering may run when it wakes: the store says
    so (StoreUnavailable.sent), and the 503 does not claim nothing was recorded."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    assert server.process is not None
    runner = ScriptRunner(server.url, reply_timeout=0.5)
    client = PipelinedRedis(ConnectionPool.from_url(server.url), runner)
    store = RedisStore(client)
    try:
        await store.load_scripts()
        await store.upsert_agent("t", agent("a1"), 1_000)
        server.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await asyncio.wait_for(store.set_agent_state("t", "a1", "available", 2_000), 5.0)
        finally:
            server.process.send_signal(signal.SIGCONT)
        assert caught.value.sent is True
        assert "may have been applied" in str(from_store(caught.value).detail)
        # it was: the script ran when Redis woke
        state = await asyncio.wait_for(store.agent_status("t", "a1"), 5.0)
        assert state.state == "available"
        await asyncio.to_thread(server.stop)
        with pytest.raises(StoreUnavailable) as down:
            await store.agent_status("t", "a1")
        assert down.value.sent is False
        assert "nothing was recorded" in str(from_store(down.value).detail)
    finally:
        await client.aclose(close_connection_pool=True)
        await asyncio.to_thread(server.stop)


@contextlib.asynccontextmanager
async def _mute_server() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that reads and never answers; yields its port."""
    done = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await done.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_a_silent_server_times_out() -> None:
    async with _mute_server() as port:
        runner = ScriptRunner(f"redis://127.0.0.1:{port}", reply_timeout=0.5)
        try:
            with pytest.raises(RedisTimeoutError):
                await asyncio.wait_for(runner.execute("PING"), 5.0)
        finally:
            await runner.close()


async def test_serve_client_times_out_as_configured() -> None:
    """SWITCHBOARD_REDIS_TIMEOUT_SECONDS and ..._CONNECT_TIMEOUT_SECONDS reach both of the
    client's paths: a script on the pipelined connection (whose connect waits for HELLO's
    reply) and a plain command on the pool (whose reply never comes)."""
    async with _mute_server() as port:
        client = serve_client(f"redis://127.0.0.1:{port}", timeout=0.3, connect_timeout=0.3)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises((RedisTimeoutError, RedisConnectionError)):
                await asyncio.wait_for(client.evalsha("0" * 40, 0), 5.0)
            with pytest.raises(RedisTimeoutError):
                await asyncio.wait_for(client.get("x"), 5.0)
            assert loop.time() - started < 2.0  # (the defaults, 2 s and 10 s, take 12 s)
        finally:
            await client.aclose(close_connection_pool=True)


class _Unretrieved:
    """Collects what the loop reports of futures whose exception nobody retrieved."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.reported: list[str] = []
        self.previous = self.loop.get_exception_handler()
        self.loop.set_exception_handler(lambda _, context: self.reported.append(context["message"]))

    async def close(self) -> list[str]:
        await asyncio.sleep(0.1)  # (the loop lets go of the lost connection)
        gc.collect()  # (a future reports when it is collected)
        self.loop.set_exception_handler(self.previous)
        return self.reported


async def test_subscribing_to_a_frozen_redis_leaves_no_exception_unretrieved(
    tmp_path: Path,
) -> None:
    """The hub subscribing again while Redis is frozen (SIGSTOP) times out; the confirmations
    it no longer waits for do not each log "Future exception was never retrieved"."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    assert server.process is not None
    runner = ScriptRunner(server.url, connect_timeout=0.3)
    unretrieved = _Unretrieved()
    try:
        assert await runner.execute("PING") == b"PONG"
        server.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(RedisTimeoutError):
                await runner.subscribe(["sbtest:*:ev"], ["sbtest-notices"])
        finally:
            server.process.send_signal(signal.SIGCONT)
        assert await asyncio.wait_for(runner.execute("PING"), 5.0) == b"PONG"
    finally:
        reported = await unretrieved.close()
        await runner.close()
        await asyncio.to_thread(server.stop)
    assert reported == []


async def test_connecting_to_a_silent_redis_leaves_no_exception_unretrieved() -> None:
    """A connection's AUTH and SELECT unanswered: the connect times out, and the reply it no
    longer waits for does not log "Future exception was never retrieved"."""
    async with _mute_server() as port:
        runner = ScriptRunner(f"redis://:secret@127.0.0.1:{port}/1", connect_timeout=0.3)
        unretrieved = _Unretrieved()
        try:
            with pytest.raises(RedisConnectionError):  # (NotSent: nothing was written)
                await runner.execute("PING")
        finally:
            reported = await unretrieved.close()
            await runner.close()
    assert reported == []


async def test_subscription_delivers_messages_in_order(redis_server: EmbeddedRedis) -> None:
    runner = ScriptRunner(redis_server.url)
    subscription = await runner.subscribe(["sbtest:*:ev"], ["sbtest-notices"])
    try:
        for n in range(5):
            await runner.execute("PUBLISH", "sbtest:{a}:ev", f"m{n}")
        await runner.execute("PUBLISH", "sbtest-notices", "n")
        got = [await asyncio.wait_for(subscription.get(), 2.0) for _ in range(6)]
        assert got == [*((b"sbtest:{a}:ev", f"m{n}".encode()) for n in range(5)),
                       (b"sbtest-notices", b"n")]  # fmt: skip
    finally:
        await runner.close()
    with pytest.raises(RedisConnectionError):
        await subscription.get()


async def test_a_scripts_events_arrive_before_its_reply_on_the_same_connection(
    redis_server: EmbeddedRedis,
) -> None:
    """Subscribed, the scripts' connection still runs commands; what a script publishes is
    queued by the time its reply is read, and an array reply shaped like a message is a reply."""
    runner = ScriptRunner(redis_server.url)
    client = PipelinedRedis(_NoPool.from_url(redis_server.url), runner)
    subscription = await runner.subscribe(["sbtest:*:ev"], [])
    try:
        publish = client.register_script(
            "redis.call('PUBLISH', 'sbtest:{a}:ev', ARGV[1]); return ARGV[1]"
        )
        for n in range(20):
            assert await publish(keys=["x"], args=[f"e{n}"]) == f"e{n}".encode()
            assert subscription.messages[-1] == (b"sbtest:{a}:ev", f"e{n}".encode())
        lookalike = client.register_script("return {'pmessage', 'sbtest:*:ev', 'c', 'd'}")
        assert await lookalike(keys=["x"]) == [b"pmessage", b"sbtest:*:ev", b"c", b"d"]
        assert await runner.execute("PING") == b"PONG"
        got = [await asyncio.wait_for(subscription.get(), 2.0) for _ in range(20)]
        assert [data for _, data in got] == [f"e{n}".encode() for n in range(20)]
        assert not subscription.messages
    finally:
        await client.aclose()


async def test_gateway_posts_still_work_with_many_in_flight(api: Api) -> None:
    """A burst of creates shares the one pipelined connection; every one is answered."""
    replies = await asyncio.gather(*(api.contact(f"burst-{n}") for n in range(200)))
    assert len({r["id"] for r in replies}) == 200


# --------------------------------------------------------------------------- process setup


def test_event_loop_defaults_to_uvloop_when_installed() -> None:
    pytest.importorskip("uvloop")
    loop = event_loop("auto")
    assert loop is not None
    assert type(loop).__module__.startswith("uvloop")
    loop.close()
    assert event_loop("asyncio") is None


def test_full_collections_freeze_their_survivors() -> None:
    """Survivors of a full collection are frozen; every n-th full collection unfreezes first."""
    freezer = GcFreezer(unfreeze_every=4)
    gc.unfreeze()
    thresholds = gc.get_threshold()
    freezer.install()  # a first full collection, and what exists is frozen
    try:
        assert gc.get_threshold()[1] == 1
        assert gc.get_freeze_count() > 0
        keep = [[n] for n in range(1000)]
        before = gc.get_freeze_count()
        gc.collect(2)
        assert gc.get_freeze_count() >= before + len(keep)
        gc.collect(1)  # not a full collection: left alone
        assert freezer.full == 2
        freezer("start", {"generation": 2})
        assert gc.get_freeze_count() > 0  # 3rd: no unfreeze
        freezer("start", {"generation": 2})
        assert gc.get_freeze_count() == 0  # 4th: everything is collectable again
        freezer("stop", {"generation": 2})
        assert gc.get_freeze_count() >= len(keep)
    finally:
        freezer.uninstall()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert freezer not in gc.callbacks


def test_contact_ids_sort_in_creation_order_and_stay_unique() -> None:
    """Same-millisecond contacts have equal places in line: their ids keep creation order."""
    ids = ContactIds()
    made = [ids.next(ms) for ms in [1_700_000_000_000] * 50 + [1_700_000_000_001] * 3]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(valid_id(i) and len(i) == 28 for i in made)
    other = ContactIds()  # another instance, same millisecond: different ids
    assert other.next(1_700_000_000_000) != made[0]
