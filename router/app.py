"""The app factory: ``create_app(settings, registry=...)`` builds the whole server.

Resources are paired startup/cleanup contexts: Redis (a shared URL, or an embedded
redis-server this process supervises), then the service with its background tasks (event
subscription, timer loop, queue statistics, presence beats). Websockets are tracked and closed
with GOING_AWAY on shutdown; their agents stay counted in Redis as present on this instance
until another one sweeps it (``router/presence.py``), so desks can reconnect elsewhere first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import structlog
from aiohttp import WSCloseCode, web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.asyncio import Redis
from redis.exceptions import RedisError

from config.routing import RoutingConfig, demo_config_path, load_routing
from config.settings import Settings
from queues.customers import CustomerStore
from queues.embedded import EmbeddedRedis
from queues.errors import StoreUnavailable, SwitchboardError
from queues.redis_store import RedisStore
from router import appkeys as k
from router import logs
from router.api import ROUTES
from router.api_channels import CHANNEL_ROUTES
from router.auth import Authenticator, TokenIssuer, bearer_token
from router.clock import Clock, WallClock
from router.customers import CustomerCache, Customers
from router.engine import Engine
from router.fastredis import PipelinedRedis, serve_client
from router.hub import Hub
from router.metrics import Metrics, QueueCollector, thresholds
from router.openapi import build as build_openapi
from router.presence import Presence
from router.problems import Problem, problem_middleware
from router.ratelimit import rate_limit_middleware
from router.reloads import ConfigReloads
from router.service import Service
from router.sockets import Senders
from router.stats import QueueStats
from router.timers import TimerLoop
from router.ws import HEARTBEATS, Heartbeats, snapshot

log = structlog.get_logger("switchboard.app")
VERSION = "0.1.0"


def config_path(settings: Settings) -> str:
    return settings.config or str(demo_config_path())


@web.middleware
async def request_context(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request_id = logs.request_id(request.headers.get("X-Request-Id", ""))
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
    finally:
        structlog.contextvars.clear_contextvars()
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response


async def check_durability(client: Redis) -> bool | None:
    """Warn (``redis.not_durable``) when a shared Redis does not write each command to disk
    before answering (``appendonly yes``, ``appendfsync always``): a 201 then does not survive a
    crash of Redis's host. True: durable; False: warned; None: Redis did not say (down, or
    ``CONFIG`` disabled, as some managed services do). Never stops the start."""
    try:
        async with asyncio.timeout(2.0):
            found = await client.config_get("append*")
    except (RedisError, OSError, TimeoutError):
        return None
    appendonly, appendfsync = found.get("appendonly"), found.get("appendfsync")
    if appendonly is None or appendfsync is None:
        return None
    if appendonly == "yes" and appendfsync == "always":
        return True
    log.warning("redis.not_durable", appendonly=appendonly, appendfsync=appendfsync)
    return False


async def check_eviction(client: Redis) -> bool | None:
    """Warn (``redis.evicts``) when a shared Redis has a ``maxmemory`` and a policy that evicts
    keys to stay under it: an evicted contact, agent or reservation is lost without a trace,
    where ``noeviction`` refuses the write instead (a ``503 store-full``, nothing applied). True:
    nothing is evicted; False: warned; None: Redis did not say. Never stops the start."""
    try:
        async with asyncio.timeout(2.0):
            found = await client.info("memory")
    except (RedisError, OSError, TimeoutError):
        return None
    policy, limit = found.get("maxmemory_policy"), found.get("maxmemory")
    if policy is None or limit is None:
        return None
    if policy == "noeviction" or not limit:
        return True
    log.warning("redis.evicts", maxmemory_policy=policy, maxmemory=limit)
    return False


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[k.SETTINGS]
    embedded: EmbeddedRedis | None = None
    if settings.redis_url:
        client = serve_client(
            settings.redis_url,
            settings.redis_timeout_seconds,
            settings.redis_connect_timeout_seconds,
        )
        await check_durability(client)
        await check_eviction(client)
    else:
        embedded = EmbeddedRedis(
            Path(settings.data_dir),
            persistent=True,
            fsync=settings.redis_fsync,
            binary=settings.redis_server,
        )
        await asyncio.get_running_loop().run_in_executor(None, embedded.start)
        log.info("redis.embedded_started", dir=str(settings.data_dir))
        client = serve_client(
            f"unix://{embedded.socket_path}",
            settings.redis_timeout_seconds,
            settings.redis_connect_timeout_seconds,
        )
    app[k.REDIS] = client
    supervisor = asyncio.create_task(_supervise(embedded)) if embedded else None
    yield
    if supervisor is not None:
        await _stop([supervisor])
    await client.aclose(close_connection_pool=True)  # (a pool given to it is not closed else)
    if embedded is not None:
        await asyncio.get_running_loop().run_in_executor(None, embedded.stop)
        log.info("redis.embedded_stopped")


async def _supervise(embedded: EmbeddedRedis) -> None:
    """Restart the embedded redis-server if it dies; its append-only file keeps the data."""
    while True:
        await asyncio.sleep(1.0)
        if not embedded.alive():
            log.error("redis.embedded_died_restarting")
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(None, embedded.start)


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[k.SETTINGS]
    client = app[k.REDIS]
    store = RedisStore(client, settings.contact_retention_days)
    await store.load_scripts()
    upgrading = asyncio.create_task(upgrade_layouts(store, settings.tenants()), name="layout")
    service = app[k.SERVICE] = Service(
        Engine(app[_CONFIG], store),
        store,
        WallClock(),
        Customers(
            CustomerStore(store),
            settings.default_region,
            app[_CONFIG].history_length,
            settings.customer_cache_size,
        ),
        QueueStats(app[_CONFIG]),
        app[_METRICS],
        idempotency_ttl_s=settings.idempotency_ttl_seconds,
    )
    secret = settings.secret_key.get_secret_value().encode() if settings.secret_key else None
    app[k.AUTH] = Authenticator(settings.static_tokens(), TokenIssuer(client, secret))
    hub = app[k.HUB]
    service.offers_out = hub.offers_out

    async def agent_snapshot(tenant: str, agent_id: str) -> list[bytes]:
        return await snapshot(service, tenant, agent_id)

    hub.snapshot = agent_snapshot
    cache = service.customers.cache
    publish = _publisher(client)
    instance = cache.instance if cache is not None else secrets.token_hex(8)
    log.info("app.instance", instance=instance)
    presence = app[k.PRESENCE] = Presence(
        store,
        service.clock,
        hub,
        instance,
        settings.instance_timeout_seconds,
        service.metrics.events,
        app[k.CLOSING],
    )
    reloads = app[k.RELOADS] = ConfigReloads(
        app[k.CONFIG_PATH], lambda: app[k.SERVICE], settings.tenants(), instance, publish
    )
    hub.on_notice = _notices(reloads, cache)
    if cache is not None:
        hub.on_disconnected = cache.disconnected

        async def connected() -> None:
            await cache.connected(publish)

        hub.on_connected = connected
    timers = app[k.TIMERS] = TimerLoop(
        store,
        service.clock,
        settings.tenants,
        service.metrics.events,
        batch=settings.timer_batch,
        lease_ms=settings.timer_lease_ms,
        max_sleep_ms=settings.timer_max_sleep_ms,
    )
    tasks = [
        upgrading,
        asyncio.create_task(hub.listen(client), name="hub"),
        asyncio.create_task(timers.run(), name="timers"),
        asyncio.create_task(_refresh_stats(app), name="stats"),
        asyncio.create_task(_watch_clock(app), name="clock"),
        asyncio.create_task(presence.run(), name="presence"),
    ]
    # (a Redis that does not answer holds the start up for 5 s at most: both carry on after)
    ready_by = asyncio.get_running_loop().time() + 5.0
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(hub.ready.wait(), 5.0)
    await asyncio.wait({upgrading}, timeout=max(0.0, ready_by - asyncio.get_running_loop().time()))
    yield
    await reloads.stop()
    await _stop(tasks)


#: how soon a tenant's layout check is tried again when Redis could not answer it
LAYOUT_RETRY_SECONDS = 1.0


async def upgrade_layouts(store: RedisStore, tenants: list[str]) -> None:
    """Bring each tenant's Redis data to the layout the scripts keep (``upgrade_layout.lua``),
    before serving when Redis answers, else as soon as it does: the upgrade counts from the
    agents' records, so the state changes made meanwhile are counted too."""
    left, warned = list(tenants), set()
    while True:
        for tenant in list(left):
            try:
                found, now, agents = await store.upgrade_layout(tenant)
            except StoreUnavailable as exc:
                if tenant not in warned:  # (once: it is tried again every second)
                    warned.add(tenant)
                    log.warning("redis.layout_unchecked", tenant=tenant, error=str(exc))
                continue
            left.remove(tenant)
            if found != now and agents:  # (a new tenant has its layout recorded, silently)
                log.info(
                    "redis.layout_upgraded", tenant=tenant, found=found, layout=now, agents=agents
                )
        if not left:
            return
        await asyncio.sleep(LAYOUT_RETRY_SECONDS)


def _notices(reloads: ConfigReloads, cache: CustomerCache | None) -> Callable[[bytes], None]:
    """The notice channel's reader: config reloads here, the rest to the customer cache."""

    def on_notice(raw: bytes) -> None:
        try:
            notice = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("notice.malformed")
            return
        if isinstance(notice, dict) and notice.get("k") == "config":
            reloads.on_notice(notice)
        elif cache is not None:
            cache.on_notice(raw)

    return on_notice


def _publisher(client: Redis) -> Callable[[str, bytes], Awaitable[int]]:
    """PUBLISH, on the scripts' pipelined connection when there is one."""
    if isinstance(client, PipelinedRedis):
        runner = client.runner

        async def publish(channel: str, data: bytes) -> int:
            return int(await runner.execute("PUBLISH", channel, data))

        return publish

    async def publish_plain(channel: str, data: bytes) -> int:
        return int(await client.publish(channel, data))

    return publish_plain


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait until each has really ended.

    On Python 3.11 ``asyncio.wait_for`` (used by the timer loop and inside redis-py) swallows
    a cancellation that arrives as its inner future completes; the loop then runs on and
    shutdown would hang. So a task is cancelled again until it is done.
    """
    for task in tasks:
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if not task.cancelled() and task.exception() is not None:
            log.error("app.task_failed", task=task.get_name(), error=repr(task.exception()))


#: how often each instance compares its clock with Redis's, and the offset it warns about
CLOCK_CHECK_SECONDS = 30.0
CLOCK_SKEW_WARN_SECONDS = 0.5


async def clock_offset(client: Redis, clock: Clock) -> float:
    """This instance's clock minus Redis's, in seconds: Redis ``TIME`` against the midpoint of
    the clock read before and after it (so off by at most half the round trip).

    Every instance stamps waits, offer expiries and timers from its own clock, so instances on
    one Redis must agree; Redis's clock is the one reference they all see.
    """
    before = clock.now_ms()
    seconds, micros = await client.time()
    after = clock.now_ms()
    return ((before + after) / 2 - (seconds * 1000 + micros / 1000)) / 1000


async def check_clock(app: web.Application) -> float | None:
    """Measure the offset once: exported as ``switchboard_clock_offset_seconds`` and logged
    (``clock.skew``, a warning) when over ``CLOCK_SKEW_WARN_SECONDS`` either way. None when
    Redis did not answer."""
    try:
        offset = await clock_offset(app[k.REDIS], app[k.SERVICE].clock)
    except (RedisError, OSError):
        return None
    app[_COLLECTOR].clock_offset = offset
    if abs(offset) > CLOCK_SKEW_WARN_SECONDS:
        log.warning("clock.skew", offset_seconds=round(offset, 3))
    return offset


async def _watch_clock(app: web.Application) -> None:
    while True:
        await check_clock(app)
        await asyncio.sleep(CLOCK_CHECK_SECONDS)


async def _refresh_stats(app: web.Application) -> None:
    settings = app[k.SETTINGS]
    while True:
        for tenant in settings.tenants():
            with contextlib.suppress(SwitchboardError):
                await app[k.SERVICE].queues(tenant)
        await asyncio.sleep(settings.stats_refresh_seconds)


async def _close_sockets(app: web.Application) -> None:
    app[k.CLOSING].set()
    sockets: set[web.WebSocketResponse] = app[k.SOCKETS]
    for ws in list(sockets):
        with contextlib.suppress(Exception):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    """Prometheus text; queue gauges are read from Redis now, so every instance agrees.

    The scrape succeeds even when Redis does not answer: ``switchboard_redis_up`` is then 0
    and the Redis-derived gauges are left out. The read gets a few seconds at most, so a hung
    Redis cannot push the scrape past Prometheus's own timeout.
    """
    app = request.app
    wanted = app[k.SETTINGS].metrics_token
    if wanted is not None and wanted.get_secret_value():
        given = bearer_token(request)
        # (header bytes that are not UTF-8 come as surrogates: compare them as they were sent)
        if not hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), wanted.get_secret_value().encode()
        ):
            raise Problem(
                401,
                "/metrics needs the SWITCHBOARD_METRICS_TOKEN bearer token",
                kind="unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )
    ok = True
    try:
        async with asyncio.timeout(METRICS_READ_TIMEOUT_SECONDS):
            for tenant in app[k.SETTINGS].tenants():
                await app[k.SERVICE].queues(tenant)
    except Exception as exc:  # any failure to read is "Redis down" for this scrape
        ok = False
        log.warning("metrics.redis_read_failed", error=str(exc) or type(exc).__name__)
    app[_COLLECTOR].mark(ok)
    body = generate_latest(app[k.REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_handler(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[_OPENAPI])


_CONFIG = web.AppKey("routing_config", RoutingConfig)
_METRICS = web.AppKey("metrics", Metrics)
_COLLECTOR = web.AppKey("queue_collector", QueueCollector)
METRICS_READ_TIMEOUT_SECONDS = 3.0
_OPENAPI = web.AppKey("openapi", dict)


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> web.Application:
    """Build the server. Raises ``ConfigInvalid`` for a bad routing config (nothing starts)."""
    path = config_path(settings)
    config = load_routing(path)
    registry = registry or CollectorRegistry()
    app = web.Application(
        client_max_size=max(settings.max_body_bytes, settings.max_email_bytes),
        middlewares=[
            request_context,
            problem_middleware(settings.retry_after_seconds),
            *(
                [rate_limit_middleware(settings.rate_limit_per_second, settings.rate_limit_burst)]
                if settings.rate_limit_per_second > 0
                else []
            ),
        ],
    )
    app[k.SETTINGS] = settings
    app[k.REGISTRY] = registry
    app[k.CONFIG_PATH] = path
    app[k.HUB] = Hub()
    app[k.SOCKETS] = set()
    app[k.CLOSING] = asyncio.Event()
    app[HEARTBEATS] = Heartbeats(
        settings.heartbeat_interval_seconds, settings.heartbeat_timeout_seconds
    )
    app.on_cleanup.append(app[HEARTBEATS].stop)
    app[k.SENDERS] = Senders(settings.ws_max_unsent_bytes)
    app.on_cleanup.append(app[k.SENDERS].stop)
    app[_CONFIG] = config
    app[_METRICS] = Metrics(registry, thresholds(config))
    app[_METRICS].prepare(settings.tenants(), config)
    app[_COLLECTOR] = QueueCollector(lambda: app[k.SERVICE])
    registry.register(app[_COLLECTOR])
    app[_OPENAPI] = build_openapi(VERSION)
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_service_ctx)
    app.on_shutdown.append(_close_sockets)
    for route in ROUTES + CHANNEL_ROUTES:
        if route.method == "GET" and route.status != 101:
            # (with HEAD, as add_get gives it: load balancers and monitors probe with HEAD)
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/openapi.json", openapi_handler)
    return app
