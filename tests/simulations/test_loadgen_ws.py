"""The load generator's websocket client against aiohttp's websocket server (real sockets), and
against a raw server writing hand-made frames (fragments, a masked frame, split reads)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from simulations import loadgen_ws
from simulations.loadgen_ws import HandshakeFailed, LeanSocket, frame


class Seen:
    def __init__(self) -> None:
        self.texts: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = asyncio.Event()

    def text(self, data: bytes) -> None:
        self.texts.put_nowait(data)

    def close(self) -> None:
        self.closed.set()

    async def next(self) -> bytes:
        return await asyncio.wait_for(self.texts.get(), 5)


async def handler(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Authorization") != "Bearer t":
        raise web.HTTPUnauthorized()
    ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 22)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            if msg.data == "ping me":
                await ws.ping(b"hi")
            elif msg.data == "close":
                await ws.close(code=1000)
            else:
                await ws.send_str("echo:" + msg.data)
        elif msg.type == WSMsgType.PONG:
            await ws.send_str("pong:" + msg.data.decode())
    return ws


@pytest.fixture
async def url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/ws", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/ws"))
    finally:
        await server.close()


async def open_socket(url: str, seen: Seen, token: str = "t") -> LeanSocket:
    return await loadgen_ws.connect(
        url, {"Authorization": f"Bearer {token}"}, seen.text, seen.close, random.Random(1)
    )


@pytest.mark.parametrize("size", [1, 125, 126, 70_000])
async def test_text_both_ways_at_every_length_encoding(url: str, size: int) -> None:
    seen = Seen()
    sock = await open_socket(url, seen)
    text = "é" * (size // 2) + "x" * (size % 2)
    sock.send_text(text.encode())
    assert (await seen.next()).decode() == "echo:" + text
    await sock.close()


async def test_pings_are_answered_with_their_payload(url: str) -> None:
    seen = Seen()
    sock = await open_socket(url, seen)
    sock.send_text(b"ping me")
    assert await seen.next() == b"pong:hi"
    await sock.close()


async def test_a_close_from_the_server_ends_the_socket(url: str) -> None:
    seen = Seen()
    sock = await open_socket(url, seen)
    sock.send_text(b"close")
    await asyncio.wait_for(seen.closed.wait(), 5)
    assert sock.closed
    with pytest.raises(ConnectionError):
        sock.send_text(b"late")


async def test_a_refused_upgrade_fails_the_connect(url: str) -> None:
    with pytest.raises(HandshakeFailed, match="401"):
        await open_socket(url, Seen(), token="wrong")


async def test_hand_made_frames_fragments_and_masks_in_split_reads() -> None:
    """Frames arriving a few bytes at a time, a fragmented message and a masked frame."""
    raw: list[bytes] = [
        frame(0x1, b"whole", None),
        bytes((0x01, 4)) + b"frag",  # text, not final
        bytes((0x00, 3)) + b"men",  # continuation, not final
        frame(0x0, b"ted", None),  # continuation, final
        frame(0x1, b"masked", b"\x01\x02\x03\x04"),
    ]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1(key + loadgen_ws._GUID).digest())
        data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        data += b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        data += b"".join(raw)
        for i in range(0, len(data), 3):
            writer.write(data[i : i + 3])
            await writer.drain()
            await asyncio.sleep(0)
        await reader.read()  # until the client closes
        writer.close()
        await writer.wait_closed()
        served.set()

    served = asyncio.Event()
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seen = Seen()
    try:
        sock = await open_socket(f"ws://127.0.0.1:{port}/x", seen)
        assert [await seen.next() for _ in range(3)] == [b"whole", b"fragmented", b"masked"]
        await sock.close()
        await asyncio.wait_for(served.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()


def test_client_frames_are_masked_and_unmask_back() -> None:
    key = b"\x11\x22\x33\x44"
    out = frame(0x1, b"hello world", key)
    assert (out[0], out[1], out[2:6]) == (0x81, 0x80 | 11, key)
    assert loadgen_ws._mask(out[6:], key) == b"hello world"
    assert out[6:] != b"hello world"
