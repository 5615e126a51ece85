"""The load generator's lean HTTP client: replies parsed whole, connections kept or dropped."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from simulations.loadgen_http import HttpClient, HttpError, _parse


def test_parse_waits_for_whole_replies() -> None:
    reply = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello"
    for cut in range(len(reply)):
        assert _parse(bytearray(reply[:cut])) is None
    buffer = bytearray(reply + b"HTTP/1.1")
    assert _parse(buffer) == (201, b"hello", True)
    assert buffer == b"HTTP/1.1"


def test_parse_reads_chunked_and_connection_close() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert _parse(bytearray(chunked[:-3])) is None
    assert _parse(bytearray(chunked)) == (200, b"abcde", True)
    closing = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    assert _parse(bytearray(closing)) == (503, b"", False)
    with pytest.raises(ValueError, match="SSH"):
        _parse(bytearray(b"SSH-2.0-OpenSSH\r\n\r\n"))


async def test_requests_reuse_connections() -> None:
    peers: list[object] = []

    async def echo(request: web.Request) -> web.Response:
        peers.append(request.transport)
        body = await request.read()
        key = request.headers.get("Idempotency-Key", "")
        return web.Response(status=201, body=body + key.encode())

    app = web.Application()
    app.router.add_post("/v1/contacts", echo)
    server = TestServer(app)
    await server.start_server()
    base = str(server.make_url("/"))
    client = HttpClient(base, {"Authorization": "Bearer t"}, limit=4)
    try:
        for n in range(5):
            status, body = await client.request(
                "POST", "/v1/contacts", b"x", {"Idempotency-Key": f"{n}"}
            )
            assert (status, body) == (201, f"x{n}".encode())
        assert len({id(p) for p in peers}) == 1  # one keep-alive connection, sequentially
        replies = await asyncio.gather(
            *(client.request("POST", "/v1/contacts", b"y") for _ in range(20))
        )
        assert set(replies) == {(201, b"y")}
        assert len(client.open) <= 4
    finally:
        await client.close()
        await server.close()
    with pytest.raises(OSError):  # noqa: PT011 (refused: an OSError, as aiohttp's would be)
        await HttpClient(base, {}).request("GET", "/")
    assert issubclass(HttpError, OSError)
