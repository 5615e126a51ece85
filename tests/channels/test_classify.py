"""The keyword classifier that gives raw emails and SMS a language (en/es) and an intent.

It is deliberately simple: counts of common words decide the language, and the first intent
(cancel, billing, support, sales) with a keyword in the text wins.
"""

from __future__ import annotations

import pytest

from channels import classify


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Hola, tengo un problema con mi factura", "es"),
        ("Buenos días, necesito ayuda con el cobro de la tarjeta", "es"),
        ("Hi, I have a problem with my bill", "en"),
        ("Please help, the app is broken", "en"),
        ("HOLA GRACIAS", "es"),
        ("", None),
        ("12345 !!! ???", None),
        ("請求書の金額について", None),
        ("Bonjour, merci beaucoup", None),
    ],
)
def test_language(text: str, language: str | None) -> None:
    """Spanish or English by common words; None when neither shows up."""
    assert classify.language(text) == language


def test_language_majority_wins() -> None:
    """Mixed text is the language with more common words; a tie goes to English."""
    assert classify.language("hola, my bill is wrong, gracias") == "en"
    assert classify.language("Hi! Tengo un cobro que no es mío en la cuenta") == "es"
    assert classify.language("hola hello") == "en"


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("I was charged twice", "billing"),
        ("Where is my refund?", "billing"),
        ("Tengo un cobro duplicado en la factura", "billing"),
        ("I want to cancel my account", "cancel"),
        ("Quiero cancelar la tarjeta", "cancel"),
        ("I forgot my password", "support"),
        ("La app da un error de acceso", "support"),
        ("What is the price of an upgrade?", "sales"),
        ("Quiero contratar la oferta", "sales"),
        ("Hello there", None),
        ("", None),
    ],
)
def test_intent(text: str, intent: str | None) -> None:
    """Keywords in English or Spanish name the intent."""
    assert classify.intent(text) == intent


def test_intent_order_is_priority() -> None:
    """With keywords of several intents, the first intent in the table wins (cancel first)."""
    assert classify.intent("cancel: the bill has an error and I want a better price") == "cancel"
    assert classify.intent("the bill has an error and I want a better price") == "billing"
    assert classify.intent("the app has an error and I want a better price") == "support"


def test_intent_matches_whole_words_only() -> None:
    """A keyword inside a longer word does not count (`billboard`, `discharged`)."""
    assert classify.intent("I saw your billboard") is None
    assert classify.intent("I was discharged from hospital") is None


def test_words_are_case_folded_with_accents() -> None:
    """Tokens are lower case and keep Spanish letters."""
    assert classify.words("COMISIÓN por Año") == ["comisión", "por", "año"]
    assert classify.intent("COMISIÓN") == "billing"
