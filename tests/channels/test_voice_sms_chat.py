"""The voice, SMS and chat adapters: native payload in, contact fields and native id out.

Adapters are pure. Each names its idempotency scope and native id (call id, SMS id, chat
session), and a payload hash that is stable under key order but changes with any value, so a
replay can be told from a different message reusing an id.
"""

from __future__ import annotations

from typing import Any

import pytest

from channels import chat, sms, voice
from channels.inbound import AdapterError

CALL: dict[str, Any] = {
    "call_id": "CA5f1e9b7c",
    "from": "+44 20 7946 0958",
    "to": "+1 800 555 0199",
    "ivr": {"language": "es", "intent": "billing", "digits": "2#"},
}


def test_voice_webhook_to_contact() -> None:
    """Caller, IVR language, intent and digits, and the dialled number become the contact."""
    inbound = voice.from_webhook(CALL)
    assert inbound.contact == {
        "channel": "voice",
        "from": "+44 20 7946 0958",
        "language": "es",
        "intent": "billing",
        "attributes": {"dnis": "+1 800 555 0199", "ivr_digits": "2#"},
    }
    assert (inbound.scope, inbound.native_id) == ("voice", "CA5f1e9b7c")
    assert inbound.message_id is None
    assert inbound.references == []


def test_voice_webhook_minimal() -> None:
    """Only call_id and from are required; an empty IVR adds nothing."""
    inbound = voice.from_webhook({"call_id": "CA1", "from": "(415) 555-0100", "ivr": {}})
    assert inbound.contact == {"channel": "voice", "from": "(415) 555-0100", "attributes": {}}


def test_voice_payload_hash_ignores_key_order_not_values() -> None:
    """A replay with keys reordered hashes the same; any changed value hashes differently."""
    same = voice.from_webhook(dict(reversed(list(CALL.items()))))
    other = voice.from_webhook({**CALL, "to": "+1 800 555 0198"})
    assert same.payload_hash == voice.from_webhook(CALL).payload_hash
    assert other.payload_hash != same.payload_hash
    assert other.native_id == same.native_id


@pytest.mark.parametrize("payload", [{"call_id": "CA1"}, {"call_id": "CA1", "from": ""}])
def test_a_call_without_caller_id_is_a_call_from_nobody(payload: dict[str, Any]) -> None:
    """A network that withholds the caller's number may send no ``from``: still a call."""
    assert voice.from_webhook(payload).contact == {"channel": "voice", "attributes": {}}


@pytest.mark.parametrize(
    ("payload", "message", "loc"),
    [
        ([CALL], "the webhook body must be a JSON object", ("body",)),
        ({"from": "+14155550100"}, "`call_id` is required", ("body", "call_id")),
        ({"call_id": 7, "from": "+14155550100"}, "`call_id` must be a string", ("body", "call_id")),
        ({**CALL, "call_id": "C" * 129}, "`call_id` is longer than 128", ("body", "call_id")),
        ({**CALL, "ivr": ["1"]}, "`ivr` must be an object", ("body", "ivr")),
        ({**CALL, "ivr": {"digits": 2}}, "`digits` must be a string", ("body", "ivr", "digits")),
        ({**CALL, "direction": "inbound"}, "unknown fields: direction", ("body",)),
    ],
)
def test_bad_voice_webhook(payload: Any, message: str, loc: tuple[str, ...]) -> None:
    """Each malformed webhook is an AdapterError (422) naming the field."""
    with pytest.raises(AdapterError, match=message) as caught:
        voice.from_webhook(payload)
    assert caught.value.loc == loc
    assert caught.value.status == 422


def test_sms_reads_language_and_intent_from_text() -> None:
    """An SMS's language and intent come from its text; `to` is kept as an attribute."""
    inbound = sms.from_webhook(
        {
            "message_id": "SM9a8b",
            "from": "00 33 1 42 68 53 00",
            "to": "+18005550199",
            "text": "Hola, tengo un cobro duplicado en mi factura",
        }
    )
    assert inbound.contact == {
        "channel": "sms",
        "from": "00 33 1 42 68 53 00",
        "body": "Hola, tengo un cobro duplicado en mi factura",
        "language": "es",
        "intent": "billing",
        "attributes": {"to": "+18005550199"},
    }
    assert (inbound.scope, inbound.native_id) == ("sms", "SM9a8b")


def test_sms_without_recognisable_words() -> None:
    """An SMS with no known words has neither language nor intent."""
    inbound = sms.from_webhook({"message_id": "SM1", "from": "+14155550100", "text": "?? 42"})
    assert inbound.contact == {"channel": "sms", "from": "+14155550100", "body": "?? 42"}


def test_a_blank_sms_is_a_contact() -> None:
    """An SMS whose text is empty is routed with an empty body, not refused."""
    inbound = sms.from_webhook({"message_id": "SM2", "from": "+14155550100", "text": ""})
    assert inbound.contact == {"channel": "sms", "from": "+14155550100", "body": ""}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("hi", "the webhook body must be a JSON object"),
        ({"from": "+14155550100", "text": "hi"}, "`message_id` is required"),
        ({"message_id": "SM1", "text": "hi"}, "`from` is required"),
        ({"message_id": "SM1", "from": "+14155550100"}, "`text` is required"),
        ({"message_id": "SM1", "from": "+1", "text": "x" * 1601}, "longer than 1600"),
        ({"message_id": "SM1", "from": "+1", "text": "hi", "media": []}, "unknown fields: media"),
    ],
)
def test_bad_sms(payload: Any, message: str) -> None:
    """Each malformed SMS webhook is an AdapterError with a clear message."""
    with pytest.raises(AdapterError, match=message):
        sms.from_webhook(payload)


def test_sms_hash_changes_with_text() -> None:
    """The same SMS id with other text is a different payload."""
    base = {"message_id": "SM1", "from": "+14155550100", "text": "hello"}
    assert (
        sms.from_webhook(base).payload_hash != sms.from_webhook({**base, "text": "hi"}).payload_hash
    )


def test_chat_start_to_contact() -> None:
    """A chat start with text infers language and intent; the session id is the native id."""
    inbound = chat.from_start(
        {"type": "start", "session_id": "web-77", "from": "ana_92", "text": "I was charged twice"}
    )
    assert inbound.contact == {
        "channel": "chat",
        "from": "ana_92",
        "body": "I was charged twice",
        "language": "en",
        "intent": "billing",
    }
    assert (inbound.scope, inbound.native_id) == ("chat", "web-77")


def test_chat_gateway_language_and_intent_win_over_the_text() -> None:
    """What the gateway says (a chosen topic) beats what the text suggests."""
    inbound = chat.from_start(
        {
            "type": "start",
            "session_id": "s1",
            "from": "ana_92",
            "language": "es",
            "intent": "sales",
            "text": "I was charged twice",
        }
    )
    assert (inbound.contact["language"], inbound.contact["intent"]) == ("es", "sales")


def test_chat_without_text_has_no_guesses() -> None:
    """A start with no text has no language or intent and no body."""
    inbound = chat.from_start({"type": "start", "session_id": "s1", "from": "ana_92"})
    assert inbound.contact == {"channel": "chat", "from": "ana_92"}


def test_chat_ref_does_not_change_the_payload_hash() -> None:
    """The client's `ref` is transport, not content: a replay with another ref is the same."""
    start = {"type": "start", "session_id": "s1", "from": "ana_92", "text": "hi"}
    assert (
        chat.from_start({**start, "ref": 1}).payload_hash
        == chat.from_start({**start, "ref": 2}).payload_hash
    )
    assert (
        chat.from_start(start).payload_hash != chat.from_start({**start, "text": "yo"}).payload_hash
    )


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"type": "start", "from": "ana_92"}, "`session_id` is required"),
        ({"type": "start", "session_id": "s1"}, "`from` is required"),
        ({"type": "start", "session_id": "s1", "from": "a", "text": "x" * 4001}, "longer than"),
        ({"type": "start", "session_id": "s1", "from": "a", "topic": "x"}, "unknown fields: topic"),
    ],
)
def test_bad_chat_start(message: dict[str, Any], error: str) -> None:
    """Each malformed start message is an AdapterError with a clear message."""
    with pytest.raises(AdapterError, match=error):
        chat.from_start(message)
