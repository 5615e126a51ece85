"""SMS: ``{message_id, from, to, text}``; language and intent read from the text (which may
be empty, but not missing)."""

from __future__ import annotations

from typing import Any

import orjson

from channels import classify
from channels.inbound import AdapterError, Inbound, digest, text_field


def from_webhook(payload: Any) -> Inbound:
    if not isinstance(payload, dict):
        raise AdapterError("the webhook body must be a JSON object", ("body",))
    unknown = set(payload) - {"message_id", "from", "to", "text"}
    if unknown:
        raise AdapterError(f"unknown fields: {', '.join(sorted(unknown))}", ("body",))
    message_id = text_field(payload, "message_id", True, 128)
    sender = text_field(payload, "from", True, 64)
    # (a blank message is still the customer writing in, a picture the gateway dropped or a
    # slip of the thumb: it is routed with an empty body; only a missing `text` is an error)
    text = text_field(payload, "text", True, 1600, empty=True) or ""
    contact: dict[str, Any] = {"channel": "sms", "from": sender, "body": text}
    if (lang := classify.language(text)) is not None:
        contact["language"] = lang
    if (topic := classify.intent(text)) is not None:
        contact["intent"] = topic
    if dialled := text_field(payload, "to", False, 64):
        contact["attributes"] = {"to": dialled}
    assert message_id is not None
    return Inbound(
        contact, "sms", message_id, digest(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
    )
