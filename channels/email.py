"""Email: a raw RFC 5322 message (``message/rfc822``) or JSON, idempotent by Message-ID.

Raw messages are parsed with the standard library (``email.policy.default``): MIME multipart,
quoted-printable and base64 bodies, RFC 2047 encoded headers; the plain-text part is preferred
over HTML, which is reduced to text. ``In-Reply-To`` and ``References`` name the thread a reply
belongs to, so the router can join it to the thread's customer and last agent.
"""

from __future__ import annotations

import html
import re
from email import policy
from email.errors import MessageError
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

import orjson

from channels import classify
from channels.inbound import AdapterError, Inbound, digest, text_field

MAX_BODY_CHARS = 32768
_MSGID = re.compile(r"<([^<>\s]{1,250})>")
_TAG = re.compile(r"<[^>]+>")
_BLOCK = re.compile(r"(?is)<(script|style)\b.*?</\1>")


def message_ids(value: str | None) -> list[str]:
    """The ids in a Message-ID / In-Reply-To / References header, in order."""
    if not value:
        return []
    found = _MSGID.findall(value)
    return found or ([value.strip()] if value.strip() and " " not in value.strip() else [])


def _text_of_html(markup: str) -> str:
    text = _BLOCK.sub(" ", markup)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", text)
    text = html.unescape(_TAG.sub(" ", text))
    return re.sub(r"[ \t]+", " ", re.sub(r"\n\s*\n+", "\n\n", text)).strip()


def _body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError, MessageError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        content = _text_of_html(content)
    return content.strip()


def _contact(sender: str, subject: str, body: str, headers: dict[str, str]) -> dict[str, Any]:
    contact: dict[str, Any] = {"channel": "email", "from": sender}
    if subject:
        contact["subject"] = subject[:998]
    if body:
        contact["body"] = body[:MAX_BODY_CHARS]
    text = f"{subject}\n{body}"
    given = headers.get("content-language", "").split(",")[0]
    lang = classify.language_tag(given) or classify.language(text) or ""
    if lang:
        contact["language"] = lang
    if (topic := classify.intent(text)) is not None:
        contact["intent"] = topic
    return contact


def from_raw(raw: bytes) -> Inbound:
    if b"\x00" in raw[:4096]:
        raise AdapterError("not an RFC 5322 message (binary data)", ("body",), status=422)
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        sender_header = str(msg.get("From") or "")
        subject = str(msg.get("Subject") or "").strip()
        ids = message_ids(str(msg.get("Message-ID") or ""))
        reply_to = message_ids(str(msg.get("In-Reply-To") or ""))
        references = message_ids(str(msg.get("References") or ""))
        content_language = str(msg.get("Content-Language") or "")
    except (MessageError, ValueError, IndexError, TypeError) as exc:
        raise AdapterError(f"unparseable message headers: {exc}", ("body",)) from None
    if not msg.keys() or (msg.defects and not sender_header):
        raise AdapterError("not an RFC 5322 message", ("body",))
    addresses = [addr for _, addr in getaddresses([sender_header]) if "@" in addr]
    if not addresses:
        raise AdapterError("the message has no From address", ("body", "From"))
    if not ids:
        raise AdapterError("the message has no Message-ID", ("body", "Message-ID"))
    body = _body(msg) if isinstance(msg, EmailMessage) else ""
    contact = _contact(addresses[0], subject, body, {"content-language": content_language})
    refs = references + [r for r in reply_to if r not in references]
    if refs:
        contact["attributes"] = {"reply": True}
    return Inbound(contact, "email", ids[0], digest(raw), ids[0], refs)


def from_json(payload: Any) -> Inbound:
    if not isinstance(payload, dict):
        raise AdapterError("the body must be a JSON object", ("body",))
    allowed = {"message_id", "from", "to", "subject", "body", "in_reply_to", "references"}
    unknown = set(payload) - allowed
    if unknown:
        raise AdapterError(f"unknown fields: {', '.join(sorted(unknown))}", ("body",))
    message_id = text_field(payload, "message_id", True, 250) or ""
    sender = text_field(payload, "from", True, 320) or ""
    subject = text_field(payload, "subject", False, 998) or ""
    body = text_field(payload, "body", False, MAX_BODY_CHARS) or ""
    refs = payload.get("references") or []
    if isinstance(refs, str):
        refs = message_ids(refs)
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise AdapterError("`references` must be a list of message ids", ("body", "references"))
    reply_to = text_field(payload, "in_reply_to", False, 250)
    ids = message_ids(message_id) or [message_id]
    refs = [i for r in refs for i in (message_ids(r) or [r])]
    if reply_to:
        refs += [r for r in (message_ids(reply_to) or [reply_to]) if r not in refs]
    # "Pat <pat@example.com>" as in a From header, or the bare address
    named = [addr for _, addr in getaddresses([sender]) if "@" in addr]
    contact = _contact(named[0] if named else sender, subject, body, {})
    if refs:
        contact["attributes"] = {"reply": True}
    payload_hash = digest(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
    return Inbound(contact, "email", ids[0], payload_hash, ids[0], refs)
