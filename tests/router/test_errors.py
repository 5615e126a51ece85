"""Every error status of api-v1 §1 as an RFC 9457 problem, and bad input changing nothing.

Each case is sent to an app whose body limit is 1 KiB; after it the billing queue must still be
empty, so a refused request never records a contact.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from queues.embedded import EmbeddedRedis
from router.fastredis import serve_client
from router.openapi import build
from tests.router.conftest import ADMIN, GATEWAY, Api, ApiFactory, Reply

PROBLEM = "application/problem+json"
KEY = {"Idempotency-Key": "bad-input"}
JSON = {"Content-Type": "application/json"}
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: Any = None
    token: str | None = GATEWAY
    headers: dict[str, str] = field(default_factory=lambda: dict(KEY))
    data: str | None = None


def assert_problem(reply: Reply, status: int, kind: str) -> dict[str, Any]:
    """``reply`` is a problem+json of ``status`` whose type ends in ``/kind``."""
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"].split(";")[0] == PROBLEM
    body: dict[str, Any] = reply.body
    expected = {"type", "title", "status", "detail"} | ({"errors"} if "errors" in body else set())
    assert set(body) == expected
    assert body["type"] == f"https://switchboard.dev/problems/{kind}"
    assert (body["title"], body["status"]) == (TITLES[status], status)
    assert body["detail"]
    assert "Traceback" not in json.dumps(body)
    return body


CASES: dict[str, tuple[Case, int, str]] = {
    "malformed json": (
        Case("POST", "/v1/contacts", headers={**KEY, **JSON}, data='{"channel": '),
        400,
        "malformed-json",
    ),
    "missing idempotency key": (
        Case("POST", "/v1/contacts", {"channel": "voice"}, headers={}),
        400,
        "missing-idempotency-key",
    ),
    "missing body": (Case("POST", "/v1/contacts"), 400, "bad-request"),
    "no token": (Case("POST", "/v1/contacts", {"channel": "voice"}, token=None), 401,
                 "unauthorized"),
    "bad token": (Case("POST", "/v1/contacts", {"channel": "voice"}, token="guess"), 401,
                  "unauthorized"),
    "gateway puts an agent": (
        Case("PUT", "/v1/agents/x", {"name": "X"}), 403, "forbidden"),
    "unknown contact": (Case("GET", "/v1/contacts/c0000000000000000"), 404, "contact-not-found"),
    "unknown reservation": (
        Case("POST", "/v1/reservations/r999/accept", token=ADMIN), 404, "reservation-not-found"),
    "unknown agent": (Case("GET", "/v1/agents/nobody", token=ADMIN), 404, "agent-not-found"),
    "unknown customer": (Case("GET", "/v1/customers/nobody"), 404, "customer-not-found"),
    "unknown route": (Case("GET", "/v1/nothing/here"), 404, "not-found"),
    "wrong method": (Case("DELETE", "/v1/contacts"), 405, "method-not-allowed"),
    "body over the limit": (
        Case("POST", "/v1/contacts", {"channel": "email", "body": "x" * 2000}),
        413,
        "content-too-large",
    ),
    "body over the server maximum": (
        Case("POST", "/v1/contacts", headers={**KEY, **JSON}, data="[" + "0," * 600_000 + "0]"),
        413,
        "content-too-large",
    ),
    "wrong content type": (
        Case("POST", "/v1/contacts", headers={**KEY, "Content-Type": "text/plain"},
             data="channel=voice"),
        415,
        "unsupported-media-type",
    ),
    "bad channel and unknown field": (
        Case("POST", "/v1/contacts", {"channel": "fax", "colour": "red"}),
        422,
        "validation",
    ),
    "not an object": (Case("POST", "/v1/contacts", [1, 2]), 422, "validation"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
async def test_error_is_a_problem_and_changes_nothing(make_api: ApiFactory, name: str) -> None:
    """Each bad request gets its status as problem+json, and no contact is recorded."""
    api = await make_api(max_body_bytes=1024)
    case, status, kind = CASES[name]
    reply = await api.call(
        case.method, case.path, case.body, token=case.token, headers=case.headers, data=case.data
    )
    body = assert_problem(reply, status, kind)
    if status == 401:
        assert reply.headers["WWW-Authenticate"] == "Bearer"
    if status == 405:
        assert reply.headers["Allow"] == "POST"
    if status == 422:
        assert body["errors"]
        assert all(set(e) == {"loc", "msg"} and e["loc"][0] == "body" for e in body["errors"])
    assert (await api.get("/v1/queues/billing"))["waiting"] == 0


async def test_validation_lists_every_field(api: Api) -> None:
    """A 422 lists each bad field with its location: channel, the unknown field, attributes."""
    reply = await api.call(
        "POST",
        "/v1/contacts",
        {"channel": "fax", "colour": "red", "attributes": {"blob": "x" * 5000}},
        token=GATEWAY,
        headers=KEY,
    )
    body = assert_problem(reply, 422, "validation")
    assert [e["loc"] for e in body["errors"]] == [
        ["body", "channel"],
        ["body", "attributes"],
        ["body", "colour"],
    ]
    assert "4096 bytes" in body["errors"][1]["msg"]


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/v1/channels/voice", {"call_id": "c1", "colour": "red"}, ["body"]),
        ("/v1/channels/voice", {"call_id": "c1", "ivr": {"digits": 7}}, ["body", "ivr", "digits"]),
        ("/v1/channels/sms", {"message_id": "s1", "from": "+14155550100"}, ["body", "text"]),
        ("/v1/channels/email", {"from": "a@example.com"}, ["body", "message_id"]),
    ],
)
async def test_an_adapter_payload_it_cannot_read_is_422_bad_payload(
    api: Api, path: str, body: dict[str, Any], loc: list[str]
) -> None:
    """A gateway payload with an unknown key, a field of the wrong type or a required field
    missing is a 422 ``bad-payload`` whose ``errors`` name the field (docs/api.md, the 422 row
    and the adapters), and no contact is made."""
    reply = await api.call("POST", path, body, token=GATEWAY)
    problem = assert_problem(reply, 422, "bad-payload")
    assert [e["loc"] for e in problem["errors"]] == [loc]
    assert (await api.get("/v1/queues/billing"))["waiting"] == 0


async def test_attributes_over_4_kib_are_refused(api: Api) -> None:
    """Attributes over 4 KiB serialized are 422 even inside the body limit; 4 KiB is fine."""
    blob = {"a": "x" * 4090}  # {"a":"..."} serializes to 4098 bytes
    reply = await api.call(
        "POST", "/v1/contacts", {"channel": "chat", "attributes": blob}, token=GATEWAY,
        headers=KEY,
    )  # fmt: skip
    assert_problem(reply, 422, "validation")
    fits = await api.contact(key="bad-input", channel="chat", attributes={"a": "x" * 4088})
    assert fits["status"] == "queued"  # the refused request did not consume the key


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/contacts", {"channel": "chat"}),
        ("PUT", "/v1/customers/deep", {}),
        ("PUT", "/v1/agents/deep", {"name": "Deep"}),
    ],
)
async def test_deeply_nested_attributes_are_refused(
    api: Api, method: str, path: str, body: dict[str, Any]
) -> None:
    """Attributes nesting past 16 levels are a 422 naming the field (300 levels, under 2 KB,
    used to be a 500: the serializer gave up); 16 levels are fine."""
    deep: Any = 1
    for _ in range(300):
        deep = {"a": deep}
    token = ADMIN if "agents" in path else GATEWAY
    reply = await api.call(method, path, {**body, "attributes": deep}, token=token, headers=KEY)
    problem = assert_problem(reply, 422, "validation")
    assert problem["errors"][0]["loc"] == ["body", "attributes"]
    assert "deeper than 16 levels" in problem["errors"][0]["msg"]
    fits: Any = 1
    for _ in range(15):
        fits = {"a": fits}
    ok = await api.call(method, path, {**body, "attributes": {"x": fits}}, token=token, headers=KEY)
    assert ok.status in (200, 201)


@pytest.mark.parametrize("skills", [{"billing": "5"}, {"billing": True}, {"billing": 5.0}])
async def test_skill_levels_are_whole_numbers(api: Api, skills: dict[str, Any]) -> None:
    """A level given as text, a boolean or a float is a 422, not read as a number."""
    reply = await api.call("PUT", "/v1/agents/typed", {"name": "T", "skills": skills})
    assert_problem(reply, 422, "validation")
    assert (await api.call("GET", "/v1/agents/typed")).status == 404


async def test_callback_time_needs_an_offset(api: Api) -> None:
    """`not_before` is RFC 3339: a time without an offset is a 422."""
    contact = await api.contact()
    naive = {"not_before": "2030-01-01T00:00:00"}
    reply = await api.call("POST", f"/v1/contacts/{contact['id']}/callback", naive, token=GATEWAY)
    problem = assert_problem(reply, 422, "validation")
    assert problem["errors"][0]["loc"] == ["body", "not_before"]


@pytest.mark.parametrize(
    ("not_before", "msg"),
    [
        (1_900_000_000, "expected an RFC 3339 time"),
        ("9999-12-31T23:59:59Z", "at most 30 days ahead"),
        (timedelta(days=30, minutes=1), "at most 30 days ahead"),
    ],
)
async def test_callback_time_is_a_string_at_most_30_days_ahead(
    api: Api, not_before: Any, msg: str
) -> None:
    """A number (pydantic would read Unix seconds) or a time past the 30-day bound is a 422
    naming `not_before`, and the contact is left as it was; 29 days ahead is held."""
    await api.agent("ann", billing=5)  # offline, able to call back
    contact = await api.contact(**{"from": "+1 415 555 0100"})
    if isinstance(not_before, timedelta):
        not_before = (datetime.now(UTC) + not_before).isoformat()
    path = f"/v1/contacts/{contact['id']}/callback"
    reply = await api.call("POST", path, {"not_before": not_before}, token=GATEWAY)
    problem = assert_problem(reply, 422, "validation")
    assert problem["errors"] == [{"loc": ["body", "not_before"], "msg": ANY}]
    assert msg in problem["errors"][0]["msg"]
    assert (await api.get(f"/v1/contacts/{contact['id']}"))["channel"] == "voice"
    soon = (datetime.now(UTC) + timedelta(days=29)).isoformat()
    held = await api.ok("POST", path, {"not_before": soon}, token=GATEWAY)
    assert held["channel"] == "callback"


@pytest.mark.parametrize(
    ("path", "ctype", "encoding"),
    [
        ("/v1/contacts", "application/json", "gzip"),
        ("/v1/contacts", "application/json", "deflate"),
        ("/v1/channels/email", "message/rfc822", "gzip"),
    ],
)
async def test_a_body_that_does_not_decode_is_400(
    api: Api, path: str, ctype: str, encoding: str
) -> None:
    """A body whose Content-Encoding does not decode is a 400 problem (it was a 500), and the
    same key then creates the contact."""
    headers = {"Content-Type": ctype, "Content-Encoding": encoding, "Idempotency-Key": "enc-1"}
    reply = await api.call("POST", path, token=GATEWAY, headers=headers, data=b"not " + b"z" * 64)
    problem = assert_problem(reply, 400, "malformed-body")
    assert encoding in problem["detail"]
    if path == "/v1/contacts":
        created = await api.call(
            "POST", path, {"channel": "voice"}, token=GATEWAY, headers={"Idempotency-Key": "enc-1"}
        )
        assert created.status == 201


@pytest.mark.parametrize("bad", ["ann%0A", "ann%0D", "an%20n", "ann%7D", "-ann"])
async def test_an_id_outside_the_pattern_is_404(api: Api, bad: str) -> None:
    """Ids are letters, digits and ``_.@+=-``: one with a trailing newline (which ``$`` let
    through), a space, a brace or a leading dash names nothing, and nothing is created."""
    made = await api.call("PUT", f"/v1/agents/{bad}", {"name": "Ann"})
    assert_problem(made, 404, "not-found")
    customer = await api.call("PUT", f"/v1/customers/{bad}", {"name": "Ann"})
    assert_problem(customer, 404, "not-found")
    assert (await api.call("POST", f"/v1/agents/{bad}/tokens")).status == 404


async def test_conflicts_are_409(api: Api) -> None:
    """Accepting a reservation whose contact is done and completing a contact twice are 409
    problems (an accept repeated before that answers as the first)."""
    await api.agent("ann", billing=5)
    await api.state("ann", "available")
    contact = await api.contact()
    rid = contact["reservation_id"]
    first = await api.ok("POST", f"/v1/reservations/{rid}/accept")
    assert await api.ok("POST", f"/v1/reservations/{rid}/accept") == first
    await api.ok("POST", f"/v1/contacts/{contact['id']}/complete", {})
    again = await api.call("POST", f"/v1/reservations/{rid}/accept")
    assert_problem(again, 409, "reservation-not-pending")
    twice = await api.call("POST", f"/v1/contacts/{contact['id']}/complete", {})
    assert_problem(twice, 409, "contact-not-assigned")
    callback = await api.call("POST", f"/v1/contacts/{contact['id']}/callback", {})
    assert_problem(callback, 409, "contact-not-waiting")


async def test_a_callback_nobody_could_make_is_409_and_changes_nothing(api: Api) -> None:
    """With no agent of billing able to take a voice call, a callback is refused with a 409
    `callback-unavailable` and the contact waits on as it was; an agent with voice capacity,
    even signed out, makes it possible."""
    contact = await api.contact(**{"from": "+1 415 555 0100"})
    path = f"/v1/contacts/{contact['id']}"
    before = await api.get(path)
    await api.agent("ann", {"chat": 2}, billing=5)
    for body in ({}, {"not_before": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}):
        refused = await api.call("POST", f"{path}/callback", body, token=GATEWAY)
        assert_problem(refused, 409, "callback-unavailable")
    assert await api.get(path) == before
    queues = (await api.get("/v1/queues"))["queues"]
    billing = next(q for q in queues if q["name"] == "billing")
    assert (billing["waiting"], billing["scheduled_callbacks"]) == (1, 0)
    await api.agent("bob", billing=5)  # voice, offline
    held = await api.ok("POST", f"{path}/callback", {}, token=GATEWAY)
    assert (held["status"], held["channel"]) == ("queued", "callback")


async def test_store_unreachable_is_503_with_retry_after(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """With Redis down every call is 503 + Retry-After, nothing recorded; it recovers after."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    try:
        api = await make_api(redis_url=server.url)
        await api.contact()
        await asyncio.to_thread(server.stop)

        down = await api.call(
            "POST", "/v1/contacts", {"channel": "voice"}, token=GATEWAY, headers=KEY
        )
        body = assert_problem(down, 503, "store-unavailable")
        assert "nothing was recorded" in body["detail"]
        assert down.headers["Retry-After"] == "1"
        for path in ("/v1/queues/billing", "/readyz"):
            reply = await api.call("GET", path, token=GATEWAY)
            assert (reply.status, reply.headers["Retry-After"]) == (503, "1")

        await asyncio.to_thread(server.start)
        await api.until("/readyz", lambda r: r["status"] == "ready")
        back = await api.contact(key="bad-input")
        assert (back["status"], back["position"]) == ("queued", 1)  # a fresh, empty Redis
    finally:
        await asyncio.to_thread(server.stop)


async def test_retry_after_is_the_configured_one_on_every_503(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """With ``SWITCHBOARD_RETRY_AFTER_SECONDS`` set, a call's 503 and /readyz's both carry it
    as ``Retry-After`` (/readyz said 1 whatever the setting)."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    try:
        api = await make_api(redis_url=server.url, retry_after_seconds=7)
        await asyncio.to_thread(server.stop)
        for path in ("/v1/queues/billing", "/readyz"):
            reply = await api.call("GET", path, token=GATEWAY)
            assert (reply.status, reply.headers["Retry-After"]) == (503, "7"), path
    finally:
        await asyncio.to_thread(server.stop)


#: a body each operation takes (so that it gets as far as the store)
BODIES: dict[tuple[str, str], Any] = {
    ("post", "/v1/contacts"): {"channel": "voice"},
    ("put", "/v1/agents/{id}"): {"name": "Ann"},
    ("post", "/v1/agents/{id}/state"): {"state": "away"},
    ("put", "/v1/customers/{id}"): {},
    ("post", "/v1/channels/voice"): {"call_id": "down-1"},
    ("post", "/v1/channels/sms"): {"message_id": "down-1", "from": "+14155550100", "text": "x"},
    ("post", "/v1/channels/email"): {"message_id": "<down-1@example.com>", "from": "a@example.com"},
}


async def test_every_operation_on_the_store_documents_its_503(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """With Redis down, every operation that takes a token (but the chat gateway's socket,
    which reads nothing before its first message) answers 503, and /openapi.json lists 503
    for each of them (it did for creating a contact and the adapters alone)."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    try:
        api = await make_api(redis_url=server.url)
        await asyncio.to_thread(server.stop)
        doc = build("0.1.0")
        checked = 0
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if "security" not in op or path == "/v1/channels/chat":
                    continue
                url = path.replace("{id}", "x1").replace("{name}", "billing")
                body = BODIES.get((method, path))
                reply = await api.call(method.upper(), url, body, token=ADMIN, headers=KEY)
                assert reply.status == 503, (method, path, reply)
                assert "503" in op["responses"], (method, path)
                checked += 1
        assert checked == 22
    finally:
        await asyncio.to_thread(server.stop)


async def test_redis_out_of_memory_is_503_store_full_and_records_nothing(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """At ``maxmemory`` (with ``noeviction``) Redis refuses a script's first write: the
    contact is a 503 ``store-full`` with Retry-After, and nothing of it is in Redis (its
    Idempotency-Key not taken, no contact, no history); once Redis has room the gateway's
    retry with the same key creates it."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    raw = serve_client(server.url)
    try:
        api = await make_api(redis_url=server.url)
        await api.agent("ann", billing=5)
        first = await api.contact(key="before", **{"from": "+14155550100"})
        await raw.config_set("maxmemory", "1")
        keys_before = sorted(await raw.keys("*"))

        full = await api.call(
            "POST",
            "/v1/contacts",
            {"channel": "voice", "from": "+14155550100"},
            token=GATEWAY,
            headers={"Idempotency-Key": "when-full"},
        )
        body = assert_problem(full, 503, "store-full")
        assert "nothing was recorded" in body["detail"]
        assert full.headers["Retry-After"] == "1"
        assert sorted(await raw.keys("*")) == keys_before

        await raw.config_set("maxmemory", "0")
        again = await api.contact(key="when-full", **{"from": "+14155550100"})
        assert again["id"] != first["id"]
        assert again["status"] == "queued"
    finally:
        await raw.aclose(close_connection_pool=True)
        await asyncio.to_thread(server.stop)


@pytest.mark.parametrize(
    ("data", "at"),
    [('{"channel": "chat", "subject": "r\xe9clamation"}'.encode("latin-1"), 33),
     ('{"channel": "chat"}'.encode("utf-16"), 0)],
)  # fmt: skip
async def test_a_body_that_is_not_utf8_says_so(api: Api, data: bytes, at: int) -> None:
    """A JSON body in Latin-1 or UTF-16 (whatever its charset parameter) is a 400 whose detail
    says the body is not UTF-8 and where (orjson's said "surrogates not allowed"), and no
    contact is recorded."""
    headers = {**KEY, "Content-Type": "application/json; charset=iso-8859-1"}
    reply = await api.call("POST", "/v1/contacts", token=GATEWAY, headers=headers, data=data)
    body = assert_problem(reply, 400, "malformed-json")
    assert body["detail"] == f"malformed JSON: the body is not UTF-8 (byte {at}); JSON is UTF-8"
    assert (await api.get("/v1/queues/billing"))["waiting"] == 0
