"""A lean websocket client for the load test's simulated agents (RFC 6455, text frames).

Every contact costs an agent five frames in and two out; with aiohttp's client each frame
passes through a reader task, a message queue and an async iterator, and the loader spends
that CPU on the two cores it shares with the server it measures. Here a protocol parses the
frames as bytes arrive and hands each text message to a callback; pings are answered at once,
a close is answered and ends the connection. Client frames are masked, as the RFC requires.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import random
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeFailed(ConnectionError):
    """The server did not upgrade the connection (status and reason in the message)."""


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return data
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(pad, "little")).to_bytes(n, "little")


def frame(opcode: int, payload: bytes, key: bytes | None) -> bytes:
    """One final frame; masked with ``key`` (a client's frames), or not (``None``)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, (0x80 if key else 0) | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, (0x80 if key else 0) | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, (0x80 if key else 0) | 127)) + n.to_bytes(8, "big")
    return head + key + _mask(payload, key) if key else head + payload


class LeanSocket(asyncio.Protocol):
    """One client websocket. ``on_text`` receives each text (or binary) message's bytes."""

    def __init__(
        self,
        key: bytes,
        on_text: Callable[[bytes], None],
        on_close: Callable[[], None],
        rng: random.Random,
    ) -> None:
        self.key = key
        self.on_text = on_text
        self.on_close = on_close
        self.rng = rng
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.parts: list[bytes] = []
        self.closed = False

    # ------------------------------------------------------------------------- protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.handshake.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            problem = self._check(head)
            if problem:
                self.handshake.set_exception(HandshakeFailed(problem))
                self._abort()
                return
            self.handshake.set_result(None)
        self._frames()

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = not self.closed
        self.closed = True
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeFailed(f"connection closed: {exc}"))
        elif was_open:
            self.on_close()

    # -------------------------------------------------------------------------- frames

    def _check(self, head: str) -> str:
        lines = head.split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            return f"no upgrade: {lines[0]}"
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1(self.key + _GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            return "bad Sec-WebSocket-Accept"
        return ""

    def _frames(self) -> None:
        buf = self.buffer
        while not self.closed:
            n = len(buf)
            if n < 2:
                return
            b0, b1 = buf[0], buf[1]
            length, pos = b1 & 0x7F, 2
            if length == 126:
                if n < 4:
                    return
                length, pos = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if n < 10:
                    return
                length, pos = int.from_bytes(buf[2:10], "big"), 10
            key = b""
            if b1 & 0x80:  # servers do not mask, but a masked frame is still read right
                if n < pos + 4:
                    return
                key, pos = bytes(buf[pos : pos + 4]), pos + 4
            if n < pos + length:
                return
            payload = bytes(buf[pos : pos + length])
            del buf[: pos + length]
            if key:
                payload = _mask(payload, key)
            self._frame(b0 & 0x0F, bool(b0 & 0x80), payload)

    def _frame(self, opcode: int, final: bool, payload: bytes) -> None:
        if opcode == _PING:
            self._send(_PONG, payload)
        elif opcode == _CLOSE:
            self._send(_CLOSE, payload[:2])
            self._abort()
        elif opcode in (_TEXT, _BINARY, 0x0):
            if final and not self.parts:
                self.on_text(payload)
                return
            self.parts.append(payload)
            if final:
                message, self.parts = b"".join(self.parts), []
                self.on_text(message)

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("websocket closed")
        self.transport.write(frame(opcode, payload, self.rng.getrandbits(32).to_bytes(4, "big")))

    def _abort(self) -> None:
        was_open = not self.closed
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if was_open and self.handshake.done():
            self.on_close()

    # -------------------------------------------------------------------------- public

    def send_text(self, text: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("websocket closed")
        self._send(_TEXT, text)

    async def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(ConnectionError):
                self._send(_CLOSE, (1000).to_bytes(2, "big"))
            self._abort()


async def connect(
    url: str,
    headers: dict[str, str],
    on_text: Callable[[bytes], None],
    on_close: Callable[[], None],
    rng: random.Random,
    limit: float = 30.0,
) -> LeanSocket:
    """Open ``url`` (ws://, wss://, http:// or https://) and complete the upgrade within
    ``limit`` seconds."""
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16))
    loop = asyncio.get_running_loop()
    transport, proto = await asyncio.wait_for(
        loop.create_connection(
            lambda: LeanSocket(key, on_text, on_close, rng),
            host,
            port,
            ssl=ssl.create_default_context() if secure else None,
        ),
        limit,
    )
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    try:
        await asyncio.wait_for(proto.handshake, limit)
    except BaseException:
        transport.close()
        raise
    return proto
