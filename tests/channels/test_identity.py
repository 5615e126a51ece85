"""Identity normalisation: phones to E.164, emails case-folded, chat handles per gateway.

These keys are what makes one customer of a call, an email and a chat, so each format a
gateway may send has to land on the same key, and anything unreadable has to be refused.
"""

from __future__ import annotations

import pytest

from channels import identity
from channels.identity import IdentityError


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("(415) 555-0100", "US", "+14155550100"),
        ("00 33 1 42 68 53 00", "US", "+33142685300"),
        ("415.555.0100", "US", "+14155550100"),
        ("+1-415-555-0100", "GB", "+14155550100"),
        ("  +1 (415) 555 0100  ", "US", "+14155550100"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("020 7946 0958", "gb", "+442079460958"),
        ("01 42 68 53 00", "FR", "+33142685300"),
        ("612 34 56 78", "ES", "+34612345678"),
        ("tel:+44-20-7946-0958", "US", "+442079460958"),
    ],
)
def test_phone_to_e164(raw: str, region: str, e164: str) -> None:
    """International, national and punctuated forms all become the same E.164 number."""
    assert identity.phone(raw, region) == e164


def test_phone_default_region_is_us() -> None:
    """A number without a country code is read in the US unless told otherwise."""
    assert identity.phone("(415) 555-0100") == "+14155550100"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "12",
        "call me maybe",
        "+1 555 0100",  # too short for the NANP
        "+44 20 7946 095",  # one digit short
        "(000) 000-0000",
        "+999 1234 5678",  # no such country code
        "ana@example.com",
    ],
)
def test_invalid_phone_raises(raw: str) -> None:
    """Anything that is not a valid number for its country is an IdentityError."""
    with pytest.raises(IdentityError):
        identity.phone(raw)


def test_national_number_needs_the_right_region() -> None:
    """A UK national number is not a valid number when read as a US number."""
    with pytest.raises(IdentityError, match="not a valid phone number"):
        identity.phone("020 7946 0958", "US")


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("ana@example.com", "ana@example.com"),
        ("ANA@Example.COM", "ana@example.com"),
        ("  Ana.Garcia+bank@Mail.Example.co.uk ", "ana.garcia+bank@mail.example.co.uk"),
        ("o'brien@example.ie", "o'brien@example.ie"),
    ],
)
def test_email_is_case_folded(raw: str, folded: str) -> None:
    """Emails are stripped and case-folded, so any capitalisation is one identity."""
    assert identity.email(raw) == folded


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ana",
        "ana@",
        "@example.com",
        "ana@localhost",
        "ana@@example.com",
        "ana garcia@example.com",
        "ana@example.c",
        "ana@exa_mple.com",
        "a" * 65 + "@example.com",
    ],
)
def test_invalid_email_raises(raw: str) -> None:
    """A string that is not one plain address is an IdentityError."""
    with pytest.raises(IdentityError, match="not a valid email address"):
        identity.email(raw)


def test_chat_handles_are_scoped_by_gateway() -> None:
    """The same handle on two gateways is two identities; on one gateway it is one."""
    assert identity.handle("web", "ana_92") == "chat:web:ana_92"
    assert identity.handle("web", " ana_92 ") == "chat:web:ana_92"
    assert identity.handle("whatsapp", "ana_92") == "chat:whatsapp:ana_92"
    assert identity.handle("web", "ana_92") != identity.handle("whatsapp", "ana_92")


@pytest.mark.parametrize("raw", ["", "ana 92", "ana:92", "a/b", "x" * 129, "<script>"])
def test_invalid_handle_raises(raw: str) -> None:
    """Handles with spaces, separators, markup or over 128 characters are refused."""
    with pytest.raises(IdentityError, match="not a valid chat handle"):
        identity.handle("web", raw)


@pytest.mark.parametrize(
    ("channel", "sender", "key"),
    [
        ("voice", "(415) 555-0100", "phone:+14155550100"),
        ("sms", "00 33 1 42 68 53 00", "phone:+33142685300"),
        ("callback", "+44 20 7946 0958", "phone:+442079460958"),
        ("email", "ANA@example.com", "email:ana@example.com"),
        ("chat", "Ana@Example.com", "email:ana@example.com"),
        ("chat", "ana_92", "chat:web:ana_92"),
    ],
)
def test_identity_of_sender_by_channel(channel: str, sender: str, key: str) -> None:
    """Phone channels read phones, email reads addresses, chat reads an address or a handle."""
    assert identity.of_sender(channel, sender) == key


def test_a_sender_may_name_its_gateway() -> None:
    """`gateway:handle` is read as a profile's chat handle is: on that gateway, not the
    connection's; a gateway name with spaces or markup is refused."""
    assert identity.of_sender("chat", "whatsapp:ana_92") == "chat:whatsapp:ana_92"
    assert identity.of_sender("chat", "whatsapp:ana_92", gateway="app") == "chat:whatsapp:ana_92"
    assert identity.scoped_handle("whatsapp:ana_92") == identity.handle("whatsapp", "ana_92")
    assert identity.scoped_handle(" ana_92 ") == "chat:web:ana_92"
    for bad in ("what sapp:ana", "<b>:ana", ":ana", "web:ana:92"):
        with pytest.raises(IdentityError):
            identity.scoped_handle(bad)


def test_of_sender_uses_region_and_gateway() -> None:
    """The region reads national numbers; the gateway scopes chat handles."""
    assert identity.of_sender("voice", "020 7946 0958", region="GB") == "phone:+442079460958"
    assert identity.of_sender("chat", "ana_92", gateway="app") == "chat:app:ana_92"


@pytest.mark.parametrize(
    ("channel", "sender"), [("callback", "ana@example.com"), ("email", "+14155550100")]
)
def test_sender_of_the_wrong_kind_raises(channel: str, sender: str) -> None:
    """An email address as the number to call back, or a number on email, is unreadable."""
    with pytest.raises(IdentityError):
        identity.of_sender(channel, sender)


@pytest.mark.parametrize("channel", ["voice", "sms"])
@pytest.mark.parametrize(
    "sender", ["ana@example.com", "client:dana", "sip:alice@pbx.example.com", "72345", "call me"]
)
def test_a_caller_id_that_is_no_number_is_nobody(channel: str, sender: str) -> None:
    """On a call or a text, a sender that is no readable number is no identity (the contact
    is routed from no known customer), not an error; a SIP URI's number is read."""
    assert identity.of_sender(channel, sender) == ""
    sip = "sip:+14155550100@pbx.example.com;user=phone"
    assert identity.of_sender(channel, sip) == "phone:+14155550100"


@pytest.mark.parametrize(
    ("raw", "region", "country"),
    [
        ("+52 55 1234 5678", "US", "MX"),
        ("(415) 555-0100", "US", "US"),
        ("+44 20 7946 0958", "US", "GB"),
        ("612 34 56 78", "ES", "ES"),
        ("+1 416 555 0100", "US", "CA"),  # one calling code, two countries: the number decides
        ("not a number", "US", ""),
        ("+800 1234 5678", "US", ""),  # an international freephone number belongs to no country
    ],
)
def test_country_of_a_phone_number(raw: str, region: str, country: str) -> None:
    """A number's ISO 3166 region, read as ``phone`` reads it; '' when there is none."""
    assert identity.country(raw, region) == country


@pytest.mark.parametrize(
    "sender", ["anonymous", " Restricted ", "PRIVATE", "unavailable", "+266696687", "", "  "]
)
def test_a_withheld_number_is_nobody(sender: str) -> None:
    """A call or text whose number is withheld has no identity (no customer); a callback,
    which must be dialled, still needs a real number."""
    assert identity.withheld(sender)
    assert identity.of_sender("voice", sender) == ""
    assert identity.of_sender("sms", sender) == ""
    assert identity.country(sender) == ""
    with pytest.raises(IdentityError):
        identity.of_sender("callback", sender)


def test_a_number_is_not_withheld() -> None:
    """Real numbers and unreadable text are not taken for a withheld number."""
    assert not identity.withheld("+1 415 555 0100")
    assert not identity.withheld("call me maybe")
