"""Auth boundaries: roles, agent binding, tenants, websocket tokens, expiry, logs.

``ann`` and ``bob`` are agents of the test's tenant; ``gw2``/``adm2`` belong to another tenant.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator

import aiohttp
import pytest
import structlog

from router import logs
from tests.router.conftest import (
    ADMIN,
    GATEWAY,
    OTHER_ADMIN,
    OTHER_GATEWAY,
    Api,
    ApiFactory,
    bearer,
)


async def two_agents(api: Api) -> tuple[str, str]:
    """ann and bob, both available, with a token each."""
    for name in ("ann", "bob"):
        await api.agent(name, billing=5)
        await api.state(name, "available")
    return await api.token("ann"), await api.token("bob")


async def handshake_status(api: Api, path: str, **headers: str) -> int:
    """The HTTP status of a refused websocket handshake (101 if it was accepted)."""
    try:
        ws = await api.client.ws_connect(path, headers=headers)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 101


async def test_an_agent_cannot_take_anothers_reservation(api: Api) -> None:
    """ann cannot accept or reject bob's reservation, over REST or her socket; bob can."""
    ann, bob = await two_agents(api)
    contact = await api.contact()
    owner = contact["agent_id"]
    rid = contact["reservation_id"]
    intruder = ann if owner == "bob" else bob
    for action in ("accept", "reject"):
        refused = await api.call("POST", f"/v1/reservations/{rid}/{action}", token=intruder)
        assert refused.status == 403
        assert refused.body["type"] == "https://switchboard.dev/problems/not-your-reservation"
    desk = await api.ws("bob" if owner == "ann" else "ann", token=intruder)
    await desk.send({"type": "accept", "reservation_id": rid, "ref": 1})
    assert (await desk.recv("error"))["status"] == 403
    mine = await api.call("POST", f"/v1/reservations/{rid}/accept", token=bob if intruder == ann
                          else ann)  # fmt: skip
    assert mine.status == 200
    completed = await api.call("POST", f"/v1/contacts/{contact['id']}/complete", {}, token=intruder)
    assert completed.status == 403


async def test_an_agent_token_is_bound_to_its_agent(api: Api) -> None:
    """ann's token cannot read, change or open bob, nor manage agents; admin can do all."""
    ann, _ = await two_agents(api)
    assert (await api.call("GET", "/v1/agents/bob", token=ann)).status == 403
    refused = await api.call("POST", "/v1/agents/ann/tokens", token=ann)
    assert refused.body["detail"] == "an agent token cannot do this"
    away = {"state": "away"}
    assert (await api.call("POST", "/v1/agents/bob/state", away, token=ann)).status == 403
    assert (await api.call("PUT", "/v1/agents/ann", {"name": "Ann"}, token=ann)).status == 403
    assert (await api.call("POST", "/v1/agents/ann/tokens", token=ann)).status == 403
    assert (await api.call("POST", "/v1/config/reload", token=ann)).status == 403
    assert await handshake_status(api, "/v1/agents/bob/ws", **bearer(ann)) == 403
    assert await handshake_status(api, "/v1/agents/ann/ws", **bearer(ann)) == 101
    assert await handshake_status(api, "/v1/agents/bob/ws", **bearer(ADMIN)) == 101


async def test_only_the_default_tenant_reloads_the_shared_config(api: Api) -> None:
    """One routing config serves every tenant: another tenant's admin may not reload it."""
    refused = await api.call("POST", "/v1/config/reload", token=OTHER_ADMIN)
    assert refused.status == 403
    assert refused.body["type"].endswith("/forbidden")
    assert "default tenant" in refused.body["detail"]
    assert (await api.call("POST", "/v1/config/reload")).status == 200


async def test_a_gateway_cannot_act_as_an_agent(api: Api) -> None:
    """A gateway token may create contacts but not accept, complete, or open an agent socket."""
    await two_agents(api)
    contact = await api.contact()
    rid = contact["reservation_id"]
    accept = await api.call("POST", f"/v1/reservations/{rid}/accept", token=GATEWAY)
    assert accept.status == 403
    assert accept.body["detail"] == "a gateway token cannot do this"
    done = await api.call("POST", f"/v1/contacts/{contact['id']}/complete", {}, token=GATEWAY)
    assert done.status == 403
    assert (await api.call("GET", "/v1/agents/ann", token=GATEWAY)).status == 403
    assert await handshake_status(api, "/v1/agents/ann/ws", **bearer(GATEWAY)) == 403
    assert (await api.get(f"/v1/contacts/{contact['id']}"))["status"] == "offered"


async def test_tenants_cannot_see_each_other(api: Api) -> None:
    """A contact or agent of one tenant is 404 to another tenant's gateway and admin."""
    await api.agent("ann", billing=5)
    contact = await api.contact()
    ann = await api.token("ann")
    for token in (OTHER_GATEWAY, OTHER_ADMIN):
        missing = await api.call("GET", f"/v1/contacts/{contact['id']}", token=token)
        assert missing.status == 404
        abandon = await api.call("POST", f"/v1/contacts/{contact['id']}/abandon", token=token)
        assert abandon.status == 404
    assert (await api.call("GET", "/v1/agents/ann", token=OTHER_ADMIN)).status == 404
    assert (await api.get("/v1/queues/billing", token=OTHER_GATEWAY))["waiting"] == 0
    assert (await api.get("/v1/queues/billing", token=GATEWAY))["waiting"] == 1
    # the other tenant's admin creating its own "ann" does not make this ann's token work there
    await api.ok("PUT", "/v1/agents/ann", {"name": "Other Ann"}, token=OTHER_ADMIN)
    assert (await api.get("/v1/agents/ann", token=ann))["name"] == "Ann"


async def test_access_token_query_works_only_on_the_websocket(api: Api) -> None:
    """?access_token= opens the agent's and the chat gateway's sockets but is ignored on every
    other URL."""
    await api.agent("ann", billing=5)
    ann = await api.token("ann")
    plain = await api.call("GET", f"/v1/agents/ann?access_token={ann}", token=None)
    assert plain.status == 401
    assert plain.headers["WWW-Authenticate"] == "Bearer"
    assert await handshake_status(api, f"/v1/agents/ann/ws?access_token={ann}") == 101
    assert await handshake_status(api, "/v1/agents/ann/ws?access_token=wrong") == 401
    assert await handshake_status(api, "/v1/agents/ann/ws") == 401
    # the chat gateway's socket too (a browser chat widget cannot set headers either)
    assert await handshake_status(api, f"/v1/channels/chat?access_token={GATEWAY}") == 101
    assert await handshake_status(api, "/v1/channels/chat?access_token=wrong") == 401
    chats = await api.call("GET", f"/v1/queues?access_token={GATEWAY}", token=None)
    assert chats.status == 401


async def test_tampered_agent_tokens_are_refused(api: Api) -> None:
    """A token edited to name another agent, or with a bad signature, is 401."""
    await api.agent("ann", billing=5)
    await api.agent("bob", billing=5)
    ann = await api.token("ann")
    head, tenant, _agent, expires, signature = ann.split(".")
    for forged in (
        f"{head}.{tenant}.bob.{expires}.{signature}",
        f"{head}.{tenant}.ann.{int(expires) + 3600}.{signature}",
        f"{head}.{tenant}.ann.{expires}.{signature[:-2]}AA",
    ):
        reply = await api.call("GET", "/v1/agents/bob", token=forged)
        assert reply.status == 401, forged


async def test_agent_tokens_expire(make_api: ApiFactory) -> None:
    """A token minted with a 2 s lifetime works at first and is 401 once it has expired."""
    # expiry is whole seconds (minted at t, it ends at floor(t) + ttl): ttl 1 may end at once
    api = await make_api(agent_token_ttl_seconds=2)
    await api.agent("ann", billing=5)
    minted = await api.ok("POST", "/v1/agents/ann/tokens")
    assert (await api.call("GET", "/v1/agents/ann", token=minted["token"])).status == 200
    deadline = time.monotonic() + 5
    while (reply := await api.call("GET", "/v1/agents/ann", token=minted["token"])).status == 200:
        assert time.monotonic() < deadline, "the token never expired"
        await asyncio.sleep(0.1)
    assert reply.status == 401
    assert reply.body["detail"] == "token expired"


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """The server's structlog output as JSON lines, restored to the defaults afterwards."""
    stream = io.StringIO()
    logs.configure(b"k" * 32, "json", "debug", stream=stream)
    yield stream
    structlog.reset_defaults()


async def test_tokens_never_reach_the_logs(
    make_api: ApiFactory, tenant: str, captured_logs: io.StringIO
) -> None:
    """Static, minted, bad and query-string tokens appear in no log line."""
    admin = "admin-secret-5b1e0c9d"
    gateway = "gateway-secret-8e2f71aa"
    api = await make_api(admin_token=admin, tokens={gateway: f"gateway:{tenant}"})
    await api.ok("PUT", "/v1/agents/ann", {"name": "Ann", "skills": {"billing": 5}}, token=admin)
    minted = (await api.ok("POST", "/v1/agents/ann/tokens", token=admin))["token"]
    ws = await api.client.ws_connect(f"/v1/agents/ann/ws?access_token={minted}")
    await ws.send_json({"type": "state", "state": "available", "token": minted})
    await ws.receive()
    await ws.close()
    reply = await api.call(
        "POST", "/v1/contacts", {"channel": "voice"}, token=gateway,
        headers={"Idempotency-Key": "k1"},
    )  # fmt: skip
    assert reply.status == 201
    assert (await api.call("GET", "/v1/agents/ann", token="guess-secret-77")).status == 401
    await api.until("/v1/agents/ann", lambda a: a["state"] == "offline", token=admin)
    text = captured_logs.getvalue()
    assert "routing.decision" in text  # the capture works
    for secret in (admin, gateway, minted, minted.rsplit(".", 1)[1], "guess-secret-77"):
        assert secret not in text
