"""Voice: a telephony webhook ``{call_id, from, to, ivr: {language?, intent?, digits?}}``."""

from __future__ import annotations

from typing import Any

import orjson

from channels import classify
from channels.inbound import AdapterError, Inbound, digest, text_field


def from_webhook(payload: Any) -> Inbound:
    if not isinstance(payload, dict):
        raise AdapterError("the webhook body must be a JSON object", ("body",))
    call_id = text_field(payload, "call_id", True, 128)
    sender = text_field(payload, "from", False, 64)  # none: the network withheld it
    dialled = text_field(payload, "to", False, 64)
    ivr = payload.get("ivr") or {}
    if not isinstance(ivr, dict):
        raise AdapterError("`ivr` must be an object", ("body", "ivr"))
    unknown = set(payload) - {"call_id", "from", "to", "ivr"}
    if unknown:
        raise AdapterError(f"unknown fields: {', '.join(sorted(unknown))}", ("body",))
    # (a misspelt key would route the call as if the caller had chosen nothing)
    unknown = set(ivr) - {"language", "intent", "digits"}
    if unknown:
        raise AdapterError(f"unknown `ivr` fields: {', '.join(sorted(unknown))}", ("body", "ivr"))
    attributes: dict[str, Any] = {}
    if dialled:
        attributes["dnis"] = dialled
    # (errors name the field where the webhook has it: ivr.language, not the contact's language)
    digits = text_field(ivr, "digits", False, 32, at=("body", "ivr"))
    if digits:
        attributes["ivr_digits"] = digits
    contact: dict[str, Any] = {"channel": "voice", "attributes": attributes}
    if sender:
        contact["from"] = sender
    for name in ("language", "intent"):
        value = text_field(ivr, name, False, 64, at=("body", "ivr"))
        if value:
            contact[name] = value
    if "language" in contact:
        tag = classify.language_tag(contact["language"])
        if tag is None:
            raise AdapterError(
                "`language` is not a BCP 47 tag (e.g. es-MX)", ("body", "ivr", "language")
            )
        contact["language"] = tag
    assert call_id is not None
    return Inbound(
        contact, "voice", call_id, digest(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
    )
