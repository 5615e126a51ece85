"""The channel adapters over HTTP: bad native payloads are refused cleanly and leave nothing.

Every refusal must be an ``application/problem+json`` 4xx with a detail naming the problem, and
the tenant's keys in Redis (contacts, customers, identities, message ids, idempotency keys) and
the queue depths must be exactly as before. Replays follow ``POST /v1/contacts``: the same
native id answers 200 with the same Contact; the same id with another payload is 409.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tests.e2e.conftest import ADMIN_TOKEN, Api, sample

CALL = {"call_id": "CA9f0c1e", "from": "+44 20 7946 0958", "to": "+18005550199"}
SMS = {"message_id": "SM71b2", "from": "00 33 1 42 68 53 00", "to": "+18005550199"}


def _raw_email(sender: str = "ana@example.com", message_id: str = "<m1@example.com>") -> bytes:
    return (
        f"From: {sender}\r\nTo: help@bank.example\r\nMessage-ID: {message_id}\r\n"
        "Subject: My bill\r\nContent-Type: text/plain\r\n\r\nWhy was I charged twice?\r\n"
    ).encode()


BAD: list[tuple[str, str, Any, str | None, int, str]] = [
    # (case, path, body, content type (None: JSON body), status, phrase in the detail)
    ("voice no call id", "/v1/channels/voice", {"from": "+14155550100"}, None, 422, "call_id"),
    (
        "voice unknown field",
        "/v1/channels/voice",
        {**CALL, "caller_name": "Ana"},
        None,
        422,
        "unknown fields: caller_name",
    ),
    (
        "voice ivr not an object",
        "/v1/channels/voice",
        {**CALL, "ivr": "1"},
        None,
        422,
        "`ivr` must be an object",
    ),
    (
        "voice misspelt ivr key",
        "/v1/channels/voice",
        {**CALL, "ivr": {"intnet": "billing"}},
        None,
        422,
        "unknown `ivr` fields: intnet",
    ),
    ("voice not an object", "/v1/channels/voice", [CALL], None, 422, "JSON object"),
    (
        "voice malformed JSON",
        "/v1/channels/voice",
        b'{"call_id": ',
        "application/json",
        400,
        "JSON",
    ),
    (
        "voice form post",
        "/v1/channels/voice",
        b"call_id=CA1",
        "application/x-www-form-urlencoded",
        415,
        "expected application/json",
    ),
    ("sms no text", "/v1/channels/sms", SMS, None, 422, "`text` is required"),
    (
        "sms unknown field",
        "/v1/channels/sms",
        {**SMS, "text": "hi", "media_url": "x"},
        None,
        422,
        "unknown fields: media_url",
    ),
    (
        "email no from",
        "/v1/channels/email",
        sample("no_from.eml"),
        "message/rfc822",
        422,
        "no From address",
    ),
    (
        "email no message id",
        "/v1/channels/email",
        sample("no_message_id.eml"),
        "message/rfc822",
        422,
        "no Message-ID",
    ),
    (
        "email binary garbage",
        "/v1/channels/email",
        sample("binary_garbage.eml"),
        "message/rfc822",
        422,
        "not an RFC 5322 message",
    ),
    (
        "email unreadable address",
        "/v1/channels/email",
        _raw_email(sender="ana@localhost"),
        "message/rfc822",
        422,
        "not a valid email address",
    ),
    (
        "email as text/plain",
        "/v1/channels/email",
        _raw_email(),
        "text/plain",
        415,
        "expected message/rfc822 or application/json",
    ),
    (
        "email JSON unknown field",
        "/v1/channels/email",
        {"message_id": "<j1@x.com>", "from": "ana@example.com", "cc": "bob@example.com"},
        None,
        422,
        "unknown fields: cc",
    ),
    (
        "email JSON references not a list",
        "/v1/channels/email",
        {"message_id": "<j2@x.com>", "from": "ana@example.com", "references": 7},
        None,
        422,
        "`references` must be a list",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "phrase"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
async def test_bad_payload_is_a_clear_problem_and_stores_nothing(
    api: Api, path: str, body: Any, content_type: str | None, status: int, phrase: str
) -> None:
    """A bad native payload gets its 4xx problem+json and leaves no key or queue entry behind."""
    await api.sms({"message_id": "warm-up", "from": "+14155550100", "text": "hello"})
    before, depth = await api.footprint(), await api.waiting()
    if content_type is None:
        problem = await api.call("POST", path, status, json=body)
    else:
        problem = await api.call("POST", path, status, data=body, content_type=content_type)
    assert problem["status"] == status
    assert phrase in problem["detail"], problem
    assert await api.footprint() == before
    assert await api.waiting() == depth


@pytest.mark.parametrize(
    ("ivr", "detail"),
    [
        ({"language": "english!"}, "`language` is not a BCP 47 tag (e.g. es-MX)"),
        ({"intent": "b" * 65}, "`intent` is longer than 64 characters"),
        ({"digits": 1}, "`digits` must be a string"),
    ],
)
async def test_a_bad_ivr_field_is_located_in_ivr(
    api: Api, ivr: dict[str, Any], detail: str
) -> None:
    """A bad ``ivr`` field of the voice webhook is a 422 whose ``errors`` locate it where the
    webhook has it, ``["body", "ivr", name]`` (it was ``["body", name]``, a field the webhook
    does not have), and nothing is stored."""
    before = await api.footprint()
    problem = await api.call("POST", "/v1/channels/voice", 422, json={**CALL, "ivr": ivr})
    assert problem["detail"] == detail
    assert problem["errors"] == [{"loc": ["body", "ivr", *ivr], "msg": detail}]
    assert await api.footprint() == before


async def test_two_megabyte_email_is_413_and_stores_nothing(api: Api) -> None:
    """A 2 MB raw email exceeds the 1 MiB limit of the email endpoint: 413, nothing stored."""
    raw = _raw_email() + b"x" * (2 * 1024 * 1024)
    before, depth = await api.footprint(), await api.waiting()
    problem = await api.call(
        "POST", "/v1/channels/email", 413, data=io.BytesIO(raw), content_type="message/rfc822"
    )
    assert "1048576 bytes" in problem["detail"]
    assert await api.footprint() == before
    assert await api.waiting() == depth


async def test_email_just_under_the_limit_is_accepted(api: Api) -> None:
    """The email endpoint takes more than the 64 KiB JSON limit: a 900 KiB message is a 201."""
    raw = _raw_email() + b"lorem ipsum " * (900 * 1024 // 12)
    contact = await api.call(
        "POST", "/v1/channels/email", 201, data=io.BytesIO(raw), content_type="message/rfc822"
    )
    assert contact["channel"] == "email"


async def test_bad_payload_creates_no_customer(api: Api) -> None:
    """A refused call from a new number resolves to no customer: a valid call later is new."""
    await api.voice({"call_id": "CAx", "from": "+44 20 7946 0958", "extra": 1}, 422)
    _, identities, _ = await api.footprint()
    assert identities == {}
    contact = await api.voice({"call_id": "CAy", "from": "+44 20 7946 0958"})
    _, identities, _ = await api.footprint()
    assert identities == {b"phone:+442079460958": contact["customer"]["id"].encode()}


async def test_voice_replay_returns_the_same_contact(api: Api) -> None:
    """The same call_id again is 200 with the same Contact; nothing new is queued."""
    first = await api.voice(CALL)
    depth = await api.waiting()
    again = await api.voice(CALL, 200)
    assert again["id"] == first["id"]
    assert again["customer"] == first["customer"]
    assert await api.waiting() == depth


async def test_voice_replay_with_another_payload_is_409(api: Api) -> None:
    """The same call_id with a different caller is 409 and leaves the queues as they were."""
    await api.voice(CALL)
    depth = await api.waiting()
    problem = await api.voice({**CALL, "from": "+1 (415) 555-0100"}, 409)
    assert problem["title"] == "Conflict"
    assert problem["detail"] == "this call_id was already used with a different payload"
    assert problem["type"].endswith("/idempotency-conflict")
    assert await api.waiting() == depth


async def test_conflicting_replay_creates_no_customer(api: Api) -> None:
    """A 409 replay from a new number must not create a customer or an identity for it."""
    await api.voice(CALL)
    _, identities, _ = await api.footprint()
    await api.voice({**CALL, "from": "+1 (415) 555-0100"}, 409)
    assert (await api.footprint())[1] == identities


async def test_email_replay_by_message_id(api: Api) -> None:
    """The same raw message again is 200 with the same Contact; edited content is 409."""
    raw = sample("multipart_qp.eml")
    first = await api.email(raw)
    again = await api.email(raw, status=200)
    assert again["id"] == first["id"]
    edited = raw.replace(b"Charged twice", b"Charged thrice")
    problem = await api.email(edited, status=409)
    assert problem["status"] == 409
    assert (await api.waiting())["billing"] == 1


async def test_email_json_replay_by_message_id(api: Api) -> None:
    """The JSON form is idempotent by message_id too (angle brackets or not)."""
    body = {"message_id": "<j7@example.com>", "from": "ana@example.com", "subject": "Bill"}
    first = await api.call("POST", "/v1/channels/email", 201, json=body)
    again = await api.call("POST", "/v1/channels/email", 200, json=body)
    assert again["id"] == first["id"]
    changed = {**body, "subject": "Invoice"}
    await api.call("POST", "/v1/channels/email", 409, json=changed)


async def test_sms_replay_by_message_id(api: Api) -> None:
    """The same SMS id is 200 with the same Contact; the same id with other text is 409."""
    first = await api.sms({**SMS, "text": "I was charged twice"})
    again = await api.sms({**SMS, "text": "I was charged twice"}, 200)
    assert again["id"] == first["id"]
    await api.sms({**SMS, "text": "I was charged three times"}, 409)
    assert (await api.waiting())["billing"] == 1


async def test_a_blank_sms_gets_in_line(api: Api) -> None:
    """An SMS with empty text is a customer writing in: routed and queued, not a 422."""
    contact = await api.sms({**SMS, "message_id": "SM-blank", "text": ""})
    assert (contact["channel"], contact["status"]) == ("sms", "queued")
    assert contact.get("body", "") == ""
    assert sum((await api.waiting()).values()) == 1


async def test_native_ids_are_scoped_per_channel(api: Api) -> None:
    """A call and an SMS that share a native id are two contacts, not a replay conflict."""
    call = await api.voice({"call_id": "X1", "from": "+14155550100"})
    text = await api.sms({"message_id": "X1", "from": "+14155550100", "text": "hi"})
    assert call["id"] != text["id"]
    assert call["customer"]["id"] == text["customer"]["id"]


async def test_voice_webhook_becomes_a_contact(api: Api) -> None:
    """The IVR's language and intent reach the Contact and the routing rules."""
    contact = await api.voice(
        {
            "call_id": "CAes1",
            "from": "+34 612 34 56 78",
            "to": "+18005550199",
            "ivr": {"language": "es", "intent": "billing", "digits": "2"},
        }
    )
    assert contact["channel"] == "voice"
    assert (contact["language"], contact["intent"]) == ("es", "billing")
    assert (contact["rule"], contact["queue"]) == ("spanish-billing", "billing-es")
    assert contact["status"] == "queued"
    assert contact["position"] == 1


@pytest.mark.parametrize("sender", ["anonymous", "Restricted", "+266696687", None])
async def test_a_call_from_a_withheld_number_is_routed_with_no_customer(
    api: Api, sender: str | None
) -> None:
    """A caller whose number is withheld still gets in line, as nobody in particular: no
    customer, no identity kept; a callback then needs a number to dial (422 without one)."""
    call: dict[str, Any] = {"call_id": f"CA-anon-{sender}"}
    if sender is not None:
        call["from"] = sender
    contact = await api.voice(call)
    assert (contact["status"], contact["customer"]["id"]) == ("queued", None)
    assert (await api.footprint())[1] == {}
    vic = {"name": "Vic", "skills": {"billing": 5}, "capacity": {"voice": 1}}
    await api.call("PUT", "/v1/agents/vic", 201, json=vic, token=ADMIN_TOKEN)  # able to call back
    path = f"/v1/contacts/{contact['id']}/callback"
    problem = await api.call("POST", path, 422, json={})
    assert "withheld" in problem["detail"]
    done = await api.call("POST", path, 200, json={"number": "+1 415 555 0100"})
    assert done["channel"] == "callback"


@pytest.mark.parametrize(
    "sender", ["client:dana", "sip:alice@pbx.example.com", "+1 555 0100", "020 7946 0958"]
)
async def test_a_caller_id_that_is_no_number_still_gets_in_line(api: Api, sender: str) -> None:
    """A call is never refused for its caller id: a softphone's client id, a SIP name, an
    impossible number or another country's national number is routed from no known customer
    (it used to be a 422, so the call was dropped). A callback then needs a number."""
    contact = await api.voice({"call_id": f"CA-{sender}", "from": sender})
    assert (contact["status"], contact["customer"]["id"]) == ("queued", None)
    assert (await api.footprint())[1] == {}
    path = f"/v1/contacts/{contact['id']}/callback"
    problem = await api.call("POST", path, 422, json={})
    assert "no phone number" in problem["detail"]
    text = await api.call(
        "POST", "/v1/channels/sms", 201, json={"message_id": f"SM-{sender}", "from": sender,
                                               "text": "hi"}
    )  # fmt: skip
    assert text["customer"]["id"] is None


async def test_a_sip_uri_with_a_number_is_read_as_that_number(api: Api) -> None:
    """``sip:+14155550100@pbx;user=phone`` is the caller +14155550100."""
    first = await api.voice({"call_id": "CA-sip1", "from": "sip:+14155550100@pbx;user=phone"})
    again = await api.voice({"call_id": "CA-sip2", "from": "+1 415 555 0100"})
    assert first["customer"]["id"] is not None
    assert first["customer"]["id"] == again["customer"]["id"]


@pytest.mark.parametrize(
    ("given", "kept"), [("es-MX", "es-MX"), ("ES", "es"), ("es-419", "es-419")]
)
async def test_regional_spanish_routes_as_spanish_on_every_channel(
    api: Api, given: str, kept: str
) -> None:
    """A language tag keeps its region in its conventional case, and the demo's Spanish rules
    take every Spanish tag (es-MX went to the English queue by voice but the Spanish one by
    email, whose adapter cut the tag to two letters)."""
    call = await api.voice(
        {"call_id": f"CA-{given}", "from": "+1 415 555 0100",
         "ivr": {"language": given, "intent": "billing"}}
    )  # fmt: skip
    routed = (call["language"], call["rule"], call["queue"])
    assert routed == (kept, "spanish-billing", "billing-es")
    mail = await api.email(
        _raw_email(message_id=f"<{given}@example.com>").replace(
            b"Content-Type", f"Content-Language: {given}\r\nContent-Type".encode(), 1
        )
    )
    assert (mail["language"], mail["rule"]) == (kept, "spanish-billing")


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/channels/voice", {"call_id": "CA-vnd", "from": "+1 415 555 0100"}),
        ("/v1/channels/sms", {"message_id": "SM-vnd", "from": "+1 415 555 0100", "text": "hi"}),
        ("/v1/channels/email", {"from": "ana@example.com", "message_id": "<vnd@x>", "body": "hi"}),
        ("/v1/contacts", {"channel": "chat", "from": "web:ana"}),
    ],
)
async def test_a_json_type_with_the_json_suffix_is_json_everywhere(
    api: Api, path: str, payload: dict[str, Any]
) -> None:
    """``application/<vendor>+json`` (RFC 6839) is read as JSON by every endpoint that takes
    JSON, the gateways' webhooks as ``POST /v1/contacts`` (the webhooks used to refuse it)."""
    created = await api.call(
        "POST",
        path,
        201,
        data=json.dumps(payload),
        content_type="application/vnd.gateway+json",
        headers={"Idempotency-Key": "vnd-1"},
    )
    assert created["status"] == "queued"
