"""The email adapter on real-world raw messages (``samples/*.eml``) and on the JSON form.

Raw messages go through the standard library's parser: multipart/alternative with
quoted-printable, base64 bodies, RFC 2047 subjects (UTF-8 and ISO-2022-JP), HTML-only mail,
attachments, and reply chains. Messages that cannot become a contact raise ``AdapterError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from channels import email
from channels.inbound import AdapterError, Inbound

SAMPLES = Path(__file__).resolve().parent / "samples"


def parse(name: str) -> Inbound:
    return email.from_raw((SAMPLES / name).read_bytes())


@pytest.mark.parametrize(
    ("name", "sender", "subject", "language", "intent", "message_id"),
    [
        (
            "multipart_qp.eml",
            "Ana.Garcia@Example.com",
            "Charged twice on my October statement",
            "en",
            "billing",
            "CAF=x9k2Lq0b1Tz9rxLmPq@mail.example.com",
        ),
        (
            "base64_spanish.eml",
            "luis.hernandez@example.mx",
            "Cobro duplicado en mi factura ¿me ayudan?",
            "es",
            "billing",
            "20241016130102.7f3a9c@correo.example.mx",
        ),
        (
            "japanese_subject.eml",
            "hanako.yamada@example.jp",
            "請求書の金額について",
            "ja",
            None,
            "0100019298a1b2c3-jp-4d5e@email.example.jp",
        ),
        (
            "html_only.eml",
            "peter.novak@example.org",
            "Login problem",
            "en",
            "support",
            "mkt.20241018140000.55aa@newsletter-replies.example.org",
        ),
        (
            "mixed_attachment.eml",
            "sean.obrien@example.ie",
            "Invoice 2024-10 attached",
            "en",
            "billing",
            "5f2c1e0a-93d1-4b7e-8f0b-6d2f7c1a9e44@outlook.example.com",
        ),
        (
            "reply_chain.eml",
            "ana.garcia.work@example.co.uk",
            "Re: Charged twice on my October statement",
            "en",
            "billing",
            "reply-3.20241021090000@mail.example.co.uk",
        ),
    ],
)
def test_sample_parses(
    name: str,
    sender: str,
    subject: str,
    language: str,
    intent: str | None,
    message_id: str,
) -> None:
    """Each sample yields its sender address, decoded subject, language, intent and id."""
    inbound = parse(name)
    contact = inbound.contact
    assert contact["channel"] == "email"
    assert contact["from"] == sender
    assert contact["subject"] == subject
    assert contact.get("language") == language
    assert contact.get("intent") == intent
    assert (inbound.scope, inbound.native_id, inbound.message_id) == (
        "email",
        message_id,
        message_id,
    )


def test_quoted_printable_plain_part_is_preferred_over_html() -> None:
    """multipart/alternative: the decoded text/plain part is the body, not the HTML one."""
    body = parse("multipart_qp.eml").contact["body"]
    assert body == (
        "Hello,\n\nI was charged twice for the same payment on my October statement — the card "
        "fee of 25.00 appears on the 3rd and again on the 4th. Could you please refund the "
        "duplicate?\n\nThanks,\nAna García"
    )
    assert "HTML VERSION" not in body


def test_base64_body_is_decoded() -> None:
    """A base64 UTF-8 body arrives as text, accents intact."""
    body = parse("base64_spanish.eml").contact["body"]
    assert body.startswith("Hola, buenos días.\n\nEste mes tengo un cobro duplicado")
    assert body.endswith("Gracias,\nLuis")


def test_iso_2022_jp_subject_and_content_language() -> None:
    """An ISO-2022-JP encoded-word subject decodes; Content-Language gives the language."""
    contact = parse("japanese_subject.eml").contact
    assert contact["subject"] == "請求書の金額について"
    assert contact["body"].splitlines()[1] == "先月の請求書の金額が間違っているようです。"
    assert contact["language"] == "ja"


def test_html_only_is_reduced_to_text() -> None:
    """An HTML-only message loses its tags, styles and scripts; entities are decoded."""
    body = parse("html_only.eml").contact["body"]
    assert "I can't login to the app since yesterday & the password reset e-mail" in body
    assert "Peter Novák" in body
    for leftover in ("<", ">", "&amp;", "&#39;", "color: red", "tracking"):
        assert leftover not in body, leftover


def test_attachment_is_not_the_body() -> None:
    """In multipart/mixed the text part is the body; the PDF attachment is ignored."""
    body = parse("mixed_attachment.eml").contact["body"]
    assert body == "Please find the invoice attached. The fee is wrong."


def test_reply_chain_references() -> None:
    """References then In-Reply-To name the thread, oldest first, each once; replies are marked."""
    inbound = parse("reply_chain.eml")
    assert inbound.references == [
        "CAF=x9k2Lq0b1Tz9rxLmPq@mail.example.com",
        "agent-2.20241020171500@bank.example",
    ]
    assert inbound.contact["attributes"] == {"reply": True}


def test_first_message_is_not_a_reply() -> None:
    """A message without In-Reply-To or References has no thread and no reply attribute."""
    inbound = parse("multipart_qp.eml")
    assert inbound.references == []
    assert "attributes" not in inbound.contact


def test_same_bytes_same_hash() -> None:
    """The payload hash is of the raw bytes: a replay matches, an edit does not."""
    raw = (SAMPLES / "multipart_qp.eml").read_bytes()
    assert email.from_raw(raw).payload_hash == email.from_raw(raw).payload_hash
    edited = raw.replace(b"Charged twice", b"Charged thrice")
    assert email.from_raw(edited).payload_hash != email.from_raw(raw).payload_hash


def test_crlf_line_endings() -> None:
    """Messages with CRLF line endings, as on the wire, parse the same as LF ones."""
    raw = (SAMPLES / "base64_spanish.eml").read_bytes()
    crlf = email.from_raw(raw.replace(b"\n", b"\r\n"))
    assert crlf.contact == parse("base64_spanish.eml").contact


@pytest.mark.parametrize(
    ("name", "message", "loc"),
    [
        ("no_from.eml", "the message has no From address", ("body", "From")),
        ("no_message_id.eml", "the message has no Message-ID", ("body", "Message-ID")),
        ("binary_garbage.eml", "not an RFC 5322 message (binary data)", ("body",)),
    ],
)
def test_bad_samples_raise(name: str, message: str, loc: tuple[str, ...]) -> None:
    """A message without From or Message-ID, or binary data, is refused with a clear reason."""
    with pytest.raises(AdapterError) as caught:
        parse(name)
    assert str(caught.value) == message
    assert caught.value.loc == loc
    assert caught.value.status == 422


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"just a line of text, no headers at all",
        bytes(range(1, 256)) * 8,
        b"\xff\xfe<\x00h\x00t\x00m\x00l\x00>",
    ],
)
def test_garbage_raises(raw: bytes) -> None:
    """Empty input, headerless text and random bytes are not RFC 5322 messages."""
    with pytest.raises(AdapterError, match=r"not an RFC 5322 message|no From address"):
        email.from_raw(raw)


def test_from_without_address_raises() -> None:
    """A From header with only a display name has no address to resolve."""
    raw = b"From: Ana Garcia\nMessage-ID: <x1@example.com>\nSubject: hi\n\nhello\n"
    with pytest.raises(AdapterError, match="no From address"):
        email.from_raw(raw)


def test_json_email_to_contact() -> None:
    """The JSON form maps like a raw message; references and in_reply_to form the thread."""
    payload: dict[str, Any] = {
        "message_id": "<j1@mail.example.com>",
        "from": "Ana@Example.com",
        "to": "help@bank.example",
        "subject": "Re: my bill",
        "body": "Any news on the refund?",
        "in_reply_to": "<a2@bank.example>",
        "references": ["<a1@mail.example.com>", "<a2@bank.example>"],
    }
    inbound = email.from_json(payload)
    assert inbound.contact == {
        "channel": "email",
        "from": "Ana@Example.com",
        "subject": "Re: my bill",
        "body": "Any news on the refund?",
        "language": "en",
        "intent": "billing",
        "attributes": {"reply": True},
    }
    assert (inbound.native_id, inbound.message_id) == ("j1@mail.example.com", "j1@mail.example.com")
    assert inbound.references == ["a1@mail.example.com", "a2@bank.example"]


def test_json_from_may_carry_a_display_name() -> None:
    """`from` may be a From header's form, "Name <address>", as a raw message's is: the
    contact is from the address (it used to be refused as not an email address)."""
    payload = {"message_id": "<n1@mail.example.com>", "from": "Pat Lee <pat@example.com>"}
    assert email.from_json(payload).contact["from"] == "pat@example.com"
    raw = b"From: Pat Lee <pat@example.com>\r\nMessage-ID: <n2@mail.example.com>\r\n\r\nhi\r\n"
    assert email.from_raw(raw).contact["from"] == "pat@example.com"


def test_json_references_as_header_string() -> None:
    """`references` may be the raw header text; `in_reply_to` is appended when missing."""
    inbound = email.from_json(
        {
            "message_id": "j2@x.com",
            "from": "ana@example.com",
            "references": "<a1@x.com> <a2@x.com>",
            "in_reply_to": "<a3@x.com>",
        }
    )
    assert inbound.native_id == "j2@x.com"
    assert inbound.references == ["a1@x.com", "a2@x.com", "a3@x.com"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (["x"], "the body must be a JSON object"),
        ({"from": "ana@example.com"}, "`message_id` is required"),
        ({"message_id": "<m@x.com>"}, "`from` is required"),
        ({"message_id": "<m@x.com>", "from": "a@x.com", "cc": "b@x.com"}, "unknown fields: cc"),
        ({"message_id": "<m@x.com>", "from": "a@x.com", "references": [1]}, "list of message ids"),
        ({"message_id": "<m@x.com>", "from": "a@x.com", "body": "x" * 32769}, "longer than"),
    ],
)
def test_bad_json_email(payload: Any, message: str) -> None:
    """Each malformed JSON email is an AdapterError with a clear message."""
    with pytest.raises(AdapterError, match=message):
        email.from_json(payload)


@pytest.mark.parametrize(
    ("header", "ids"),
    [
        ("<a@x.com>", ["a@x.com"]),
        ("<a@x.com>\n <b@y.org>", ["a@x.com", "b@y.org"]),
        ("a@x.com", ["a@x.com"]),
        ("", []),
        (None, []),
        ("not an id", []),
    ],
)
def test_message_ids(header: str | None, ids: list[str]) -> None:
    """Ids are read from angle brackets in order; a bare id is accepted; junk gives none."""
    assert email.message_ids(header) == ids
