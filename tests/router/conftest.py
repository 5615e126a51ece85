"""Server-test fixtures: settings, the real app on the session redis-server, and small helpers.

Every app is built by ``create_app`` and served by pytest-aiohttp's ``aiohttp_client``. Each
test gets its own tenant (the ``tenant`` fixture) as the default tenant of its settings, so
tests share one redis-server without seeing each other. Tokens: ``adm`` is the admin and
``gw`` a gateway of that tenant; ``gw2`` and ``adm2`` belong to a second tenant.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from config.settings import Settings
from router.app import create_app

ADMIN = "adm"
GATEWAY = "gw"
OTHER_GATEWAY = "gw2"
OTHER_ADMIN = "adm2"
SWITCHBOARD = Path(sys.executable).parent / "switchboard"

#: a routing config whose offers time out after 0.3 s and whose wrap-up lasts 0.3 s
FAST_ROUTING = """\
queues:
  - name: billing
    agents: "agent.skills.billing >= 1"
    offer_timeout_seconds: 0.3
    wrap_up_seconds: 0.3
rules:
  - {name: default, when: "true", steps: [{queue: billing}]}
"""

Client = TestClient[web.Request, web.Application]
_keys = count(1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class SettingsFactory(Protocol):
    def __call__(self, **changes: Any) -> Settings: ...


class ApiFactory(Protocol):
    def __call__(self, **changes: Any) -> Awaitable[Api]: ...


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class Api:
    """One running app, spoken to as the admin unless a call names another token."""

    def __init__(self, client: Client, tenant: str) -> None:
        self.client = client
        self.tenant = tenant
        self.desks: list[Desk] = []

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = ADMIN,
        headers: dict[str, str] | None = None,
        data: bytes | str | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent.update(bearer(token))
        if body is not None:
            data = json.dumps(body)
            sent.setdefault("Content-Type", "application/json")
        raw = data.encode() if isinstance(data, str) else data
        # aiohttp warns about large raw bodies; a stream is sent chunked instead
        payload = io.BytesIO(raw) if raw and len(raw) > 65536 else raw
        async with self.client.request(method, path, data=payload, headers=sent) as resp:
            text = await resp.text()
            parsed = json.loads(text) if text and "json" in resp.content_type else text
            return Reply(resp.status, parsed, dict(resp.headers))

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """The body of a call that must answer 200 or 201."""
        reply = await self.call(method, path, body, **kw)
        assert reply.status in (200, 201), (reply.status, reply.body)
        return reply.body

    async def agent(
        self, agent_id: str, capacity: dict[str, int] | None = None, **skills: int
    ) -> dict[str, Any]:
        body = {"name": agent_id.title(), "skills": skills, "capacity": capacity or {"voice": 1}}
        out: dict[str, Any] = await self.ok("PUT", f"/v1/agents/{agent_id}", body)
        return out

    async def token(self, agent_id: str) -> str:
        out = await self.ok("POST", f"/v1/agents/{agent_id}/tokens")
        return str(out["token"])

    async def state(self, agent_id: str, state: str, token: str = ADMIN) -> dict[str, Any]:
        out: dict[str, Any] = await self.ok(
            "POST", f"/v1/agents/{agent_id}/state", {"state": state}, token=token
        )
        return out

    async def contact(self, key: str | None = None, **fields: Any) -> dict[str, Any]:
        """POST /v1/contacts as the gateway (a voice call unless told otherwise); must be 201."""
        body = {"channel": "voice", **fields}
        reply = await self.call(
            "POST",
            "/v1/contacts",
            body,
            token=GATEWAY,
            headers={"Idempotency-Key": key or f"k{next(_keys)}"},
        )
        assert reply.status == 201, (reply.status, reply.body)
        out: dict[str, Any] = reply.body
        return out

    async def get(self, path: str, token: str | None = ADMIN) -> dict[str, Any]:
        reply = await self.call("GET", path, token=token)
        assert reply.status == 200, (reply.status, reply.body)
        out: dict[str, Any] = reply.body
        return out

    async def ws(self, agent_id: str, token: str | None = None) -> Desk:
        """The agent's websocket (with a freshly minted token of its own unless given one)."""
        token = token or await self.token(agent_id)
        ws = await self.client.ws_connect(f"/v1/agents/{agent_id}/ws", headers=bearer(token))
        self.desks.append(Desk(ws))
        return self.desks[-1]

    async def until(
        self,
        path: str,
        check: Callable[[dict[str, Any]], bool],
        within: float = 5.0,
        token: str | None = ADMIN,
    ) -> dict[str, Any]:
        """GET ``path`` until it answers 200 and ``check`` holds (for what changes later)."""
        deadline = time.monotonic() + within
        while True:
            reply = await self.call("GET", path, token=token)
            if reply.status == 200 and check(reply.body):
                out: dict[str, Any] = reply.body
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} never satisfied the check: {reply}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for desk in self.desks:
            await desk.close()


class Desk:
    """An agent desktop on the websocket: a reader task answers pings and queues messages."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())
        #: messages read while waiting for another type, for a later ``recv`` of theirs (an
        #: offer may come before the reply to the state change that caused it)
        self.unread: list[dict[str, Any]] = []

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                await self.inbox.put(json.loads(msg.data))
        await self.inbox.put(None)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_json(message)

    async def recv(self, kind: str, within: float = 5.0) -> dict[str, Any]:
        """The next message of type ``kind`` (others are kept for later); fails on close or
        timeout."""
        for i, kept in enumerate(self.unread):
            if kept.get("type") == kind:
                return self.unread.pop(i)
        deadline = time.monotonic() + within
        while True:
            try:
                data = await asyncio.wait_for(self.inbox.get(), deadline - time.monotonic())
            except TimeoutError:
                raise AssertionError(f"no {kind!r} message within {within} s") from None
            if data is None:
                self.inbox.put_nowait(None)
                raise AssertionError(f"socket closed ({self.ws.close_code}) before {kind!r}")
            if data.get("type") == kind:
                return data
            self.unread.append(data)

    async def silent(self, kind: str, seconds: float) -> None:
        """Assert no message of type ``kind`` arrives within ``seconds``."""
        try:
            data = await self.recv(kind, seconds)
        except AssertionError:
            return
        raise AssertionError(f"unexpected {kind}: {data}")

    async def closed(self, within: float = 5.0) -> int | None:
        """Wait until the server closes the socket; returns the close code."""
        await asyncio.wait_for(self.reader, within)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


@pytest.fixture
def fast_routing(tmp_path: Path) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(FAST_ROUTING)
    return path


@pytest.fixture
def make_settings(redis_url: str, tenant: str) -> SettingsFactory:
    """Settings for an app on the session redis-server, this test's tenant as the default."""

    def make(**changes: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "default_tenant": tenant,
            "admin_token": ADMIN,
            "tokens": {
                GATEWAY: f"gateway:{tenant}",
                OTHER_GATEWAY: f"gateway:{tenant}-x",
                OTHER_ADMIN: f"admin:{tenant}-x",
            },
            "heartbeat_interval_seconds": 0.2,
            "heartbeat_timeout_seconds": 0.6,
            "timer_max_sleep_ms": 20,
        }
        values.update(changes)
        return Settings(**values)

    return make


@pytest.fixture
async def make_api(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory, tenant: str
) -> AsyncIterator[ApiFactory]:
    """Start an app with the given settings changes; its sockets are closed after the test."""
    made: list[Api] = []

    async def make(**changes: Any) -> Api:
        client = await aiohttp_client(create_app(make_settings(**changes)))
        made.append(Api(client, tenant))
        return made[-1]

    yield make
    for api in made:
        await api.close()


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    """The app on the demo routing config."""
    return await make_api()


# ------------------------------------------------------------------ `switchboard serve` child


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http(
    method: str, url: str, body: Any = None, token: str | None = None, **headers: str
) -> tuple[int, Any]:
    """A blocking JSON call (for tests that drive a subprocess)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@dataclass
class Served:
    """A running ``switchboard serve`` child and what it printed."""

    process: subprocess.Popen[str]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def serve(
    tmp_path: Path, env: dict[str, str], *args: str, name: str = "serve", timeout: float = 20.0
) -> Served:
    """Start ``switchboard serve`` on a free port and wait until /readyz answers 200."""
    port = free_port()
    log = tmp_path / f"{name}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    full_env.update({"SWITCHBOARD_LOG_FORMAT": "json", **env})
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(SWITCHBOARD), "serve", "--port", str(port), *args],
            env=full_env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    served = Served(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}: {served.output()}")
        try:
            if http("GET", served.url + "/readyz")[0] == 200:
                return served
        except OSError:
            pass
        if time.monotonic() > deadline:
            served.stop()
            raise AssertionError(f"serve never became ready: {served.output()}")
        time.sleep(0.05)


def shared_redis_env(redis_url: str, tenant: str, **more: str) -> dict[str, str]:
    """The environment of a ``serve`` child on a shared Redis: ``tenant`` the default tenant,
    with the admin and gateway tokens; ``more``: further variables."""
    return {
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DEFAULT_TENANT": tenant,
        "SWITCHBOARD_ADMIN_TOKEN": ADMIN,
        "SWITCHBOARD_TOKENS": json.dumps({GATEWAY: f"gateway:{tenant}"}),
        **more,
    }


@pytest.fixture
def serve_child(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start ``switchboard serve`` children; any still running is stopped after the test."""
    started: list[Served] = []

    def start(env: dict[str, str], *args: str, name: str = "serve") -> Served:
        started.append(serve(tmp_path, env, *args, name=name))
        return started[-1]

    yield start
    for served in started:
        try:
            served.stop(timeout=15.0)  # SIGTERM: serve stops its embedded redis-server too
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait()
