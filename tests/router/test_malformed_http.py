"""Requests aiohttp cannot parse are answered as problems too, and change nothing.

aiohttp answers these before any handler or middleware runs; ``router.runner`` makes that
answer a ``malformed-request`` problem that never quotes the bytes sent (they may hold a phone
number or an email address), and closes the connection as aiohttp does. Each request is sent
over a raw socket; each would have created a contact had it parsed.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.router.conftest import GATEWAY, Api, ApiFactory, Served, http

PHONE = b"+44 20 7946 0958"
EMAIL = b"ann@example.com"
BODY = b'{"channel": "voice", "from": "+44 20 7946 0958"}'


def post(*headers: bytes, body: bytes = BODY, line: bytes = b"POST /v1/contacts HTTP/1.1") -> bytes:
    """A contact-creating request with ``headers`` added after the usual ones."""
    head = [
        line,
        b"Host: switchboard",
        b"Authorization: Bearer " + GATEWAY.encode(),
        b"Idempotency-Key: malformed-1",
        b"Content-Type: application/json",
        *headers,
    ]
    if not any(h.lower().startswith((b"content-length", b"transfer-encoding")) for h in headers):
        head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


CHUNKED = b"Transfer-Encoding: chunked"

#: name -> (raw request, the detail of the answer from the C parser (llhttp))
CASES: dict[str, tuple[bytes, str]] = {
    "method not a token": (
        post(line=b"P(ST /v1/contacts?from=" + PHONE.replace(b" ", b"") + b" HTTP/1.1"),
        "the request does not start with a valid HTTP method",
    ),
    "TLS on the HTTP port": (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + EMAIL + b"\r\n\r\n",
        "the request does not start with a valid HTTP method",
    ),
    "bad HTTP version": (
        post(line=b"POST /v1/contacts?email=" + EMAIL + b" HTTP/1.x"),
        "the request line is malformed",
    ),
    "header name with a space": (
        post(b"From Address: " + EMAIL),
        "the request is not well-formed HTTP/1.1",
    ),
    "header without a colon": (
        post(b"x-caller" + PHONE.replace(b" ", b"")),
        "the request is not well-formed HTTP/1.1",
    ),
    "NUL in a header value": (
        post(b"X-Caller: " + EMAIL + b"\x00"),
        "the request is not well-formed HTTP/1.1",
    ),
    "header over the line limit": (
        post(b"X-Caller: " + EMAIL + b"x" * 9000),
        "the request line or a header is longer than the server accepts",
    ),
    "request line over the limit": (
        post(line=b"POST /v1/contacts?email=" + EMAIL + b"&x=" + b"x" * 9000 + b" HTTP/1.1"),
        "the request line or a header is longer than the server accepts",
    ),
    "too many headers": (
        post(*(b"X-%d: %s" % (n, EMAIL) for n in range(200))),
        "the request is not well-formed HTTP/1.1",
    ),
    "bad chunk size": (
        post(CHUNKED, body=b"zz\r\n" + BODY + b"\r\n0\r\n\r\n"),
        "the request is not well-formed HTTP/1.1",
    ),
    "Content-Length and chunked": (
        post(CHUNKED, b"Content-Length: %d" % len(BODY), body=BODY),
        "the request is not well-formed HTTP/1.1",
    ),
    "Content-Length not a number": (
        post(b"Content-Length: " + PHONE),
        "the request is not well-formed HTTP/1.1",
    ),
}


def address(api: Api) -> tuple[str, int]:
    server = api.client.server
    assert server.port is not None
    return server.host, server.port


async def exchange(host: str, port: int, raw: bytes, later: bytes = b"") -> bytes:
    """Send ``raw`` (and ``later`` a moment after, once the request is being handled), read
    until the server closes: the answer's bytes.

    The read ending at all within a few seconds shows that the connection was closed."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(raw)
        if later:
            await asyncio.sleep(0.3)
            writer.write(later)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()


def parse(answer: bytes) -> tuple[int, dict[str, str], Any]:
    """An answer's status, headers (lower-case) and JSON body; it quotes no personal data, and
    its status line is in a version this server speaks, whatever the request's was."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    assert status_line.split()[0] in ("HTTP/1.0", "HTTP/1.1"), status_line
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    assert int(headers["content-length"]) == len(body)
    for personal in (PHONE, PHONE.replace(b" ", b""), EMAIL):
        assert personal not in answer
    return int(status_line.split()[1]), headers, json.loads(body)


async def send_raw(
    host: str, port: int, raw: bytes, later: bytes = b""
) -> tuple[int, dict[str, str], Any]:
    """``exchange`` then ``parse``."""
    return parse(await exchange(host, port, raw, later))


def assert_malformed(status: int, headers: dict[str, str], body: Any) -> None:
    assert status == 400
    assert headers["content-type"].split(";")[0] == "application/problem+json"
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["type"] == "https://switchboard.dev/problems/malformed-request"
    assert (body["title"], body["status"]) == ("Bad Request", 400)
    # none of its headers was read: a fresh id, as the app gives a request without one
    assert re.fullmatch("[0-9a-f]{16}", headers["x-request-id"])


@pytest.mark.parametrize("name", list(CASES))
async def test_unparsable_request_is_a_problem(api: Api, name: str) -> None:
    """A request aiohttp cannot parse gets a 400 ``malformed-request`` problem that does not
    quote it, with a fresh X-Request-Id, the connection is closed, and no contact is created."""
    raw, detail = CASES[name]
    status, headers, body = await send_raw(*address(api), raw)
    assert_malformed(status, headers, body)
    assert body["detail"] == detail
    assert (await api.get("/v1/queues/billing"))["waiting"] == 0


#: a chunked body whose second chunk-size line is not a number, sent after the first chunk
SPLIT = (post(CHUNKED, body=b"5\r\n" + BODY[:5] + b"\r\n"), EMAIL + b"\r\nxx\r\n0\r\n\r\n")


async def test_a_bad_chunk_after_the_request_started_is_a_problem(api: Api) -> None:
    """A chunk-size line that fails once the handler is reading the body is a 400
    ``malformed-body`` problem that does not quote it (llhttp left the handler waiting for the
    body forever), the connection closes, and no contact is created."""
    status, _, body = await send_raw(*address(api), *SPLIT)
    assert (status, body["type"]) == (400, "https://switchboard.dev/problems/malformed-body")
    assert (await api.get("/v1/queues/billing"))["waiting"] == 0


async def test_a_request_on_the_same_connection_after_a_bad_one_is_not_read(api: Api) -> None:
    """A good request pipelined after a malformed one is not served: the connection closes
    after the problem, as aiohttp closes it."""
    good = post(b"X-Ok: 1")
    status, headers, body = await send_raw(*address(api), post(b"Bad Header: x") + good)
    assert_malformed(status, headers, body)
    assert (await api.get("/v1/queues/billing"))["waiting"] == 0


async def test_serve_answers_with_the_python_parser_too(serve_child: Any, tmp_path: Path) -> None:
    """``switchboard serve`` with aiohttp's pure-Python parser (``AIOHTTP_NO_EXTENSIONS``),
    whose errors differ from llhttp's, answers every case as a problem that does not quote it,
    and a version other than 1.0 and 1.1 (HTTP/1.2 was served) as a 505 in HTTP/1.1."""
    served: Served = serve_child(
        {
            "AIOHTTP_NO_EXTENSIONS": "1",
            "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
            "SWITCHBOARD_TOKENS": json.dumps({GATEWAY: "gateway:default"}),
            "SWITCHBOARD_ADMIN_TOKEN": "adm",
        }
    )
    host, port = served.url.removeprefix("http://").split(":")
    details = {}
    for name, (raw, _) in CASES.items():
        try:
            status, headers, body = await send_raw(host, int(port), raw)
            assert_malformed(status, headers, body)
        except AssertionError as exc:
            raise AssertionError(name) from exc
        details[name] = body["detail"]
    assert details["header name with a space"] == "a header is malformed"  # llhttp: generic
    status, _, body = await send_raw(host, int(port), *SPLIT)
    assert (status, body["type"]) == (400, "https://switchboard.dev/problems/malformed-body")
    # the Python parser lets any HTTP/d.d through (llhttp: a malformed request line)
    for version in (b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2", b"HTTP/3.1"):
        answer = await exchange(host, int(port), post(line=b"POST /v1/contacts " + version))
        assert answer.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n"), version
        assert_problem(parse(answer), 505, "http-version-not-supported")
    status, queue = http("GET", served.url + "/v1/queues/billing", token="adm")
    assert (status, queue["waiting"]) == (200, 0)


def assert_problem(answer: tuple[int, dict[str, str], Any], status: int, kind: str) -> str:
    """``answer`` is a problem+json of ``status`` whose type ends in ``/kind``: its detail."""
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"].split(";")[0] == "application/problem+json"
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["type"] == f"https://switchboard.dev/problems/{kind}"
    assert body["status"] == status
    detail: str = body["detail"]
    return detail


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b""])
async def test_an_http_version_other_than_1_is_505(api: Api, version: bytes) -> None:
    """llhttp lets an HTTP/2.0 or HTTP/0.9 request line through: it gets a 505 problem written
    as HTTP/1.1 (aiohttp wrote it in the request's version), with an X-Request-Id as the app's
    answers have, and no contact is created."""
    line = b"POST /v1/contacts " + version if version else b"POST /v1/contacts"
    answer = await exchange(*address(api), post(b"X-Request-Id: trace-505", line=line))
    assert answer.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n"), answer[:40]
    parsed = parse(answer)
    assert_problem(parsed, 505, "http-version-not-supported")
    assert parsed[1]["x-request-id"] == "trace-505"
    assert (await api.get("/v1/queues/billing"))["waiting"] == 0


@pytest.mark.parametrize("path", [b"/v1/contacts", b"/v1/nothing"])
async def test_an_unknown_expectation_is_417(api: Api, path: bytes) -> None:
    """An ``Expect`` other than 100-continue, refused by aiohttp before any middleware, is a
    417 problem that does not quote it (it was plain text that did), with an X-Request-Id as
    the app's answers have (the caller's own if it gave one), and nothing is created."""
    line = b"POST " + path + b" HTTP/1.1"
    raw = post(b"Expect: " + EMAIL, b"Connection: close", line=line)
    answer = await send_raw(*address(api), raw)
    detail = assert_problem(answer, 417, "expectation-failed")
    assert "100-continue" in detail
    assert re.fullmatch("[0-9a-f]{16}", answer[1]["x-request-id"])
    given = post(b"Expect: x", b"X-Request-Id: trace-417", b"Connection: close", line=line)
    assert (await send_raw(*address(api), given))[1]["x-request-id"] == "trace-417"
    assert (await api.get("/v1/queues/billing"))["waiting"] == 0


@pytest.mark.parametrize(
    "headers",
    [
        b"Connection: Upgrade\r\nUpgrade: " + EMAIL,
        b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: " + EMAIL,
        b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: " + PHONE,
    ],
)
async def test_a_bad_websocket_handshake_does_not_quote_it(api: Api, headers: bytes) -> None:
    """A refused websocket handshake on the agent socket is a 400 problem whose detail says
    what a handshake needs, not what was sent (aiohttp's quoted the header)."""
    await api.agent("ann", billing=1)
    raw = (
        b"GET /v1/agents/ann/ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer adm\r\n"
        + headers
        + b"\r\nConnection: close\r\n\r\n"
    )
    detail = assert_problem(await send_raw(*address(api), raw), 400, "bad-request")
    assert "websocket handshake" in detail


async def test_an_exception_escaping_the_app_is_a_500_problem(aiohttp_client: Any) -> None:
    """An exception no middleware catches is answered by the runner as a 500 ``internal``
    problem without the exception's text (aiohttp's was plain text), with an X-Request-Id: the
    caller's own if it looks like one, as the app's middleware keeps it, else a fresh one."""

    async def fails(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("ann@example.com")

    app = web.Application()
    app.router.add_get("/fails", fails)
    client = await aiohttp_client(app)
    raw = b"GET /fails HTTP/1.1\r\nHost: x\r\n\r\n"
    server = client.server
    answer = await send_raw(server.host, server.port, raw)
    assert assert_problem(answer, 500, "internal") == "internal error"
    assert re.fullmatch("[0-9a-f]{16}", answer[1]["x-request-id"])
    # the request was parsed: the caller's own id, if it looks like one, as the app keeps it
    for given, kept in ((b"trace-7f3a.01", True), (b"call me on 415 555 0100", False)):
        raw = b"GET /fails HTTP/1.1\r\nHost: x\r\nX-Request-Id: " + given + b"\r\n\r\n"
        _, headers, _ = await send_raw(server.host, server.port, raw)
        assert (headers["x-request-id"] == given.decode()) is kept
        assert re.fullmatch("[0-9a-f]{16}|trace-7f3a.01", headers["x-request-id"])


@pytest.mark.parametrize(
    "path",
    [
        b"/v1/call/" + PHONE.replace(b" ", b"%20"),
        b"/v1/contacts/x/" + PHONE.replace(b" ", b""),
        b"/v1/mail/" + EMAIL + b"?to=" + EMAIL,
        b"/" + EMAIL.replace(b"@", b"%40"),
    ],
)
async def test_a_404_does_not_quote_the_path(api: Api, path: bytes) -> None:
    """A path no route matches is a 404 problem with a fixed detail, not the path (a mistyped
    URL may hold a phone number or an email address), and no ``instance`` either."""
    raw = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = await exchange(*address(api), raw)
    assert b"7946" not in answer
    assert b"example" not in answer
    assert assert_problem(parse(answer), 404, "not-found") == "no route matches this path"


@pytest.mark.parametrize("name", ["+14155557946", "ann@example.com"])
async def test_an_unknown_queue_is_404_without_its_name(api: Api, name: str) -> None:
    """``GET /v1/queues/{name}`` for no queue of the config is a 404 problem whose detail does
    not quote the name from the path (it quoted it: a mistyped URL may hold a phone number or
    an email address)."""
    reply = await api.call("GET", f"/v1/queues/{name}")
    assert reply.status == 404, reply
    assert reply.body["type"].endswith("/not-found")
    assert reply.body["detail"] == "no such queue"
    assert name not in json.dumps(reply.body)


# Header bytes that are not UTF-8 (or not ASCII) pass aiohttp's parser: it hands them over as
# surrogates, and the app must refuse them as it refuses any other bad header.


def request_with(
    *headers: bytes, line: bytes = b"POST /v1/contacts HTTP/1.1", body: bytes = BODY
) -> bytes:
    """A request with only ``headers`` and a JSON ``body``, then close."""
    head = [line, b"Host: switchboard", *headers, b"Connection: close"]
    if body:
        head += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@pytest.mark.parametrize("key", [b"cl\xe9", b"\xff\xfe", b"order-\xc3"])
async def test_an_idempotency_key_that_is_not_utf8_is_400(api: Api, key: bytes) -> None:
    """An Idempotency-Key whose bytes are not UTF-8 (a Latin-1 "é") is a 400 problem that says
    so (it was a 500), and no contact is created."""
    raw = request_with(b"Authorization: Bearer " + GATEWAY.encode(), b"Idempotency-Key: " + key)
    detail = assert_problem(await send_raw(*address(api), raw), 400, "bad-request")
    assert detail == "Idempotency-Key is not valid UTF-8"
    assert (await api.get("/v1/queues/billing"))["waiting"] == 0


AVAILABLE = b'{"state": "available"}'


async def test_a_token_that_is_not_ascii_is_401(api: Api) -> None:
    """A bearer token with bytes that are not UTF-8, or an agent token whose signature holds a
    character outside ASCII, is a 401 problem (both were 500s), and the agent is unchanged."""
    await api.agent("ann", billing=5)
    ann = (await api.token("ann")).encode()  # (the tenant's signing key exists from here on)
    line = b"POST /v1/agents/ann/state HTTP/1.1"
    for token in (b"adm\xe9", ann[:-2] + "é".encode(), ann[:-1] + b"\xe9", b"sba1.\xff.x.1.y"):
        raw = request_with(b"Authorization: Bearer " + token, line=line, body=AVAILABLE)
        answer = await send_raw(*address(api), raw)
        assert assert_problem(answer, 401, "unauthorized") in (
            "unknown token",
            "malformed token",
        ), token
    assert (await api.get("/v1/agents/ann"))["state"] == "offline"


async def test_a_metrics_token_that_is_not_utf8_is_401(make_api: ApiFactory) -> None:
    """A /metrics bearer token with bytes that are not UTF-8 is a 401 problem, as at every
    other endpoint (it was a 500: the comparison encoded the surrogates the bytes become)."""
    api = await make_api(metrics_token="m-secret")
    raw = (
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer m-secr\xe9\r\n"
        b"Connection: close\r\n\r\n"
    )
    status, headers, body = parse(await exchange(*address(api), raw))
    assert (status, body["type"]) == (401, "https://switchboard.dev/problems/unauthorized")
    assert headers["www-authenticate"] == "Bearer"
