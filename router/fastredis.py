"""Scripts over one pipelined Redis connection: the hot path's round trips, made cheap.

Every routing transition is one EVALSHA. redis-py runs each command on a connection borrowed
from a pool, under a per-read timeout and a retry wrapper, which costs more CPU than the
command itself. Here all scripts share one connection: a command is written as soon as it is
issued, replies come back in order and are matched to their callers by a queue (Redis answers
a connection's commands in order), and one timer per connection stands for all the per-call
timeouts. Everything else (pub/sub, tokens, health checks) stays on the redis-py client.

A command whose connection is lost before its reply raises ``redis.exceptions.ConnectionError``
and is not retried (a script may have run); a connection with no reply for ``reply_timeout``
seconds while commands wait is closed and they raise ``redis.exceptions.TimeoutError``. Either
way the next command connects again.

The hub's event subscription rides on the same connection (``ScriptRunner.subscribe``): the
connection switches to RESP3 (``HELLO 3``), which lets a subscribed connection go on running
commands, and pushes the subscribed messages between the replies. A script's published events
then arrive before its reply, in the same read, with no second socket to wake for. The hub is
woken after the whole read, so a script's caller resumes first: a websocket action's reply
goes out before the events it caused, and the create handler still waits for its offers
(``Hub.offers_out``), which the hub sends in the same turn of the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import BlockingConnectionPool, ConnectionPool, parse_url
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, KeyT, ScriptTextT


def pack(args: Sequence[Any]) -> bytes:
    """One command in RESP, encoded as redis-py does (str UTF-8, numbers as text)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        kind = arg.__class__  # exact types first: every script call packs a dozen arguments
        if kind is str:
            data = arg.encode()
        elif kind is int:
            data = b"%d" % arg
        elif kind is bytes:
            data = arg
        else:
            data = _encode(arg)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _encode(arg: Any) -> bytes:
    """An argument of any other type (a subclass, a float), or a ``DataError``."""
    if isinstance(arg, bytes):
        return bytes(arg)
    if isinstance(arg, str):
        return str.encode(arg)
    if isinstance(arg, bool):
        raise DataError("a bool is not a Redis argument")
    if isinstance(arg, int):
        return b"%d" % arg
    if isinstance(arg, float):
        return repr(arg).encode()
    raise DataError(f"cannot send a {type(arg).__name__} to Redis")


_INCOMPLETE = object()  # what the reader returns until a whole reply is in (False is a reply)
_PUSH = hiredis.PushNotification  # a RESP3 push frame (a list otherwise)
#: pushes that answer a command: one confirmation per name (P)SUBSCRIBE'd or unsubscribed
_CONFIRMATIONS = frozenset({b"subscribe", b"psubscribe", b"unsubscribe", b"punsubscribe"})


def _pushed(push: list[Any], subscription: Subscription | None) -> bool:
    """Take a push frame: a message goes to the subscription (dropped if there is none now);
    a (un)subscribe confirmation is a command's reply (False: the caller answers with it)."""
    kind = push[0] if push else b""
    if kind in _CONFIRMATIONS:
        return False
    if subscription is not None:
        if kind == b"pmessage" and len(push) == 4:
            subscription.messages.append((push[2], push[3]))
        elif kind == b"message" and len(push) == 3:
            subscription.messages.append((push[1], push[2]))
    return True


def _abandon(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Replies nobody will wait for any more (their connection is being failed): cancelled,
    so that the failure does not leave each one an exception never retrieved (which asyncio
    logs as noise, once per future, at every attempt while Redis is frozen)."""
    for future in futures:
        future.cancel()


class NotSent(RedisConnectionError):
    """No connection to Redis could be made for the command: it was never written."""

    sent = False


class _Wire(asyncio.Protocol):
    """One connection: replies resolve the waiting futures in the order they were sent, and
    the messages of a subscription (``Subscription``) on it go to that subscription."""

    def __init__(self, runner: ScriptRunner) -> None:
        self.runner = runner
        self.reader = hiredis.Reader(notEnoughData=_INCOMPLETE)
        self.pending: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.progress = 0.0
        self.resp3 = False
        self.subscription: Subscription | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def send(self, command: bytes, future: asyncio.Future[Any]) -> None:
        assert self.transport is not None
        if not self.pending:
            self.progress = self.runner.loop.time()
        self.pending.append(future)
        self.transport.write(command)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        pending = self.pending
        subscription = self.subscription
        try:
            while (reply := reader.gets()) is not _INCOMPLETE:
                if reply.__class__ is _PUSH and _pushed(reply, subscription):
                    continue
                future = pending.popleft()
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(BaseParser.parse_error(str(reply)))  # type: ignore[no-untyped-call]
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            self.fail(RedisConnectionError(f"redis protocol error: {exc}"))
            return
        self.progress = self.runner.loop.time()
        if subscription is not None:
            subscription.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to redis lost: {exc or 'closed'}"))

    def fail(self, error: Exception) -> None:
        """Close the connection and fail every command still waiting for its reply (and the
        subscription on it)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(error)
        if self.subscription is not None:
            self.subscription.lost(error)


class ScriptRunner:
    """Commands pipelined on one connection to the Redis of ``url`` (redis:// or unix://)."""

    def __init__(self, url: str, connect_timeout: float = 2.0, reply_timeout: float = 10.0) -> None:
        self.options = parse_url(url)
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout
        self._wire: _Wire | None = None
        self._connecting: asyncio.Future[_Wire] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def supports(url: str) -> bool:
        return url.startswith(("redis://", "unix://"))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def execute(self, *args: Any) -> Any:
        """Send one command and wait for its reply (raises what redis-py would raise)."""
        command = pack(args)
        wire = self._wire
        if wire is None or wire.closed:
            try:
                wire = await self._connect()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise NotSent(str(exc)) from exc
        future: asyncio.Future[Any] = self.loop.create_future()
        wire.send(command, future)
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(1.0, self._watch)
        return await future

    def _watch(self) -> None:
        """Once a second while commands wait: close a connection silent past the timeout."""
        self._watchdog = None
        wire = self._wire
        if wire is None or wire.closed or not wire.pending:
            return
        if self.loop.time() - wire.progress > self.reply_timeout:
            wire.fail(RedisTimeoutError(f"no reply from redis in {self.reply_timeout:g} s"))
            return
        self._watchdog = self.loop.call_later(1.0, self._watch)

    async def _connect(self) -> _Wire:
        if self._connecting is None:
            self._connecting = self.loop.create_future()
            try:
                wire = await self._open()
            except BaseException as exc:
                failed = exc if isinstance(exc, Exception) else RedisConnectionError("cancelled")
                self._connecting.set_exception(failed)
                self._connecting.exception()  # retrieved: the waiters re-raise it
                self._connecting = None
                raise
            self._wire = wire
            self._connecting.set_result(wire)
            self._connecting = None
            return wire
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Wire:
        wire = _Wire(self)
        await self.open_connection(wire)
        return wire

    async def open_connection(self, wire: _Wire) -> None:
        """Connect ``wire`` to this runner's Redis, authenticated and on its database."""
        options = self.options
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(self.connect_timeout):
                if options.get("path"):
                    await self.loop.create_unix_connection(lambda: wire, options["path"])
                else:
                    await self.loop.create_connection(
                        lambda: wire, options.get("host", "localhost"), options.get("port", 6379)
                    )
                setup: list[tuple[Any, ...]] = []
                if options.get("password"):
                    user = options.get("username")
                    password = options["password"]
                    setup.append(("AUTH", user, password) if user else ("AUTH", password))
                if options.get("db"):
                    setup.append(("SELECT", options["db"]))
                for command in setup:
                    future: asyncio.Future[Any] = self.loop.create_future()
                    wire.send(pack(command), future)
                    futures.append(future)
                for future in futures:
                    await future
        except TimeoutError:
            _abandon(futures)
            wire.fail(RedisTimeoutError("timeout connecting to redis"))
            raise RedisTimeoutError("timeout connecting to redis") from None
        except OSError as exc:
            _abandon(futures)
            wire.fail(RedisConnectionError(str(exc)))
            raise RedisConnectionError(f"error connecting to redis: {exc}") from exc
        except Exception:
            _abandon(futures)
            wire.fail(RedisConnectionError("redis connection setup failed"))
            raise

    async def subscribe(self, patterns: Sequence[str], channels: Sequence[str]) -> Subscription:
        """Subscribe this runner's connection (connecting if need be; RESP3 from then on).

        Raises ``redis.exceptions.ConnectionError`` (or ``TimeoutError``) on failure.
        """
        wire = self._wire
        if wire is None or wire.closed:
            wire = await self._connect()
        subscription = Subscription(self)
        commands: list[tuple[Any, ...]] = [] if wire.resp3 else [("HELLO", "3")]
        if patterns:
            commands.append(("PSUBSCRIBE", *patterns))
        if channels:
            commands.append(("SUBSCRIBE", *channels))
        replies: list[asyncio.Future[Any]] = []
        for command in commands:
            # a (P)SUBSCRIBE is answered by one confirmation per name
            answers = 1 if command[0] == "HELLO" else len(command) - 1
            for _ in range(answers):
                replies.append(self.loop.create_future())
            assert wire.transport is not None
            wire.pending.extend(replies[-answers:])
            wire.transport.write(pack(command))
        wire.resp3 = True
        previous, wire.subscription = wire.subscription, subscription
        subscription.wire = wire
        if previous is not None:
            previous.lost(RedisConnectionError("subscribed again"))
        try:
            async with asyncio.timeout(self.connect_timeout):
                for future in replies:
                    await future
        except TimeoutError:
            _abandon(replies)
            wire.fail(RedisTimeoutError("timeout subscribing"))
            raise RedisTimeoutError("timeout subscribing") from None
        return subscription

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._wire is not None:
            self._wire.fail(RedisConnectionError("client closed"))
            self._wire = None


class Subscription:
    """Messages of the patterns and channels a runner's connection subscribed to, in order.

    Made by ``ScriptRunner.subscribe``; ``get`` raises ``ConnectionError`` once the connection
    is lost (subscribe again: the runner connects anew). Messages arrive as RESP3 push frames,
    which the reader tells from replies by their type.
    """

    def __init__(self, runner: ScriptRunner) -> None:
        self.runner = runner
        self.messages: deque[tuple[bytes, bytes]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.error: Exception | None = None
        self.wire: _Wire | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done() and (self.messages or self.error):
            waiter.set_result(None)

    def lost(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self.wake()

    async def get(self) -> tuple[bytes, bytes]:
        """The next (channel, data); raises ``ConnectionError`` once the connection is lost."""
        while not self.messages:
            if self.error is not None:
                raise self.error
            self.waiter = self.runner.loop.create_future()
            await self.waiter
        return self.messages.popleft()

    def close(self) -> None:
        """Stop receiving (the connection stays up for the commands)."""
        wire = self.wire
        if wire is not None and wire.subscription is self:
            wire.subscription = None
        self.lost(RedisConnectionError("subscription closed"))


class PipelinedScript(AsyncScript):
    """A registered script run with EVALSHA on the runner, loaded again after NOSCRIPT."""

    def __init__(self, client: Redis, script: ScriptTextT, runner: ScriptRunner) -> None:
        super().__init__(client, script)
        self.runner = runner

    async def __call__(
        self,
        keys: Sequence[KeyT] | None = None,
        args: Iterable[EncodableT] | None = None,
        client: Any = None,
    ) -> Any:
        if client is not None:
            return await super().__call__(keys, args, client)
        keys = keys or ()
        argv = (len(keys), *keys, *(args or ()))
        try:
            return await self.runner.execute("EVALSHA", self.sha, *argv)
        except NoScriptError:
            sha = await self.runner.execute("SCRIPT", "LOAD", self.script)
            self.sha = sha.decode() if isinstance(sha, bytes) else str(sha)
            return await self.runner.execute("EVALSHA", self.sha, *argv)


class PipelinedRedis(Redis):
    """A redis-py client whose ``register_script`` scripts run pipelined on one connection."""

    def __init__(self, connection_pool: ConnectionPool, runner: ScriptRunner) -> None:
        super().__init__(connection_pool=connection_pool)
        self.runner = runner

    def register_script(self, script: ScriptTextT) -> AsyncScript:  # type: ignore[override]
        return PipelinedScript(self, script, self.runner)

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        """EVALSHA on the pipelined connection too (raises ``NoScriptError`` like redis-py)."""
        return await self.runner.execute("EVALSHA", sha, numkeys, *keys_and_args)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        with contextlib.suppress(Exception):
            await self.runner.close()
        await super().aclose(close_connection_pool)


# A bounded pool that waits for a free connection: redis-py's default pool raises once 100
# connections are busy, which a burst of requests or sockets closing at once turns into 503s.
_MAX_CONNECTIONS = 64


def serve_client(url: str, timeout: float = 10.0, connect_timeout: float = 2.0) -> Redis:
    """The client ``switchboard serve`` uses: redis-py on a blocking pool, its scripts (every
    store call) pipelined on one connection where the URL allows it. ``timeout``: how long a
    command may wait for its reply, or for a free connection of the pool
    (``SWITCHBOARD_REDIS_TIMEOUT_SECONDS``); ``connect_timeout``: for a new connection
    (``SWITCHBOARD_REDIS_CONNECT_TIMEOUT_SECONDS``)."""
    pool = BlockingConnectionPool.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        max_connections=_MAX_CONNECTIONS,
        timeout=timeout,
    )
    if ScriptRunner.supports(url):
        runner = ScriptRunner(url, connect_timeout=connect_timeout, reply_timeout=timeout)
        return PipelinedRedis(pool, runner)
    return Redis(connection_pool=pool)
