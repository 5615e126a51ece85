"""Agents, queues and operations endpoints through the real app and redis-server."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.router.conftest import ADMIN, FAST_ROUTING, GATEWAY, Api, ApiFactory, Desk


async def test_put_agent_creates_then_updates(api: Api) -> None:
    """PUT answers 201 then 200; a new agent is offline with queues derived from its skills."""
    body = {"name": "Bea", "skills": {"billing": 2, "spanish": 6}, "capacity": {"voice": 1}}
    made = await api.call("PUT", "/v1/agents/bea", body)
    assert made.status == 201
    assert made.body == {
        "id": "bea",
        "name": "Bea",
        "skills": {"billing": 2, "spanish": 6},
        "capacity": {"voice": 1},
        "state": "offline",
        "load": {},
        "queues": ["billing", "billing-es"],
        "reservations": [],
        "contacts": [],
        "attributes": None,
    }
    body["skills"] = {"support": 4}
    updated = await api.call("PUT", "/v1/agents/bea", body)
    assert updated.status == 200
    assert updated.body["queues"] == ["support"]
    assert (await api.get("/v1/agents/bea"))["skills"] == {"support": 4}


async def test_agent_token_acts_for_its_agent(api: Api) -> None:
    """A minted token expires after the configured TTL and reads and changes its own agent."""
    await api.agent("ann", billing=5)
    minted = await api.call("POST", "/v1/agents/ann/tokens")
    assert minted.status == 201
    expires = datetime.fromisoformat(minted.body["expires_at"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - (time.time() + 12 * 3600)) < 5
    token = minted.body["token"]
    assert (await api.get("/v1/agents/ann", token=token))["state"] == "offline"
    changed = await api.state("ann", "available", token=token)
    assert (changed["id"], changed["state"]) == ("ann", "available")


async def test_state_changes_are_pushed_to_the_socket(api: Api) -> None:
    """Each state change made over REST reaches the agent's socket as a `state` message."""
    await api.agent("ann", billing=5)
    desk = await api.ws("ann")
    assert await desk.recv("state") == {
        "type": "state",
        "state": "offline",
        "load": {},
        "contacts": [],
    }
    for state in ("available", "away", "offline"):
        await api.state("ann", state)
        assert (await desk.recv("state"))["state"] == state


async def test_offers_never_exceed_free_capacity(api: Api) -> None:
    """An agent with chat capacity 2 is offered two chats; the third waits in line."""
    await api.agent("ann", capacity={"chat": 2}, billing=5)
    desk = await api.ws("ann")
    await api.state("ann", "available")
    chats = [await api.contact(channel="chat") for _ in range(3)]
    assert [c["status"] for c in chats] == ["offered", "offered", "queued"]
    assert {(await desk.recv("offer"))["contact"]["id"] for _ in range(2)} == {
        chats[0]["id"],
        chats[1]["id"],
    }
    agent = await api.get("/v1/agents/ann")
    assert agent["load"] == {"chat": 2}
    assert len(agent["reservations"]) == 2
    assert chats[2]["position"] == 1


async def test_a_voice_offer_blocks_other_channels(api: Api) -> None:
    """Voice is exclusive in the demo: while on a call an agent gets no chat offers."""
    await api.agent("ann", capacity={"voice": 1, "chat": 3}, billing=5)
    await api.state("ann", "available")
    call = await api.contact(channel="voice")
    chat = await api.contact(channel="chat")
    assert (call["status"], chat["status"]) == ("offered", "queued")


async def test_reconnect_gets_the_pending_offers_again(api: Api) -> None:
    """An agent that reconnects gets its state and every pending offer on the new socket."""
    await api.agent("ann", billing=5)
    await api.state("ann", "available")  # a REST-driven desktop: offered without a socket
    contact = await api.contact()
    assert contact["agent_id"] == "ann"
    desk = await api.ws("ann")
    assert (await desk.recv("state"))["state"] == "available"
    offer = await desk.recv("offer")
    assert offer["reservation_id"] == contact["reservation_id"]
    assert offer["contact"]["id"] == contact["id"]


async def test_queues_report_depth_staffing_and_wait(api: Api) -> None:
    """GET /v1/queues lists every demo queue; one queue reports waiting and staffing."""
    listed = await api.get("/v1/queues", token=GATEWAY)
    assert [q["name"] for q in listed["queues"]] == [
        "billing",
        "billing-es",
        "support",
        "support-es",
        "sales",
        "retention",
    ]
    await api.contact()
    await api.contact()
    await api.agent("ann", billing=5)
    await api.state("ann", "away")
    billing = await api.get("/v1/queues/billing")
    assert billing["name"] == "billing"
    assert billing["waiting"] == 2
    assert billing["agents_staffed"] == 1
    assert billing["agents_available"] == 0
    assert billing["service_level"] is None
    assert billing["estimated_wait_seconds"] == 540.0  # third in line x 180 s / 1 agent
    assert billing["oldest_wait_seconds"] >= 0
    missing = await api.call("GET", "/v1/queues/nope")
    assert missing.status == 404


async def test_queue_wait_is_zero_only_with_free_capacity(api: Api) -> None:
    """A queue's estimated wait is 0.0 while an agent has free capacity; an available agent
    busy to its capacity is no free agent (the estimate said 0.0 there)."""
    await api.agent("ann", billing=5)
    await api.state("ann", "available")
    assert (await api.get("/v1/queues/billing"))["estimated_wait_seconds"] == 0.0
    await api.contact()  # ann takes it: voice capacity 1
    billing = await api.get("/v1/queues/billing")
    assert (billing["agents_available"], billing["waiting"]) == (1, 0)
    assert billing["estimated_wait_seconds"] == 180.0  # first in line x 180 s / 1 agent


async def test_a_queue_of_chat_agents_estimates_by_their_capacity(api: Api) -> None:
    """A queue's estimated wait divides by the contacts its agents can hold at once: two chat
    agents of capacity 3 serve six chats side by side, not two."""
    for name in ("ann", "bob"):
        await api.agent(name, capacity={"chat": 3}, billing=5)
        await api.state(name, "away")
    for _ in range(5):
        await api.contact(channel="chat", intent="billing", language="en")
    billing = await api.get("/v1/queues/billing")
    assert (billing["waiting"], billing["agents_staffed"]) == (5, 2)
    assert billing["estimated_wait_seconds"] == 180.0  # sixth in line x 180 s / 6 places


async def test_config_reload_applies_or_lists_every_error(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """Reload recomputes memberships from the edited file; an invalid file is 422, unapplied."""
    path = tmp_path / "routing.yaml"
    path.write_text(FAST_ROUTING)
    api = await make_api(config=str(path))
    assert (await api.agent("ann", billing=5, support=5))["queues"] == ["billing"]

    path.write_text(
        FAST_ROUTING.replace(
            "rules:", '  - {name: support, agents: "agent.skills.support >= 1"}\nrules:'
        )
    )
    applied = await api.call("POST", "/v1/config/reload")
    assert applied.status == 200
    assert applied.body == {
        "status": "applied",
        "queues": 2,
        "rules": 1,
        "agents_recomputed": 1,
        "instances_notified": 0,
        "stranded": {},
    }
    assert (await api.get("/v1/agents/ann"))["queues"] == ["billing", "support"]

    path.write_text("queues: []\nrules: [{name: x, steps: [{queue: nowhere}]}]\n")
    refused = await api.call("POST", "/v1/config/reload")
    assert refused.status == 422
    assert refused.body["title"] == "Unprocessable Content"
    assert refused.body["errors"]
    assert all(set(e) == {"loc", "msg"} for e in refused.body["errors"])
    assert (await api.get("/v1/agents/ann"))["queues"] == ["billing", "support"]


SUPPORT_QUEUE = '  - {name: support, agents: "agent.skills.support >= 1"}\nrules:'
SALES_QUEUE = '  - {name: sales, agents: "agent.skills.sales >= 1"}\nrules:'


async def queue_names(api: Api) -> list[str]:
    return sorted(q["name"] for q in (await api.get("/v1/queues"))["queues"])


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


async def test_config_reload_reaches_every_instance(make_api: ApiFactory, tmp_path: Path) -> None:
    """A reload on A makes B reload its own file; an invalid file changes no instance."""
    shared, own = tmp_path / "shared.yaml", tmp_path / "own.yaml"
    shared.write_text(FAST_ROUTING)
    own.write_text(FAST_ROUTING)
    a = await make_api(config=str(shared))
    b = await make_api(config=str(shared))
    c = await make_api(config=str(own))  # an instance whose file differs
    await b.agent("ann", billing=5, support=5, sales=5)

    shared.write_text(FAST_ROUTING.replace("rules:", SUPPORT_QUEUE))
    own.write_text(FAST_ROUTING.replace("rules:", SALES_QUEUE))
    applied = await a.call("POST", "/v1/config/reload")
    assert applied.status == 200
    assert applied.body["instances_notified"] == 2

    async def b_follows() -> bool:
        return await queue_names(b) == ["billing", "support"]

    async def c_reads_its_own() -> bool:
        return await queue_names(c) == ["billing", "sales"]

    assert await eventually(b_follows)
    assert await eventually(c_reads_its_own)
    assert await queue_names(a) == ["billing", "support"]

    shared.write_text("queues: []\nrules: [{name: x, steps: [{queue: nowhere}]}]\n")
    assert (await a.call("POST", "/v1/config/reload")).status == 422
    await asyncio.sleep(0.3)
    assert await queue_names(a) == ["billing", "support"]
    assert await queue_names(b) == ["billing", "support"]


async def test_health_and_readiness(api: Api) -> None:
    """/healthz and /readyz answer without a token once Redis and the subscription are up."""
    assert await api.get("/healthz", token=None) == {"status": "ok"}
    assert await api.get("/readyz", token=None) == {"status": "ready"}


async def test_head_answers_as_get_without_a_body(api: Api) -> None:
    """HEAD on a GET resource answers as GET would, without a body: the probes without a
    token, the API with one (401 without); websockets stay GET only (405)."""
    contact = await api.contact()
    for path, token in (
        ("/healthz", None),
        ("/readyz", None),
        ("/v1/queues/billing", ADMIN),
        (f"/v1/contacts/{contact['id']}", GATEWAY),
    ):
        head = await api.call("HEAD", path, token=token)
        assert (head.status, head.body) == (200, ""), path
        assert head.headers["Content-Type"].startswith("application/json"), path
    assert (await api.call("HEAD", "/v1/queues/billing", token=None)).status == 401
    assert (await api.call("HEAD", "/v1/queues/nope")).status == 404
    refused = await api.call("HEAD", "/v1/agents/ann/ws")
    assert (refused.status, refused.headers["Allow"]) == (405, "GET")


async def test_metrics_are_prometheus_text(api: Api) -> None:
    """/metrics serves the Prometheus text format."""
    await api.contact()
    reply = await api.call("GET", "/metrics", token=None)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE" in reply.body


async def test_a_reload_that_would_strand_waiting_contacts_is_refused(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """A reload that removes (or renames) a queue contacts wait in is 409, naming the queue
    and how many wait, and changes nothing; once the queue is empty the same file applies."""
    path = tmp_path / "routing.yaml"
    path.write_text(FAST_ROUTING.replace("rules:", SUPPORT_QUEUE))
    api = await make_api(config=str(path))
    await api.agent("ann", billing=5)  # offline, able to call back
    waiting = [await api.contact(), await api.contact(**{"from": "+1 415 555 0100"})]
    assert [c["status"] for c in waiting] == ["queued", "queued"]
    # one of them is a callback scheduled for later: out of line, but it comes back here
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    path_cb = f"/v1/contacts/{waiting[1]['id']}/callback"
    await api.ok("POST", path_cb, {"not_before": later}, token=GATEWAY)
    billing = await api.get("/v1/queues/billing")
    assert (billing["waiting"], billing["scheduled_callbacks"]) == (1, 1)
    renamed = FAST_ROUTING.replace("billing", "accounts").replace("rules:", SUPPORT_QUEUE)
    path.write_text(renamed)
    refused = await api.call("POST", "/v1/config/reload")
    assert refused.status == 409, refused.body
    assert "'billing' (2 waiting)" in refused.body["detail"]
    assert "nothing was applied" in refused.body["detail"]
    assert await queue_names(api) == ["billing", "support"]
    for contact in waiting:
        await api.call("POST", f"/v1/contacts/{contact['id']}/abandon", token=GATEWAY)
    applied = await api.call("POST", "/v1/config/reload")
    assert applied.status == 200, applied.body
    assert await queue_names(api) == ["accounts", "support"]


async def test_an_agent_taken_out_of_the_offers_queue_loses_the_offer(api: Api) -> None:
    """PUT an agent whose skills no longer admit it to the queue of its pending offer: its
    socket gets the offer `rescinded` (`agent_changed`), and accepting it afterwards is 409."""
    await api.agent("ann", billing=5)
    desk = await api.ws("ann")
    await api.state("ann", "available")
    contact = await api.contact()
    offer = await desk.recv("offer")
    assert (offer["reservation_id"], offer["queue"]) == (contact["reservation_id"], "billing")
    body = {"name": "Ann", "skills": {"support": 4}, "capacity": {"voice": 1}}
    changed = await api.ok("PUT", "/v1/agents/ann", body)
    assert (changed["queues"], changed["reservations"], changed["load"]) == (["support"], [], {})
    rescinded = await desk.recv("rescinded")
    assert rescinded == {
        "type": "rescinded",
        "reservation_id": offer["reservation_id"],
        "reason": "agent_changed",
    }
    path = f"/v1/reservations/{offer['reservation_id']}/accept"
    late = await api.call("POST", path, token=await api.token("ann"))
    assert late.status == 409, late.body
    assert late.body["type"].endswith("reservation-not-pending")
    back = await api.get(f"/v1/contacts/{contact['id']}")
    assert (back["status"], back["position"], back["agent_id"]) == ("queued", 1, None)


#: billing with offers that stay pending long enough for a reload in between
SLOW_OFFERS = """\
queues:
  - name: billing
    agents: "agent.skills.billing >= 1"
    offer_timeout_seconds: 30
rules:
  - {name: default, when: "true", steps: [{queue: billing}]}
"""


async def offered_to_ann(
    make_api: ApiFactory, path: Path
) -> tuple[Api, Desk, dict[str, Any], dict[str, Any]]:
    """An app on the routing config at ``path`` (for reloads to rewrite), ann on a socket and
    available, and a contact offered to her: the app, her socket, the contact, the offer."""
    api = await make_api(config=str(path))
    await api.agent("ann", billing=5)
    desk = await api.ws("ann")
    await api.state("ann", "available")
    contact = await api.contact()
    return api, desk, contact, await desk.recv("offer")


async def test_a_reload_rescinds_offers_it_leaves_invalid_and_counts_them(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """A reload whose billing no longer admits ann rescinds her pending billing offer
    (`agent_changed` on her socket), and the reservations metric counts that rescind."""
    path = tmp_path / "routing.yaml"
    path.write_text(SLOW_OFFERS)
    api, desk, contact, offer = await offered_to_ann(make_api, path)
    assert offer["reservation_id"] == contact["reservation_id"]

    def rescinds(text: str) -> float:
        found = re.search(r'^switchboard_reservations_total\{outcome="rescinded"\} (\S+)$',
                          text, re.M)  # fmt: skip
        return float(found.group(1)) if found else 0.0

    before = rescinds((await api.call("GET", "/metrics", token=None)).body)
    path.write_text(SLOW_OFFERS.replace("billing >= 1", "billing >= 9"))
    assert (await api.call("POST", "/v1/config/reload")).status == 200
    rescinded = await desk.recv("rescinded")
    assert (rescinded["reservation_id"], rescinded["reason"]) == (
        offer["reservation_id"],
        "agent_changed",
    )
    after = rescinds((await api.call("GET", "/metrics", token=None)).body)
    assert after == before + 1


async def test_a_reload_that_would_strand_an_offered_contact_is_refused(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """A contact on offer from billing has left its waiting set, yet a reload renaming billing
    would rescind the offer and leave it waiting in a queue nobody serves: 409, counting it on
    offer (and apart from one waiting), and nothing changes (the offer stays pending); once
    it is completed (and the other abandoned) the same file applies."""
    path = tmp_path / "routing.yaml"
    path.write_text(SLOW_OFFERS)
    api, desk, contact, offer = await offered_to_ann(make_api, path)
    assert (offer["reservation_id"], offer["queue"]) == (contact["reservation_id"], "billing")
    assert (await api.get("/v1/queues/billing"))["waiting"] == 0

    path.write_text(SLOW_OFFERS.replace("billing", "accounts"))
    refused = await api.call("POST", "/v1/config/reload")
    assert refused.status == 409, refused.body
    assert refused.body["type"].endswith("queues-in-use")
    assert "'billing' (1 on offer)" in refused.body["detail"]
    second = await api.contact()  # ann is busy: it waits
    assert second["status"] == "queued"
    refused = await api.call("POST", "/v1/config/reload")
    assert refused.status == 409, refused.body
    assert "'billing' (1 waiting, 1 on offer)" in refused.body["detail"]
    assert "nothing was applied" in refused.body["detail"]
    assert await queue_names(api) == ["billing"]
    await desk.silent("rescinded", 0.3)
    ann = await api.get("/v1/agents/ann")
    assert (ann["queues"], ann["reservations"]) == (["billing"], [offer["reservation_id"]])
    assert (await api.get(f"/v1/contacts/{contact['id']}"))["status"] == "offered"

    await api.call("POST", f"/v1/contacts/{second['id']}/abandon", token=GATEWAY)
    token = await api.token("ann")
    await api.ok("POST", f"/v1/reservations/{offer['reservation_id']}/accept", token=token)
    await api.ok("POST", f"/v1/contacts/{contact['id']}/complete", {}, token=token)
    applied = await api.call("POST", "/v1/config/reload")
    assert applied.status == 200, applied.body
    assert await queue_names(api) == ["accounts"]


#: billing, whose contacts are first offered to ann by name
ANN_FIRST = """\
queues:
  - name: billing
    agents: "agent.skills.billing >= 1"
    offer_timeout_seconds: 30
rules:
  - name: default
    when: "true"
    steps:
      - {target: preferred_agents, agents: '"ann"', timeout_seconds: 30}
      - {queue: billing}
"""


async def test_an_offer_by_name_holds_only_the_queues_of_its_workflow(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """A contact offered to ann by name (a preferred_agents step) is on offer from no queue,
    but its next step is billing: a reload renaming billing is 409 (its workflow leads
    there) and changes nothing, while one removing support, which no step of it names,
    applies; the offer stays pending through both."""
    path = tmp_path / "routing.yaml"
    path.write_text(ANN_FIRST.replace("rules:", SUPPORT_QUEUE))
    api, desk, contact, offer = await offered_to_ann(make_api, path)
    assert offer["reservation_id"] == contact["reservation_id"]

    path.write_text(ANN_FIRST.replace("billing", "accounts").replace("rules:", SUPPORT_QUEUE))
    refused = await api.call("POST", "/v1/config/reload")
    assert refused.status == 409, refused.body
    assert "'billing' (1 whose workflow leads there)" in refused.body["detail"]
    assert await queue_names(api) == ["billing", "support"]

    path.write_text(ANN_FIRST)
    applied = await api.call("POST", "/v1/config/reload")
    assert applied.status == 200, applied.body
    assert await queue_names(api) == ["billing"]
    await desk.silent("rescinded", 0.3)
    ann = await api.get("/v1/agents/ann")
    assert ann["reservations"] == [offer["reservation_id"]]
