"""No phone number, email address or token reaches the logs in clear text.

The server's structlog pipeline (``router.logs.configure``) is pointed at an in-memory stream,
a customer then calls, emails, texts and chats, agents work over websockets (one with a token
in the URL), and the captured JSON lines are scanned for every format of the customer's
numbers and addresses. structlog is configured globally, so the fixture restores the defaults.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from pytest_aiohttp import AiohttpClient

from router import logs
from router.app import create_app
from tests.e2e.conftest import ADMIN_TOKEN, GATEWAY_TOKEN, Api, e2e_settings, next_of, sample

PHONES = {
    "(415) 555-0100": ["+14155550100", "14155550100", "4155550100", "415-555-0100"],
    "+44 20 7946 0958": ["+442079460958", "442079460958", "2079460958", "20 7946 0958"],
    "00 33 1 42 68 53 00": ["+33142685300", "33142685300", "142685300", "1 42 68 53 00"],
}
EMAILS = ["ana@example.com", "ana.garcia@example.com", "luis.hernandez@example.mx"]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The process's structlog output, as the server configures it, in a buffer."""
    stream = io.StringIO()
    logs.configure(b"test-log-hash-key-0123456789abcdef", "json", "info", stream=stream)
    yield stream
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _leaks(text: str, secrets: list[str]) -> list[str]:
    low = text.lower()
    return [s for s in secrets if s.lower() in low]


async def test_logs_carry_no_phone_email_or_token(
    aiohttp_client: AiohttpClient, redis_url: str, tenant: str, captured: io.StringIO
) -> None:
    """A day of omnichannel traffic leaves no number, address or token in the log lines."""
    client = await aiohttp_client(create_app(e2e_settings(tenant, redis_url=redis_url)))
    api = Api(client, tenant)
    await api.put_customer(
        "cu-ana",
        phones=list(PHONES)[:2],
        emails=["Ana@Example.com", "ana.garcia@example.com"],
        value=15000.0,
        churn_risk=0.9,
    )
    desk = await api.desk("olga", {"billing": 5, "retention": 5}, {"voice": 1, "email": 2})
    agent_token = (await api.call("POST", "/v1/agents/olga/tokens", 201, token=ADMIN_TOKEN))[
        "token"
    ]
    async with client.ws_connect(f"/v1/agents/olga/ws?access_token={agent_token}") as ws2:
        await next_of(ws2, "state", [])

    await api.voice({"call_id": "CA1", "from": "(415) 555-0100"})
    await desk.take(await desk.next("offer"), "kept")
    await api.email(sample("multipart_qp.eml"))
    await desk.take(await desk.next("offer"), "refunded")
    await api.email(sample("base64_spanish.eml"))
    text = {"message_id": "SM1", "text": "call me on +44 20 7946 0958"}
    await api.sms({**text, "from": "00 33 1 42 68 53 00"})
    await api.voice({"call_id": "CA2", "from": "+1 555 0100", "caller_name": "Ana"}, 422)
    await api.call("GET", "/v1/agents/olga", 401, token="not-a-token-5550100")
    async with client.ws_connect("/v1/channels/chat", headers=api.auth(GATEWAY_TOKEN)) as chat:
        await chat.send_json({"type": "start", "session_id": "s1", "from": "ana@example.com"})
        await next_of(chat, "queued", [])
        await chat.send_json({"type": "end"})
        await next_of(chat, "ended", [])
    await api.customer("cu-ana")
    await api.close()
    await client.close()

    decisions = [line for line in _lines(captured) if line["event"] == "routing.decision"]
    assert sorted(str(d["channel"]) for d in decisions) == [
        "chat",
        "email",
        "email",
        "sms",
        "voice",
    ]
    secrets = [*PHONES, *(f for forms in PHONES.values() for f in forms), *EMAILS]
    secrets += [ADMIN_TOKEN, GATEWAY_TOKEN, agent_token, "not-a-token-5550100"]
    assert _leaks(captured.getvalue(), secrets) == []


async def test_a_mistyped_url_or_a_malformed_request_leaves_no_number_or_address(
    aiohttp_client: AiohttpClient, redis_url: str, tenant: str, captured: io.StringIO
) -> None:
    """A 404 on a path holding a phone number or an email address, and a request aiohttp
    cannot parse holding them in its request line and a header, leave neither in the log lines
    nor in the answers."""
    client = await aiohttp_client(create_app(e2e_settings(tenant, redis_url=redis_url)))
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for path in [
        "/v1/call/+14155550100",
        "/v1/contacts/x/ana@example.com",
        "/ana.garcia@example.com",
    ]:
        async with client.get(path, headers=auth) as resp:
            assert resp.status == 404
            assert (await resp.json())["detail"] == "no route matches this path"
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"GET /v1/call/+442079460958 HTTP/1.1\r\nHost: x\r\n"
        b"X-Note: luis.hernandez@example.mx \x01 (415) 555-0100\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.0 400 ")
    await client.close()

    assert [line["event"] for line in _lines(captured)].count("http.unparsable") == 1
    secrets = [*PHONES, *(f for forms in PHONES.values() for f in forms), *EMAILS]
    assert _leaks(captured.getvalue(), secrets) == []
    assert _leaks(answer.decode("latin-1"), secrets) == []


def test_personal_fields_and_free_text_are_hashed(captured: io.StringIO) -> None:
    """Fields named for personal data, and numbers or addresses inside any text, are hashed."""
    log = structlog.get_logger("test")
    log.info(
        "inbound",
        from_="(415) 555-0100",
        email="Ana@Example.com",
        token=GATEWAY_TOKEN,
        note="caller said +44 20 7946 0958, or write to luis.hernandez@example.mx",
    )
    (line,) = _lines(captured)
    assert str(line["from_"]).startswith("h:")
    assert str(line["email"]).startswith("h:")
    assert line["token"] == "[redacted]"
    assert str(line["note"]).startswith("caller said h:")
    assert _leaks(captured.getvalue(), [*PHONES, *EMAILS, "2079460958", GATEWAY_TOKEN]) == []


def test_same_address_hashes_the_same_way(captured: io.StringIO) -> None:
    """One address hashes to one value in a field and in free text, so lines correlate."""
    log = structlog.get_logger("test")
    log.info("a", email="Ana@Example.com")
    log.info("b", detail="from ana@example.com")
    first, second = _lines(captured)
    assert second["detail"] == f"from {first['email']}"


def test_short_numbers_and_dates_are_kept(captured: io.StringIO) -> None:
    """Timestamps, amounts and positions stay readable: only 9+ digit runs look like phones."""
    log = structlog.get_logger("test")
    text = "at 2024-10-15T12:30:00Z we refunded 25.00; queue position 12 of 1500"
    log.info("c", detail=text)
    (line,) = _lines(captured)
    assert line["detail"] == text


def test_nested_personal_data_is_hashed(captured: io.StringIO) -> None:
    """A phone or email nested in a dict or list value is hashed too."""
    log = structlog.get_logger("test")
    log.info("view", contact={"from": "+14155550100", "note": "or (415) 555-0100"}, cc=EMAILS)
    assert _leaks(captured.getvalue(), ["+14155550100", "4155550100", *EMAILS]) == []
    (line,) = _lines(captured)
    assert str(line["cc"][0]).startswith("h:")


def test_same_phone_hashes_the_same_way(captured: io.StringIO) -> None:
    """One phone number hashes to one value in a field and in free text, so lines correlate."""
    log = structlog.get_logger("test")
    log.info("a", phone="+14155550100")
    log.info("b", detail="from +14155550100")
    first, second = _lines(captured)
    assert second["detail"] == f"from {first['phone']}"
