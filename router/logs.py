"""Logging: structlog configured once, JSON when not on a terminal, personal data hashed.

Phone numbers, email addresses and tokens never reach a log line in clear text: fields that
hold them are replaced by a keyed hash (the same person hashes the same way, so lines can be
correlated), and any string value is scrubbed of things that look like an email address or a
phone number.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError

_SECRET_FIELDS = frozenset({"token", "access_token", "authorization", "password", "secret"})
_SECRET_PARTS = ("token", "password", "secret", "authorization", "api_key", "cookie")
_PERSONAL_FIELDS = frozenset({"from", "from_", "phone", "email", "number", "to", "address"})
_PERSONAL_PARTS = ("phone", "email", "msisdn")
#: a local part of RFC 5322's characters but "/", "=" and "?" (which join it to the URL or the
#: key=value before it), or a quoted one; a domain, dotted or not ("localhost")
_EMAIL = re.compile(r"(?:\"[^\"\n]{1,64}\"|[\w.!#$%&'*+^`{|}~-]+)@[\w-]+(\.[\w-]+)*")
#: separators between a number's digits: spaces (also no-break), dots, dashes (also
#: typographic), brackets and slashes ("030/12345678")
_SEP = " \u00a0().\u2010-\u2015/-"
_PHONE = re.compile(rf"(?<![\w.])\+?\d[\d{_SEP}]{{6,}}\d")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?!\d)")
_PHONE_ONLY = re.compile(rf"\+?[\d{_SEP}]+")
#: a bearer credential, or a token passed in a query string (``?access_token=...``)
_CREDENTIAL = re.compile(
    r"(?i)(\bbearer\s+|\b(?:access_token|token|api_key|password)=)[^\s&\"',;]+"
)
#: what a credential (``_CREDENTIAL``) or a phone number (``_PHONE``) cannot do without
_CREDENTIAL_HINT = re.compile(r"(?i)bearer|=")
_DIGIT_RUN = re.compile(rf"\d[\d{_SEP}]{{6}}")
_MAX_DEPTH = 8


#: field name -> how its value is treated; names repeat, so each is classified once
_KIND: dict[str, int] = {}
_PLAIN, _SECRET, _PERSONAL = 0, 1, 2
_MEMO_SIZE = 8192  # scrubbed texts remembered per redactor (ids, queue names, reasons repeat)
_MEMO_MAX_LEN = 512


def _is_secret(name: str) -> bool:
    low = name.lower()
    return low in _SECRET_FIELDS or any(part in low for part in _SECRET_PARTS)


def _is_personal(name: str) -> bool:
    low = name.lower()
    return low in _PERSONAL_FIELDS or any(part in low for part in _PERSONAL_PARTS)


def _kind(name: str) -> int:
    kind = _KIND.get(name)
    if kind is None:
        kind = _SECRET if _is_secret(name) else _PERSONAL if _is_personal(name) else _PLAIN
        if len(_KIND) < _MEMO_SIZE:
            _KIND[name] = kind
    return kind


class Redactor:
    """A structlog processor replacing personal data by ``h:<keyed hash>``.

    Field names decide first (secrets become ``[redacted]``, personal fields a keyed hash of
    each string they hold); every other string, at any depth of dicts and lists, is scrubbed
    of bearer tokens, email addresses and phone numbers.
    """

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._scrubbed: dict[str, str] = {}

    def digest(self, value: str) -> str:
        mac = hmac.new(self.key, value.strip().lower().encode(), hashlib.sha256)
        return "h:" + mac.hexdigest()[:16]

    def personal(self, value: str) -> str:
        """The hash of a personal field: a phone number by its digits, as in free text."""
        if _PHONE_ONLY.fullmatch(value.strip()):
            digits = re.sub(r"\D", "", value)
            if len(digits) >= 9:
                return self.digest(digits)
        return self.digest(value)

    def scrub(self, text: str) -> str:
        """``text`` without credentials, email addresses or phone numbers (memoised)."""
        memo = self._scrubbed
        done = memo.get(text)
        if done is not None:
            return done
        done = self._scrub(text)
        if len(text) <= _MEMO_MAX_LEN:
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[text] = done
        return done

    def _scrub(self, text: str) -> str:
        # (each pattern only where what it needs is there: a full pass of the email pattern
        # costs about 6 µs on a line of text, a test for "@" well under one)
        if _CREDENTIAL_HINT.search(text):
            text = _CREDENTIAL.sub(lambda m: m.group(1) + "[redacted]", text)
        if "@" in text:
            text = _EMAIL.sub(lambda m: self.digest(m.group(0)), text)
        if _DIGIT_RUN.search(text):
            text = _PHONE.sub(self._phone, text)
        return text

    def _phone(self, match: re.Match[str]) -> str:
        text = match.group(0)
        # a date, or a date and time ("2024-10-15 12:30"), is not a phone number, but what
        # follows the date may be one ("2024-05-11 415 555 0123")
        date = _DATE.match(text)
        if date:
            return text[: date.end()] + _PHONE.sub(self._phone, text[date.end() :])
        digits = re.sub(r"\D", "", text)
        # numbers have at least 9 digits; shorter runs are counts, times or ids
        return self.digest(digits) if len(digits) >= 9 else text

    def _value(self, name: str, value: Any, depth: int) -> Any:
        kind = _kind(name)
        if kind == _PLAIN:
            return self._clean(value, depth)
        if kind == _SECRET:
            return "[redacted]" if value not in (None, "") else value
        return self._hash_all(value, depth)

    def _hash_all(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.personal(value)
        if isinstance(value, list | tuple) and depth < _MAX_DEPTH:
            return [self._hash_all(v, depth + 1) for v in value]
        return self._clean(value, depth)

    def _clean(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if value is None or isinstance(value, int | float):
            return value
        if depth >= _MAX_DEPTH:
            return value
        if isinstance(value, dict):
            return {k: self._value(str(k), v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v, depth + 1) for v in value]
        return value

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for name, value in list(event.items()):
            event[name] = self._value(name, value, 0)
        return event


def _dumps(value: Any, **kw: Any) -> str:
    """JSON with orjson (several times faster than ``json``); ``json`` for what it refuses."""
    try:
        return orjson.dumps(value, default=kw.get("default"), option=_ORJSON).decode()
    except TypeError:
        return json.dumps(value, **kw)


_ORJSON = orjson.OPT_NON_STR_KEYS


@dataclass(slots=True)
class _Direct:
    """What ``configure`` set up, for ``info``'s direct path (JSON lines only)."""

    processors: list[Any]
    redactor: Redactor
    stream: Any
    level: int


_DIRECT: _Direct | None = None


#: a request id a caller may choose: a UUID, a trace id, a hex or base64url string
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=-]{0,63}")


def request_id(given: str) -> str:
    """The id of a request whose ``X-Request-Id`` header is ``given`` ("" when absent): the
    caller's own if it looks like one (it goes into every log line), else a fresh one."""
    return given if _REQUEST_ID.fullmatch(given) else secrets.token_hex(8)


class _Bridge(logging.Handler):
    """Other libraries' stdlib log records (aiohttp's errors on requests it could not parse,
    asyncio's) as lines of the same log, through the same redaction: aiohttp's own message
    for a bad header quotes the header, token or email address and all."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = structlog.get_logger(record.name)
            exc = record.exc_info[1] if record.exc_info else None
            if isinstance(exc, HttpProcessingError):
                # a client's malformed request (aiohttp answered it 400): one line, no traceback
                logger.warning("http.unparsable", logger=record.name, error=str(exc))
                return
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            logger.log(record.levelno, record.getMessage(), **fields)
        except Exception:  # pragma: no cover - logging must not raise
            self.handleError(record)


def configure(key: bytes, fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """Configure structlog for the process (the server calls this once at startup), and send
    the stdlib loggers' records through it."""
    global _DIRECT
    out = stream or sys.stderr
    json_lines = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json_lines
        else structlog.dev.ConsoleRenderer()
    )
    redactor = Redactor(key)
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.format_exc_info,
        redactor,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        renderer,
    ]
    level_no = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    _DIRECT = _Direct(processors, redactor, out, level_no) if json_lines else None
    _unbridge()
    root = logging.getLogger()
    root.addHandler(_Bridge())
    root.setLevel(level_no)


def _unbridge() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Bridge)]:
        root.removeHandler(handler)


def reset() -> None:
    """Undo ``configure`` (tests): structlog's defaults, stdlib records no longer bridged."""
    global _DIRECT
    structlog.reset_defaults()
    _DIRECT = None
    _unbridge()


def info(logger: Any, event: str, fields: dict[str, Any], plain: frozenset[str]) -> None:
    """``logger.info(event, **fields)``, cheaper for a line written on every contact.

    With the JSON lines ``configure`` sets up (and structlog not reconfigured since), the
    line is built here: the same keys, context and redaction, except that the fields named in
    ``plain`` (ids the server makes, numbers, names from the routing config: never personal
    data) are not scrubbed. Otherwise it is simply ``logger.info``. ``fields`` is consumed.
    """
    direct = _DIRECT
    if direct is None or structlog.get_config()["processors"] is not direct.processors:
        logger.info(event, **fields)
        return
    if direct.level > logging.INFO:
        return
    redactor = direct.redactor
    for name, value in fields.items():
        if name not in plain:
            fields[name] = redactor._value(name, value, 0)
    fields["event"] = event
    for name, value in structlog.contextvars.get_contextvars().items():
        if name not in fields:
            fields[name] = redactor._value(name, value, 0)
    fields["level"] = "info"
    fields["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    direct.stream.write(_dumps(fields) + "\n")
    direct.stream.flush()
