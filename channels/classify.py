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
