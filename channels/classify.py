"""A small keyword classifier for text channels: language (en/es) and intent.

Gateways that already know the language or intent pass them; this fills the gap for raw email
and SMS so the routing rules still see ``contact.language`` and ``contact.intent``. It is
deliberately simple and predictable: the first intent whose keywords appear wins.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-záéíóúñü]+")
_SPANISH = frozenset(
    "el la los las de del que y en un una por para con no mi mis su es está estoy hola gracias "
    "quiero necesito tengo factura cobro pago cuenta tarjeta ayuda buenos buenas días saludos "
    "cancelar problema usted favor".split()
)
_ENGLISH = frozenset(
    "the a an and of to in is my i you your for with not have need want please thanks hello hi "
    "bill account card help problem cancel".split()
)
INTENTS: tuple[tuple[str, frozenset[str]], ...] = (
    ("cancel", frozenset("cancel cancelar close cerrar baja terminate".split())),
    (
        "billing",
        frozenset(
            "bill billing invoice charge charged refund payment fee statement factura cobro "
            "cargo pago reembolso recibo comisión".split()
        ),
    ),
    (
        "support",
        frozenset(
            "error broken login password app crash support help ayuda contraseña acceso "
            "falla fallo".split()
        ),
    ),
    ("sales", frozenset("buy upgrade offer price quote comprar precio oferta contratar".split())),
)


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


#: a BCP 47 tag as the contract takes it: a 2-3 letter language, then subtags
LANGUAGE_TAG = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"
_TAG = re.compile(LANGUAGE_TAG)


def language_tag(text: str) -> str | None:
    """A BCP 47 tag in its conventional case (``ES-mx`` -> ``es-MX``, ``zh-hant-tw`` ->
    ``zh-Hant-TW``), so rules compare one spelling whatever the gateway sent; None for text
    that is no tag."""
    tag = text.strip()
    if not _TAG.fullmatch(tag):
        return None
    first, *rest = tag.split("-")
    out = [first.lower()]
    for part in rest:
        if len(part) == 4 and part.isalpha():
            out.append(part.title())  # script
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            out.append(part.upper())  # region
        else:
            out.append(part.lower())
    return "-".join(out)


def language(text: str) -> str | None:
    tokens = words(text)
    es = sum(t in _SPANISH for t in tokens)
    en = sum(t in _ENGLISH for t in tokens)
    if es == en == 0:
        return None
    return "es" if es > en else "en"


def intent(text: str) -> str | None:
    tokens = set(words(text))
    for name, keys in INTENTS:
        if tokens & keys:
            return name
    return None
