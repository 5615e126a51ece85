"""Identity normalisation: the same person writes the same key from any channel.

Phones become E.164 (``phone:+14155550100``), read in a default region when they carry no
country code; emails are validated and lower-cased, domains in ASCII
(``email:ann@example.com``); chat handles are scoped by gateway (``chat:<gateway>:<handle>``):
a sender or profile entry written ``gateway:handle`` names its gateway, a bare handle is on the
connection's (``web``).
"""

from __future__ import annotations

import functools
import re
from email.utils import getaddresses

import phonenumbers

_EMAIL = re.compile(r"^[^@\s<>(),;:\"\[\]]{1,64}@([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")
_HANDLE = re.compile(r"^[\w.@+-]{1,128}$")
_GATEWAY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class IdentityError(ValueError):
    """A sender that cannot be read as a phone number, an email address or a handle."""


#: the channels whose sender is a phone number
PHONE_CHANNELS = frozenset({"voice", "sms", "callback"})


#: What telephony networks and gateways put in place of a caller's number when it is withheld:
#: the words, and the digits Twilio sends for them (ANONYMOUS, RESTRICTED, UNAVAILABLE and
#: BLOCKED spelt on a keypad).
_WITHHELD = frozenset(
    {
        "anonymous", "restricted", "private", "unavailable", "unknown", "withheld", "blocked",
        "266696687", "7378742833", "86282452253", "2562533",
    }
)  # fmt: skip
_NOT_DIGITS = re.compile(r"[\s+()-]")


def withheld(sender: str) -> bool:
    """Whether a call's or text's ``from`` says the number is withheld (``anonymous``,
    ``Restricted``, ``+266696687``): such a contact comes from nobody in particular."""
    text = sender.strip().casefold()
    return not text or text in _WITHHELD or _NOT_DIGITS.sub("", text) in _WITHHELD


def sip_user(sender: str) -> str:
    """The user part of a SIP URI (``sip:+14155550100@pbx.example.com;user=phone`` ->
    ``+14155550100``); anything else as it is."""
    text = sender.strip()
    low = text[:5].lower()
    if low.startswith(("sip:", "sips:")):
        user = text.split(":", 1)[1].split("@", 1)[0]
        return user.split(";", 1)[0]
    return text


def phone(text: str, region: str = "US") -> str:
    """E.164 for a phone number in any common format (``00`` international prefix included).

    Parsing and validating a number costs tens of microseconds, and a contact center hears
    the same numbers again and again: results are remembered (errors are not).
    """
    return _phone(text, region)


@functools.lru_cache(maxsize=16384)
def _phone(text: str, region: str) -> str:
    raw = text.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        number = phonenumbers.parse(raw, region.upper())
    except phonenumbers.NumberParseException as exc:
        raise IdentityError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise IdentityError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=16384)
def country(text: str, region: str = "US") -> str:
    """The ISO 3166 region a phone number belongs to (``MX`` for +52 55 ...), read as
    ``phone`` reads it; '' when it cannot be read, is withheld or belongs to no single
    region."""
    if withheld(text):
        return ""
    try:
        number = phonenumbers.parse(phone(text, region))
    except (IdentityError, phonenumbers.NumberParseException):
        return ""
    found = phonenumbers.region_code_for_number(number) or ""
    # non-geographic numbers (+800 freephone, satellites) have the region "001"
    return found if found.isalpha() and found != phonenumbers.UNKNOWN_REGION else ""


def email(text: str) -> str:
    """An address in lower case, its domain in ASCII (``bücher.de`` is ``xn--bcher-kva.de``);
    ``Name <address>`` is read as the address. Lower case, not case-folded: folding would
    make ``maße@`` and ``masse@`` one mailbox."""
    raw = text.strip()
    if "<" in raw:
        named = [address for _, address in getaddresses([raw]) if "@" in address]
        if len(named) != 1:
            raise IdentityError("not a valid email address")
        raw = named[0]
    local, at, domain = raw.rpartition("@")
    if at and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise IdentityError("not a valid email address") from None
    value = (local + at + domain).lower()
    if not _EMAIL.match(value):
        raise IdentityError("not a valid email address")
    return value


def handle(gateway: str, text: str) -> str:
    value = text.strip()
    if not _HANDLE.match(value):
        raise IdentityError("not a valid chat handle")
    return f"chat:{gateway}:{value}"


def scoped_handle(text: str, gateway: str = "web") -> str:
    """A chat handle written ``gateway:handle`` (``whatsapp:ana_92``), or bare: then it is on
    ``gateway``. Profiles and inbound chats read handles alike, so a handle a CRM lists for a
    gateway is the one a chat from that gateway resolves to."""
    scope, sep, name = text.strip().partition(":")
    if not sep:
        return handle(gateway, text)
    if not _GATEWAY.match(scope):
        raise IdentityError("not a valid chat gateway")
    return handle(scope, name)


def of_sender(channel: str, sender: str, region: str = "US", gateway: str = "web") -> str:
    """The identity key of a contact's ``from`` on its channel."""
    if channel in PHONE_CHANNELS:
        if channel != "callback" and withheld(sender):
            return ""  # a withheld number is no one's: the contact has no customer
        try:
            return "phone:" + phone(sip_user(sender), region)
        except IdentityError:
            if channel == "callback":
                raise  # the number an agent is to dial
            # a caller id that is no number this can read (a SIP URI of a name, a softphone's
            # "client:dana", a short code, a national number of another country): the call or
            # text is still taken, from no known customer
            return ""
    if channel == "email":
        return "email:" + email(sender)
    if "@" in sender and _EMAIL.match(sender.strip().lower()):
        return "email:" + email(sender)
    return scoped_handle(sender, gateway)
