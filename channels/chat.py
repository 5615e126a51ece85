"""Chat: the gateway websocket's ``start`` message (session id, sender, language, intent, text)."""

from __future__ import annotations

from typing import Any

import orjson

from channels import classify
from channels.inbound import AdapterError, Inbound, digest, text_field


def from_start(message: dict[str, Any]) -> Inbound:
    session = text_field(message, "session_id", True, 128) or ""
    sender = text_field(message, "from", True, 320)
    text = text_field(message, "text", False, 4000)
    contact: dict[str, Any] = {"channel": "chat", "from": sender}
    for name in ("language", "intent"):
        if value := text_field(message, name, False, 64):
            contact[name] = value
    if text:
        contact["body"] = text
        contact.setdefault("language", classify.language(text))
        contact.setdefault("intent", classify.intent(text))
    contact = {k: v for k, v in contact.items() if v is not None}
    unknown = set(message) - {"type", "session_id", "from", "language", "intent", "text", "ref"}
    if unknown:
        raise AdapterError(f"unknown fields: {', '.join(sorted(unknown))}", ("message",))
    payload = {k: v for k, v in message.items() if k != "ref"}
    return Inbound(
        contact, "chat", session, digest(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
    )
