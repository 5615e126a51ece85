"""The routing.decision event explains each decision; the Redactor hides personal data.

(The end-to-end scan of a whole server's logs for leaked numbers is tests/e2e/test_log_privacy.)
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from router.logs import Redactor
from tests.ops.conftest import GATEWAY, AppFactory
from tests.support import json_logs

KEY = b"ops-test-hash-key"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The server's structlog pipeline writing JSON lines into a buffer."""
    with json_logs(KEY) as stream:
        yield stream


def _events(stream: io.StringIO, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == name]


def _redact(**event: Any) -> dict[str, Any]:
    return dict(Redactor(KEY)(None, "info", dict(event)))


def test_personal_fields_become_a_keyed_hash() -> None:
    """Phone and email fields are replaced by h:<hmac>, equal for equal input, key-dependent."""
    out = _redact(phone="+1 415 555 0100", email="Ana@Example.com", to="+442079460958")
    again = _redact(email="ana@example.com ")
    other = dict(Redactor(b"another key")(None, "info", {"email": "ana@example.com"}))
    assert out["phone"].startswith("h:")
    assert "555" not in out["phone"]
    assert out["email"] == again["email"] != other["email"]
    assert out["to"].startswith("h:")


def test_secrets_are_dropped_by_name_at_any_depth() -> None:
    """Tokens and authorization headers are [redacted], also inside nested dicts and lists."""
    out = _redact(
        token="abc123",
        headers={"Authorization": "Bearer s3cr3t-value", "Accept": "*/*"},
        agent_token="xyz",
        items=[{"access_token": "tok-1"}, {"password": "hunter2"}],
    )
    text = json.dumps(out)
    for secret in ("abc123", "s3cr3t-value", "xyz", "tok-1", "hunter2"):
        assert secret not in text
    assert out["headers"]["Accept"] == "*/*"


def test_free_text_is_scrubbed_everywhere() -> None:
    """Emails, phone numbers and bearer/query tokens inside any string are replaced."""
    out = _redact(
        event="call from +1 (415) 555-0100 about ana@example.com",
        path="/v1/agents/a1/ws?access_token=eyJhbGciOi.secret&x=1",
        detail=["retry with Bearer abc.def.ghi", {"note": "reach me at 020 7946 0958"}],
    )
    text = json.dumps(out)
    for leak in ("555-0100", "ana@example.com", "eyJhbGciOi", "abc.def.ghi", "7946 0958"):
        assert leak not in text, leak
    assert "access_token=[redacted]&x=1" in out["path"]


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("2024-05-11 415 555 0123", "555 0123"),  # a number after a date
        ("Anruf 030/12345678", "12345678"),  # slashes between the digits
        ("0171/1234567", "1234567"),
        ("415/555/0123", "555/0123"),
        ("415\u00a0555\u00a00123", "0123"),  # no-break spaces
        ("415\u2013555\u20130123", "0123"),  # en dashes
        ('"quoted name"@example.com', "quoted name"),
        ("bob@localhost", "bob@"),
        ("o'brien@example.com", "o'"),  # (not "o'h:...")
        ("jane%doe@example.com", "jane"),
    ],
)
def test_less_common_spellings_are_scrubbed_too(text: str, leak: str) -> None:
    """Phone numbers split by slashes, no-break spaces or typographic dashes, or following a
    date, and emails with quoted or unusual local parts or a bare host, are hashed."""
    out = _redact(detail=text)["detail"]
    assert leak not in out, out
    assert "h:" in out


def test_ordinary_values_pass_untouched() -> None:
    """Ids, timestamps, short numbers and non-string values are not mangled."""
    event = {
        "contact_id": "c1a0b14bf9610a67e",
        "created_at": "2026-11-23T16:49:32.281000Z",
        "position": 3,
        "priority": 120.0,
        "why": "queued at position 12 of billing",
        "dates": "2024-10-15 12:30, 10/12/2024, 2026-11-23T16:49:32.281000Z",
        "path": "/v1/contacts/c123/callback",
    }
    assert _redact(**event) == event


async def test_routing_decision_explains_the_match(
    make_app: AppFactory, routing_file: Path, captured: io.StringIO
) -> None:
    """One routing.decision per new contact: rule, step, priority, candidates and why."""
    ops = await make_app(config=str(routing_file))
    await ops.agent("s1", sales=3)
    await ops.agent("s2", sales=7)
    await ops.call("PUT", "/v1/customers/vip", {"value": 25000.0, "phones": ["+14155550100"]})
    first = await ops.contact(intent="sales", customer_id="vip")
    await ops.contact(intent="sales")
    third = await ops.contact(intent="sales")
    decisions = _events(captured, "routing.decision")
    assert len(decisions) == 3
    won = decisions[0]
    assert won["contact_id"] == first["id"]
    assert won["agent_id"] == "s2"
    assert won["rule"] == "sales"
    assert won["step"] == 1
    assert won["segment"] == "platinum"
    assert won["priority"] == 120.0
    assert won["priority_parts"] == {"segment": 120.0, "rule": 0.0}
    assert won["service_level"] == {"threshold_seconds": 3.0, "target": 0.95}
    assert won["candidates"] == {"agents": [], "queues": {"sales": "most_skilled"}}
    assert won["offered_via"] == "sales"
    assert "highest sales level" in won["why"]
    assert won["why"].startswith("s2 ")
    assert decisions[1]["agent_id"] == "s1"
    queued = decisions[2]
    assert queued["contact_id"] == third["id"]
    assert queued["status"] == "queued"
    assert queued["agent_id"] is None
    assert queued["position"] == 1
    assert "queued at position 1" in queued["why"]
    assert all(d.get("request_id") for d in decisions)
    assert "4155550100" not in captured.getvalue()


async def test_log_lines_name_the_tenant_and_a_well_formed_request_id(
    make_app: AppFactory, routing_file: Path, captured: io.StringIO
) -> None:
    """A request's log lines carry its tenant and its X-Request-Id when that looks like an id;
    any other value (free text, which may hold a phone number) is replaced by a fresh id, which
    the response echoes."""
    ops = await make_app(config=str(routing_file))
    sent = {"Authorization": f"Bearer {GATEWAY}", "Content-Type": "application/json"}
    ids = []
    for i, given in enumerate(["trace-7f3a.01", "call me on 415 555 0100"]):
        headers = {**sent, "Idempotency-Key": f"rid-{i}", "X-Request-Id": given}
        body = json.dumps({"channel": "voice"})
        async with ops.client.post("/v1/contacts", data=body, headers=headers) as resp:
            assert resp.status == 201
            ids.append(resp.headers["X-Request-Id"])
    assert ids[0] == "trace-7f3a.01"
    assert re.fullmatch("[0-9a-f]{16}", ids[1])
    decisions = _events(captured, "routing.decision")
    assert [(d["request_id"], d["tenant"]) for d in decisions] == [
        (ids[0], ops.tenant),
        (ids[1], ops.tenant),
    ]
    assert "415 555" not in captured.getvalue()


async def test_unparsable_requests_are_one_redacted_line(
    make_app: AppFactory, routing_file: Path, captured: io.StringIO
) -> None:
    """A request aiohttp cannot parse (it answers 400 itself, quoting the bad header) is one
    http.unparsable warning in the JSON log, the token, email and number in it redacted, and
    no traceback; it names the X-Request-Id of the answer."""
    ops = await make_app(config=str(routing_file))
    server = ops.client.server
    bad_headers = [
        b"Authorization: Bearer tok-5e1c\x7f",
        b"X-Note: ann@example.com \x01 +1 415 555 0100",
    ]
    ids = []
    for header in bad_headers:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET /v1/queues HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        assert answer.startswith(b"HTTP/1.0 400")  # and the server closes
        ids.append(re.findall(rb"\r\nX-Request-Id: ([0-9a-f]{16})\r\n", answer)[0].decode())
        writer.close()
        await writer.wait_closed()
    lines = _events(captured, "http.unparsable")
    assert len(lines) == 2
    assert all(line["level"] == "warning" for line in lines)
    # the line names the answer's X-Request-Id, as a request's lines do
    assert [line["request_id"] for line in lines] == ids
    text = captured.getvalue()
    for leak in ("tok-5e1c", "ann@example.com", "555 0100", "Traceback"):
        assert leak not in text, leak


def test_a_phone_hashes_alike_in_a_field_and_in_text() -> None:
    """A phone field and the same number inside free text get the same hash."""
    out = _redact(phone="+1 415-555-0100", detail="callback to +14155550100 please")
    assert out["detail"] == f"callback to {out['phone']} please"


@pytest.mark.parametrize(
    "text",
    [
        "no candidate in billing had free voice capacity: queued at position 17",
        "call +1 (415) 555-0100 now",
        "mail Ana.Lee+x@Example.co.uk today",
        "BEARER abc.def and ?access_token=xyz&b=1",
        "on 2024-10-15 12:30, 12345678 items, id 123456789",
        "a=b, c@d, 1234567",
        "",
    ],
)
def test_scrub_skips_a_pattern_only_where_it_cannot_match(text: str) -> None:
    """Each pattern is skipped only when the text lacks what it needs: the result is the one
    of running all three."""
    from router import logs

    redactor = Redactor(b"k" * 32)
    full = logs._CREDENTIAL.sub(lambda m: m.group(1) + "[redacted]", text)
    full = logs._EMAIL.sub(lambda m: redactor.digest(m.group(0)), full)
    full = logs._PHONE.sub(redactor._phone, full)
    assert redactor._scrub(text) == full
