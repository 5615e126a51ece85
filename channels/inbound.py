"""What every channel adapter produces: the fields of a new Contact plus its native identity.

Adapters are pure functions of the native payload; they never touch Redis or HTTP. The router
validates ``contact`` as a ``ContactIn`` and sends it down the same path as
``POST /v1/contacts``, idempotent by ``(scope, native_id)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


class AdapterError(ValueError):
    """A native payload that cannot become a contact (rendered as a 4xx problem)."""

    def __init__(self, message: str, loc: tuple[str, ...] = (), status: int = 422) -> None:
        super().__init__(message)
        self.loc = loc
        self.status = status


#: what each scope's native id is called in its gateway's payload (for a replay conflict)
NATIVE_ID = {"voice": "call_id", "sms": "message_id", "email": "Message-ID", "chat": "session_id"}


@dataclass(slots=True)
class Inbound:
    contact: dict[str, Any]
    scope: str
    native_id: str
    payload_hash: str
    message_id: str | None = None
    references: list[str] = field(default_factory=list)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def text_field(
    payload: dict[str, Any],
    name: str,
    required: bool,
    limit: int,
    empty: bool = False,
    at: tuple[str, ...] = ("body",),
) -> str | None:
    """A string field of a webhook (in the object at ``at``); '' counts as missing unless
    ``empty``."""
    value = payload.get(name)
    if value is None or (value == "" and not empty):
        if required:
            raise AdapterError(f"`{name}` is required", (*at, name))
        return None
    if not isinstance(value, str):
        raise AdapterError(f"`{name}` must be a string", (*at, name))
    if len(value) > limit:
        raise AdapterError(f"`{name}` is longer than {limit} characters", (*at, name))
    return value
