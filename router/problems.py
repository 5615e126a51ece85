"""RFC 9457 problem details: the one shape of every error the API returns.

Handlers raise ``Problem`` (or let a store error propagate); ``problem_middleware`` renders
both, and aiohttp's own HTTP errors (404 route, 405, 413 body too large), as
``application/problem+json``; ``from_connection_error`` does the same for what aiohttp answers
before any middleware runs (a request it cannot parse; see ``router/runner.py``). Nothing else
ever reaches the client: no stack trace, no HTML, no echo of the bytes that were sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http import HttpVersion
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    ContentEncodingError,
    DecompressSizeError,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)
from aiohttp.web_protocol import RequestPayloadError
from pydantic import ValidationError

from channels.identity import IdentityError
from queues import errors

CONTENT_TYPE = "application/problem+json"
_log = structlog.get_logger("switchboard.http")

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    417: "Expectation Failed",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


class Problem(Exception):
    """An error response: status, a short title, a human detail and optional field errors."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        kind: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title or _TITLES.get(status, "Error")
        self.detail = detail
        self.kind = kind or self.title.lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers or {}

    @property
    def type_uri(self) -> str:
        """The problem's RFC 9457 ``type``."""
        return f"https://switchboard.dev/problems/{self.kind}"

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            out["errors"] = self.errors
        return out

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            text=json.dumps(self.body()),
            content_type=CONTENT_TYPE,
            headers=self.headers,
        )


def from_validation(exc: ValidationError, prefix: tuple[str, ...] = ("body",)) -> Problem:
    """422 listing each field problem as {loc, msg}."""
    problems = [
        {"loc": [*prefix, *(str(p) for p in err["loc"])], "msg": err["msg"]} for err in exc.errors()
    ]
    return Problem(422, "the request failed validation", kind="validation", errors=problems)


def from_store(exc: errors.SwitchboardError, retry_after: int = 1) -> Problem:
    """Map the store's exception hierarchy onto HTTP statuses."""
    if isinstance(exc, errors.StoreFull):
        return Problem(
            503,
            "the store is out of memory (Redis maxmemory); nothing was recorded, retry later",
            kind="store-full",
            headers={"Retry-After": str(retry_after)},
        )
    if isinstance(exc, errors.StoreUnavailable):
        detail = (
            "the store did not answer in time; the request may have been applied: read the "
            "state back before acting again (a contact retried with its Idempotency-Key is "
            "never created twice)"
            if exc.sent
            else "the store is unreachable; nothing was recorded, retry later"
        )
        return Problem(
            503, detail, kind="store-unavailable", headers={"Retry-After": str(retry_after)}
        )
    kind = re.sub(r"(?<!^)(?=[A-Z])", "-", type(exc).__name__).lower()
    detail = str(exc)
    if isinstance(exc, errors.NotFound):
        return Problem(404, detail, kind=kind)
    if isinstance(exc, errors.Forbidden):
        return Problem(403, detail, kind=kind)
    if isinstance(exc, errors.Conflict):
        return Problem(409, detail, kind=kind)
    return Problem(500, "internal error", kind="internal")


#: what was wrong with a request aiohttp could not parse, most specific first; its own message
#: quotes the bytes, which may hold personal data, so it is never sent back
_UNPARSABLE: list[tuple[type[HttpProcessingError], str]] = [
    (LineTooLong, "the request line or a header is longer than the server accepts"),
    (BadHttpMethod, "the request does not start with a valid HTTP method"),
    (BadStatusLine, "the request line is malformed"),
    (InvalidURLError, "the request target is not a valid URL"),
    (InvalidHeader, "a header is malformed"),
    (ContentEncodingError, "the body's Content-Encoding is not supported or does not decode"),
    (DecompressSizeError, "the body decompresses to more than the server accepts"),
    (PayloadEncodingError, "the body's framing (Content-Length or chunked encoding) is malformed"),
]


def _unparsable(exc: HttpProcessingError) -> str:
    return next(
        (text for kind, text in _UNPARSABLE if isinstance(exc, kind)),
        "the request is not well-formed HTTP/1.1",
    )


def from_connection_error(status: int, exc: BaseException | None) -> Problem:
    """The problem for an error aiohttp's connection handler answers itself: a request it
    could not parse (400 ``malformed-request``), else ``status`` with no detail of the cause
    (a 500 is ``internal``)."""
    if isinstance(exc, HttpProcessingError):
        return Problem(400, _unparsable(exc), kind="malformed-request")
    if status == 500:
        return Problem(500, "internal error", kind="internal")
    if status == 417:
        # aiohttp refuses an Expect other than 100-continue before any middleware runs
        return Problem(417, "the only expectation served is Expect: 100-continue")
    return Problem(status, _TITLES.get(status, "error").lower())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: the version ``router.runner`` gives a request in an HTTP version other than 1.0 and 1.1, so
#: that its 505 is written as HTTP/1.1 (aiohttp writes the request's version on the status
#: line): equal to aiohttp's HTTP/1.1 but a distinct object, so one identity test finds it
UNSERVED_VERSION = HttpVersion(1, 1)


def problem_middleware(retry_after: int) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.version is UNSERVED_VERSION:
            # llhttp lets "HTTP/2.0" and "HTTP/0.9" request lines through, the Python parser
            # any "HTTP/d.d" (see router/runner.py)
            response = Problem(505, "only HTTP/1.0 and HTTP/1.1 are served").response()
            response.force_close()
            return response
        try:
            return await handler(request)
        except Problem as exc:
            return exc.response()
        except errors.SwitchboardError as exc:
            return from_store(exc, retry_after).response()
        except IdentityError as exc:
            problem = Problem(422, f"the sender cannot be read: {exc}", kind="validation")
            problem.errors = [{"loc": ["body", "from"], "msg": str(exc)}]
            return problem.response()
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            status = 413 if isinstance(exc, web.HTTPRequestEntityTooLarge) else exc.status
            detail = exc.text or exc.reason
            if status == 413:
                detail = "the request body is larger than this endpoint accepts"
            if status == 404:
                # never the path: a mistyped URL may hold a phone number or an email address,
                # and a problem may be logged or pass through proxies
                detail = "no route matches this path"
            return Problem(status, detail or exc.reason, headers=_allow(exc)).response()
        except (HttpProcessingError, RequestPayloadError) as exc:
            # met while reading the body, one whose Content-Encoding does not decode say
            cause = exc if isinstance(exc, HttpProcessingError) else exc.__cause__
            if isinstance(cause, ContentEncodingError):
                detail = cause.message.strip()  # names the encoding
            elif isinstance(cause, HttpProcessingError):
                detail = _unparsable(cause)  # its message may quote the body
            else:
                detail = "the request body cannot be read"
            # the rest of the body is unreadable: mark it read, or aiohttp tries to drain it
            # after the response, fails again and drops the connection before the client
            # reads the answer; the connection then closes
            request.content.feed_eof()
            response = Problem(400, detail, kind="malformed-body").response()
            response.force_close()
            return response
        except Exception:
            _log.exception("http.unhandled", path=request.path, method=request.method)
            return Problem(500, "internal error", kind="internal").response()

    return middleware


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}
