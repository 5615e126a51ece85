"""Writing to websockets without ever waiting for the client to read.

aiohttp's websocket writer awaits the transport's drain once the transport holds more unsent
bytes than its high-water mark (64 KiB). A client that stops reading would then hold whoever
writes to it: the hub, which sends each event to its sockets one after the other (every other
agent's offers would wait behind it), and the heartbeat task, which pings every socket. So the
transport of each socket here never pauses the writer (its high-water mark is raised out of
reach) and every write first looks at what the transport still holds: past the app's limit
(``ws_max_unsent_bytes``) the socket is closed with 4002 "too slow" instead of written to, and
its agent is then treated as for any closed socket. Writes go straight into the transport's
buffer in the order they are made, so a socket's messages keep their order whoever sends them
(the hub, the socket's own handler).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from aiohttp import WSMsgType, web

log = structlog.get_logger("switchboard.ws")

#: the close code of a socket whose client fell too far behind
TOO_SLOW = 4002
#: a high-water mark no transport reaches, the limit (at most a quarter of it) being checked
#: before each write; uvloop keeps it in a C int
_NEVER_PAUSE = 1 << 30
#: how long a closed socket's transport may go on sending what it holds (the close frame is
#: last) before the connection is dropped
CLOSE_GRACE_SECONDS = 5.0


class Sender:
    """The sending side of one websocket (made by ``Senders.new``)."""

    __slots__ = ("held", "limit", "senders", "shut", "transport", "who", "ws")

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        senders: Senders,
        who: dict[str, Any],
    ) -> None:
        with contextlib.suppress(RuntimeError):  # (uvloop's, once the client is gone)
            transport.set_write_buffer_limits(high=_NEVER_PAUSE)
        self.ws = ws
        self.transport = transport
        self.senders = senders
        self.limit = senders.limit
        #: what the logs name the socket by (an agent id; never a number or an address)
        self.who = who
        self.shut = False
        #: what was sent while held (``hold``), to go out after the socket's first messages
        self.held: list[bytes] | None = None

    @property
    def closed(self) -> bool:
        return self.shut or self.ws.closed

    def behind(self) -> bool:
        """Whether the client has left more than the limit unread; if so the socket is being
        closed (in the background: closing writes too)."""
        unsent = self.transport.get_write_buffer_size()
        if unsent <= self.limit:
            return False
        self.close(TOO_SLOW, "too slow", unsent=unsent)
        return True

    def hold(self) -> None:
        """Keep what is sent from now on until ``release``: a socket registered with the hub
        before its first messages are read (so that no event in between is missed) still
        sends those first."""
        self.held = []

    async def release(self, first: list[bytes]) -> None:
        """Send ``first``, then what was held meanwhile, in order; then send as usual."""
        for data in first:
            await self._write(data)
        held = self.held or []
        while held:  # (what is sent during these writes joins the end)
            await self._write(held.pop(0))
        self.held = None

    async def send(self, data: bytes) -> bool:
        """Send ``data`` as one text frame; False when the socket is closed or too far behind
        (nothing is sent then)."""
        if self.held is not None:
            self.held.append(data)
            return True
        return await self._write(data)

    async def _write(self, data: bytes) -> bool:
        if self.shut or self.ws.closed or self.behind():
            return False
        try:
            await self.ws.send_frame(data, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def ping(self) -> None:
        if not self.closed and not self.behind():
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.ping()

    async def pong(self, data: bytes) -> None:
        if not self.closed and not self.behind():
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.pong(data)

    def close(self, code: int, why: str, **fields: Any) -> None:
        """Close the socket with ``code`` and ``why`` (logged as ``ws.<why>``), in the
        background; nothing more is sent on it."""
        if not self.shut:
            self.shut = True
            self.senders.closing(self, code, why, fields)


class Senders:
    """The app's websocket senders: the limit of unsent bytes, and the sockets being closed
    (one task each, on this rare path; the app's cleanup cancels those still running)."""

    def __init__(self, limit: int, grace: float = CLOSE_GRACE_SECONDS) -> None:
        self.limit = limit
        self.grace = grace
        self.tasks: set[asyncio.Task[None]] = set()

    def new(self, ws: web.WebSocketResponse, transport: asyncio.Transport, **who: Any) -> Sender:
        """The sender of ``ws``, prepared on ``transport`` (the request's)."""
        return Sender(ws, transport, self, who)

    def closing(self, sender: Sender, code: int, why: str, fields: dict[str, Any]) -> None:
        task = asyncio.create_task(self._close(sender, code, why, fields))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _close(self, sender: Sender, code: int, why: str, fields: dict[str, Any]) -> None:
        log.info("ws." + why.replace(" ", "_"), **sender.who, **fields)
        transport = sender.transport
        try:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sender.ws.close(code=code, message=why.encode())
            # aiohttp closed the transport, which first sends what it still holds: a client
            # that does not read would keep the connection (and that buffer) for ever
            if transport.get_write_buffer_size():
                await asyncio.sleep(self.grace)
        finally:
            transport.abort()

    async def stop(self, app: web.Application | None = None) -> None:
        """Cancel the closings still running (the app's cleanup)."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
