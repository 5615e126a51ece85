"""Operations-test fixtures: the real app on the session redis-server, metrics parsing, tools.

``tool`` finds a system binary (``promtool``, ``prometheus``): missing, the test is skipped
with the reason, except under ``SWITCHBOARD_CI=1`` where a missing binary fails it (CI installs
Debian's ``prometheus`` package, so a broken install step must show).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from config.settings import Settings
from router.app import create_app

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "config" / "prometheus"
DASHBOARD = ROOT / "config" / "grafana" / "switchboard.json"
ADMIN = "ops-admin"
GATEWAY = "ops-gw"

#: billing overrides its service level and times offers out fast; platinum has its own level
OPS_ROUTING = """\
service_levels:
  voice: {threshold_seconds: 20, target: 0.80}
segments:
  - name: platinum
    when: "customer.value >= 10000.0"
    priority: 120
    service_level: {threshold_seconds: 3, target: 0.95}
  - {name: standard, when: "true"}
queues:
  - name: billing
    agents: "agent.skills.billing >= 1"
    offer_timeout_seconds: 0.3
    service_level: {threshold_seconds: 7.5, target: 0.85}
  - name: sales
    agents: "agent.skills.sales >= 1"
    strategy: most_skilled
    skill: sales
rules:
  - {name: sales, when: "contact.intent == 'sales'", steps: [{queue: sales}]}
  - {name: default, when: "true", steps: [{queue: billing}]}
"""

Client = TestClient[web.Request, web.Application]
_keys = count(1)


def tool(name: str) -> str:
    """The path of a system binary; skip without it, or fail under SWITCHBOARD_CI=1."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed (Debian: apt-get install prometheus)"
    if os.environ.get("SWITCHBOARD_CI") == "1":
        pytest.fail(reason + "; SWITCHBOARD_CI=1 requires it")
    pytest.skip(reason)


def promtool_check_metrics(promtool: str, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels`` (None: no such)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


class Ops:
    """One running app, spoken to as the admin (or the gateway for new contacts)."""

    def __init__(self, client: Client, tenant: str) -> None:
        self.client = client
        self.tenant = tenant

    async def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        token = headers.pop("token", ADMIN)
        sent = {"Authorization": f"Bearer {token}", **headers}
        data = None if body is None else json.dumps(body)
        if data is not None:
            sent["Content-Type"] = "application/json"
        async with self.client.request(method, path, data=data, headers=sent) as resp:
            assert resp.status in (200, 201), (method, path, resp.status, await resp.text())
            return await resp.json()

    async def agent(self, agent_id: str, state: str = "available", **skills: int) -> None:
        body = {"name": agent_id, "skills": skills, "capacity": {"voice": 1}}
        await self.call("PUT", f"/v1/agents/{agent_id}", body)
        await self.call("POST", f"/v1/agents/{agent_id}/state", {"state": state})

    async def contact(self, **fields: Any) -> dict[str, Any]:
        body = {"channel": "voice", **fields}
        key = f"ops-{next(_keys)}"
        out: dict[str, Any] = await self.call(
            "POST", "/v1/contacts", body, token=GATEWAY, **{"Idempotency-Key": key}
        )
        return out

    async def metrics(self) -> str:
        async with self.client.get("/metrics") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            return await resp.text()


AppFactory = Callable[..., Awaitable[Ops]]


@pytest.fixture
def routing_file(tmp_path: Path) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(OPS_ROUTING)
    return path


@pytest.fixture
def make_app(aiohttp_client: AiohttpClient, redis_url: str, tenant: str) -> AppFactory:
    """Start apps (create_app + aiohttp_client) on the session Redis, this test's tenant."""

    async def make(**changes: Any) -> Ops:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "default_tenant": tenant,
            "admin_token": ADMIN,
            "tokens": {GATEWAY: f"gateway:{tenant}"},
            "timer_max_sleep_ms": 20,
            "stats_refresh_seconds": 0.2,
        }
        values.update(changes)
        client = await aiohttp_client(create_app(Settings(**values)))
        return Ops(client, tenant)

    return make
