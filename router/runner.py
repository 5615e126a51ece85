"""The HTTP server around the app: aiohttp's runner, with aiohttp's own answers as problems.

aiohttp answers some requests before any handler or middleware sees them: a request line, a
header or a chunked body it cannot parse, lines over its limits, a method that is not a token,
an ``Expect`` other than 100-continue, an exception that escapes the app. Its answer is plain
text that quotes the offending bytes (which may hold a phone number or an email address).
aiohttp has no hook for that answer, so the connection handler is subclassed and the runner
builds servers that use it. Each answer carries an ``X-Request-Id``, as the app's do. A
request in an HTTP version other than 1.0 and 1.1 is read as HTTP/1.1 (aiohttp writes the
request's version on the status line), for ``problem_middleware`` to answer 505. ``serve`` and
the tests (``aiohttp_client``) run the app through ``Runner``, so both answer these requests
the same way.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpVersion10, HttpVersion11, RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, _ErrInfo
from aiohttp.web_request import BaseRequest

from router import logs
from router.problems import UNSERVED_VERSION, from_connection_error

_SERVED = (HttpVersion10, HttpVersion11)


class ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering the errors it handles itself as problems."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        request = self._current_request
        queued = len(self._messages)
        super().data_received(data)
        if request is None or len(self._messages) == queued:
            return
        message = self._messages[-1][0]
        if isinstance(message, _ErrInfo) and not request.content.is_eof():
            # llhttp failed on the body of the request being handled: aiohttp queues a 400 for
            # after it, and its handler would wait for the rest of the body forever. Fail the
            # body instead, as the pure-Python parser does (the middleware answers 400)
            request.content.set_exception(message.exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # the id the app would have given it: the caller's if the request was parsed (an
        # exception escaped the app), a fresh one if not (no header of it was read)
        request_id = logs.request_id(request.headers.get("X-Request-Id", ""))
        # aiohttp's own answer first: it logs the error (bridged and redacted, see
        # router/logs.py, with the id as any line of a request has it) and raises if a
        # response has already begun on this connection
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            super().handle_error(request, status, exc, message)
        response = from_connection_error(status, exc).response()
        response.headers["X-Request-Id"] = request_id
        response.force_close()  # as aiohttp does: what follows on the connection is unreliable
        return response

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            # raised before the middlewares ran: an Expect other than 100-continue
            resp = from_connection_error(resp.status, None).response()
            resp.headers["X-Request-Id"] = logs.request_id(request.headers.get("X-Request-Id", ""))
        return await super().finish_response(request, resp, start_time)


class ProblemServer(web.Server):
    """aiohttp's low-level server, whose connections are ``ProblemRequestHandler``s."""

    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """``web.AppRunner`` serving through ``ProblemServer``."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        make_request = server.request_factory

        def request_factory(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: RequestHandler,
            writer: AbstractStreamWriter,
            task: asyncio.Task[None],
        ) -> BaseRequest:
            if message.version not in _SERVED:
                # llhttp lets "HTTP/2.0" and "HTTP/0.9" through, the Python parser any
                # "HTTP/d.d": read it as HTTP/1.1, so that its 505 (problem_middleware) is
                # written as HTTP/1.1 and not in a version this server does not speak
                message = message._replace(version=UNSERVED_VERSION)
            return make_request(message, payload, protocol, writer, task)

        return ProblemServer(
            server.request_handler,
            request_factory=request_factory,
            handler_cancellation=server.handler_cancellation,
            **server._kwargs,
        )


async def run(
    app: web.Application, host: str, port: int, ready: Callable[[], None], **kwargs: Any
) -> None:
    """Serve ``app`` on ``host:port`` until SIGINT or SIGTERM, then shut it down cleanly.

    What ``web.run_app`` does, through ``Runner``; ``ready`` is called once it listens.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = Runner(app, **kwargs)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        ready()
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
