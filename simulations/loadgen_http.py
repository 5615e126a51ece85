"""A lean HTTP/1.1 client for the load test's arrivals: keep-alive connections, one request each.

The load generator shares the machine with the server it measures, so what it spends per
arrival is taken from the server, and what it adds between an arrival's scheduled time and the
bytes on the wire is counted in the latencies. aiohttp's client spends several times more CPU
per request than writing the request and parsing a small reply takes, so the arrivals go
through this one (setup and the final checks still use aiohttp). Responses are read by
``Content-Length`` or chunked transfer coding; a connection the server closes is dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import urlsplit


class HttpError(OSError):
    """The connection failed, closed before the reply, or the reply was not HTTP/1.1."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            reply = _parse(self.buffer)
        except ValueError as exc:
            waiter.set_exception(HttpError(f"bad reply: {exc}"))
            return
        if reply is not None:
            self.waiter = None
            waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(HttpError(f"connection closed: {exc or 'by the server'}"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _parse(buffer: bytearray) -> tuple[int, bytes, bool] | None:
    """(status, body, keep-alive) once a whole reply is in ``buffer`` (which it consumes)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).split(b"\r\n")
    parts = head[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(head[0][:80].decode(errors="replace"))
    status = int(parts[1])
    length, chunked, keep = 0, False, parts[0] == b"HTTP/1.1"
    for line in head[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep = value.strip().lower() != b"close"
    start = end + 4
    if not chunked:
        if len(buffer) < start + length:
            return None
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        return status, body, keep
    body_parts: list[bytes] = []
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            if trailer_end < 0 and buffer[line_end : line_end + 4] != b"\r\n\r\n":
                return None
            stop = line_end + 4 if trailer_end < 0 else trailer_end + 4
            del buffer[:stop]
            return status, b"".join(body_parts), keep
        chunk_start = line_end + 2
        if len(buffer) < chunk_start + size + 2:
            return None
        body_parts.append(bytes(buffer[chunk_start : chunk_start + size]))
        at = chunk_start + size + 2


class HttpClient:
    """Requests to one ``http://host:port`` with fixed headers, over at most ``limit``
    keep-alive connections (a request waits for a free one beyond that)."""

    def __init__(self, base_url: str, headers: dict[str, str], limit: int = 256) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected an http:// URL, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        host = f"{self.host}:{self.port}" if parts.port else self.host
        fixed = {"Host": host, **headers}
        self.fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode()
        self.idle: deque[_Connection] = deque()
        self.gate = asyncio.Semaphore(limit)
        self.open: set[_Connection] = set()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """(status, body); raises ``HttpError`` (or ``OSError``) when the exchange fails."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode()
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\n".encode()
        message = b"%s%s%sContent-Length: %d\r\n\r\n%s" % (head, self.fixed, extra, len(body), body)
        async with self.gate:
            conn = await self._connection()
            loop = asyncio.get_running_loop()
            conn.waiter = waiter = loop.create_future()
            assert conn.transport is not None
            conn.transport.write(message)
            try:
                status, data, keep = await waiter
            except BaseException:
                self._drop(conn)
                raise
            if keep and not conn.closed and not conn.buffer:
                self.idle.append(conn)
            else:
                self._drop(conn)
            return status, data

    async def _connection(self) -> _Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
            self.open.discard(conn)
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        self.open.add(conn)
        return conn

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        self.open.discard(conn)

    async def close(self) -> None:
        for conn in list(self.open):
            self._drop(conn)
        self.idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing
