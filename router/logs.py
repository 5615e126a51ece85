"""Logging: structlog configured once, JSON when not on a terminal, personal data hashed.

Phone numbers, email addresses and tokens never reach a log line in clear text: fields that
hold them are replaced by a keyed hash (the same person hashes the same way, so lines can be
correlated), and any string value is scrubbed of things that look like an email address or a
phone number.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_FIELDS = frozenset({"token", "access_token", "authorization", "password", "secret"})
_PERSONAL_FIELDS = frozenset({"from", "from_", "phone", "email", "number", "to", "address"})
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w.])\+?\d[\d ().-]{6,}\d")


class Redactor:
    """A structlog processor replacing personal data by ``h:<keyed hash>``."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def digest(self, value: str) -> str:
        mac = hmac.new(self.key, value.strip().lower().encode(), hashlib.sha256)
        return "h:" + mac.hexdigest()[:16]

    def scrub(self, text: str) -> str:
        text = _EMAIL.sub(lambda m: self.digest(m.group(0)), text)
        return _PHONE.sub(self._phone, text)

    def _phone(self, match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        # dates and times have at most 8 digits in a row of separators; numbers have more
        return self.digest(digits) if len(digits) >= 9 else match.group(0)

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for name, value in list(event.items()):
            if name in _SECRET_FIELDS:
                event[name] = "[redacted]"
            elif name in _PERSONAL_FIELDS and isinstance(value, str):
                event[name] = self.digest(value)
            elif isinstance(value, str):
                event[name] = self.scrub(value)
        return event


def configure(key: bytes, fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """Configure structlog for the process (the server calls this once at startup)."""
    out = stream or sys.stderr
    json_lines = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            Redactor(key),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
