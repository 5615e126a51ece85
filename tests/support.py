"""Small helpers several test modules share."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner

from router import logs
from router.runner import Runner


def count_calls(obj: Any, name: str) -> list[int]:
    """Wrap the coroutine method ``obj.name`` so that ``[n]`` counts its calls from now on."""
    calls = [0]
    original = getattr(obj, name)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await original(*args, **kwargs)

    setattr(obj, name, counted)
    return calls


@contextmanager
def json_logs(key: bytes, level: str = "info") -> Iterator[io.StringIO]:
    """The server's structlog pipeline writing JSON lines into a buffer, reset afterwards."""
    stream = io.StringIO()
    logs.configure(key, "json", level, stream=stream)
    try:
        yield stream
    finally:
        logs.reset()
        structlog.contextvars.clear_contextvars()


class AppServer(TestServer):
    """pytest-aiohttp's test server running the app through ``Runner``, as ``serve`` does (so
    requests aiohttp cannot parse are answered as problems in tests too)."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return Runner(self.app, **kwargs)
