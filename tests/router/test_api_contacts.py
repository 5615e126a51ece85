"""Contacts through the real app and redis-server: lifecycle, routing on the demo config, replay.

Agents are driven over their websockets the way a desktop would be; timers (offer timeouts,
wrap-up ends) fire through the app's own timer loop, with the short timeouts of
``FAST_ROUTING``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.router.conftest import GATEWAY, Api, ApiFactory, Desk

PROBLEM_TYPE = "https://switchboard.dev/problems/"


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def available(api: Api, agent_id: str, **skills: int) -> Desk:
    """Create the agent, open its socket, make it available; returns the socket."""
    await api.agent(agent_id, None, **skills)
    ws = await api.ws(agent_id)
    assert (await ws.recv("state"))["state"] == "offline"
    await ws.send({"type": "state", "state": "available", "ref": "ready"})
    while (reply := await ws.recv("state")).get("ref") != "ready":
        pass  # the state push before the reply
    assert reply["state"] == "available"
    return ws


# ---------------------------------------------------------------------------- lifecycle


async def test_offer_carries_contact_customer_suggestions_and_expiry(api: Api) -> None:
    """An offer names the reservation, expires 15 s on (demo billing) and carries the views."""
    ws = await available(api, "ann", billing=5)
    contact = await api.contact(**{"from": "+1 415 555 0100"}, language="es", intent="help")
    assert contact["status"] == "offered"
    assert contact["agent_id"] == "ann"
    offer = await ws.recv("offer")
    assert offer["reservation_id"] == contact["reservation_id"]
    assert offer["queue"] == "billing"
    assert when(offer["expires_at"]) - when(contact["created_at"]) == timedelta(seconds=15)
    assert offer["contact"]["id"] == contact["id"]
    assert offer["contact"]["from"] == "+1 415 555 0100"
    assert offer["contact"]["language"] == "es"
    assert offer["contact"]["rule"] == "default"
    assert offer["customer"]["id"] == contact["customer"]["id"]
    assert offer["customer"]["segment"] == "standard"
    assert offer["customer"]["history"][0]["contact_id"] == contact["id"]
    # the numbers, addresses and handles to reach the customer on (a new one: its caller id)
    assert offer["customer"]["phones"] == ["+14155550100"]
    assert (offer["customer"]["emails"], offer["customer"]["chat_handles"]) == ([], [])
    assert offer["suggestions"] == [
        {"kind": "service", "text": "Customer prefers Spanish.", "rule": "spanish-speaker"}
    ]


async def test_accept_over_rest_then_complete_through_wrap_up(
    make_api: ApiFactory, fast_routing: Path
) -> None:
    """Accept answers {reservation_id, contact}; complete wraps, then completes on its timer."""
    api = await make_api(config=str(fast_routing))
    ws = await available(api, "ann", billing=5)
    first = await api.contact()
    second = await api.contact()
    assert second["status"] == "queued"
    assert second["position"] == 1
    offer = await ws.recv("offer")
    token = await api.token("ann")

    accepted = await api.call(
        "POST", f"/v1/reservations/{offer['reservation_id']}/accept", token=token
    )
    assert accepted.status == 200
    assert accepted.body["reservation_id"] == offer["reservation_id"]
    assert accepted.body["contact"]["id"] == first["id"]
    assert accepted.body["contact"]["status"] == "assigned"
    assert accepted.body["contact"]["agent_id"] == "ann"
    assigned = await ws.recv("assigned")
    assert assigned == {
        "type": "assigned",
        "reservation_id": offer["reservation_id"],
        "contact_id": first["id"],
    }

    done = await api.call(
        "POST", f"/v1/contacts/{first['id']}/complete", {"disposition": "paid"}, token=token
    )
    assert done.status == 200
    assert done.body["status"] == "wrapping"
    assert (await api.get("/v1/agents/ann"))["load"] == {"voice": 1}
    assert (await api.get(f"/v1/contacts/{second['id']}"))["status"] == "queued"

    closed = await api.until(f"/v1/contacts/{first['id']}", lambda c: c["status"] == "completed")
    assert closed["disposition"] == "paid"
    nxt = await ws.recv("offer")  # capacity freed at the end of wrap-up: the next contact
    assert nxt["contact"]["id"] == second["id"]


async def test_accept_and_complete_over_the_socket(api: Api) -> None:
    """Socket actions answer with `accepted` and `completed`, echoing the client's ref."""
    ws = await available(api, "ann", billing=5)
    contact = await api.contact()
    offer = await ws.recv("offer")
    await ws.send({"type": "accept", "reservation_id": offer["reservation_id"], "ref": 7})
    accepted = await ws.recv("accepted")
    assert accepted["ref"] == 7
    assert accepted["reservation_id"] == offer["reservation_id"]
    assert accepted["contact"]["status"] == "assigned"

    await ws.send(
        {"type": "complete", "contact_id": contact["id"], "disposition": "resolved", "ref": "c"}
    )
    completed = await ws.recv("completed")
    assert completed["ref"] == "c"
    assert completed["contact"]["status"] == "completed"  # the demo's billing has no wrap-up
    assert completed["contact"]["disposition"] == "resolved"
    agent = await api.get("/v1/agents/ann")
    assert agent["load"] == {}
    assert agent["reservations"] == []


async def test_a_retried_accept_answers_as_the_first_on_the_socket_and_over_rest(
    api: Api,
) -> None:
    """An accept repeated (a desk that lost the reply) answers `accepted` again, the same on the
    socket and over REST, with no second `assigned` and the capacity used once; a socket
    opened later lists the contact in its `state`; once completed, a retry is 409."""
    ws = await available(api, "ann", billing=5)
    contact = await api.contact()
    offer = await ws.recv("offer")
    rid = offer["reservation_id"]
    await ws.send({"type": "accept", "reservation_id": rid, "ref": 1})
    first = await ws.recv("accepted")
    await ws.send({"type": "accept", "reservation_id": rid, "ref": 2})
    second = await ws.recv("accepted")
    assert (first.pop("ref"), second.pop("ref")) == (1, 2)
    assert first == second
    assert (first["contact"]["id"], first["contact"]["status"]) == (contact["id"], "assigned")
    token = await api.token("ann")
    rest = await api.call("POST", f"/v1/reservations/{rid}/accept", token=token)
    assert rest.status == 200
    assert {"type": "accepted", **rest.body} == first
    assert (await ws.recv("assigned"))["reservation_id"] == rid
    await ws.silent("assigned", 0.3)
    agent = await api.get("/v1/agents/ann")
    assert (agent["load"], agent["reservations"], agent["contacts"]) == (
        {"voice": 1},
        [],
        [contact["id"]],
    )
    other = await api.ws("ann")
    hello = await other.recv("state")
    assert (hello["state"], hello["contacts"]) == ("available", [contact["id"]])

    await api.ok("POST", f"/v1/contacts/{contact['id']}/complete", {}, token=token)
    late = await api.call("POST", f"/v1/reservations/{rid}/accept", token=token)
    assert (late.status, late.body["status"]) == (409, 409)
    await ws.send({"type": "accept", "reservation_id": rid, "ref": 3})
    error = await ws.recv("error")
    assert (error["status"], error["ref"]) == (409, 3)
    assert (await api.get("/v1/agents/ann"))["contacts"] == []


async def test_reject_moves_the_offer_on_and_never_back(api: Api) -> None:
    """A rejected offer goes to the next agent; once everyone declined it waits for a new one."""
    sockets = {name: await available(api, name, billing=5) for name in ("ann", "bob")}
    contact = await api.contact()
    first = contact["agent_id"]
    second = "bob" if first == "ann" else "ann"
    offer = await sockets[first].recv("offer")

    rejected = await api.call(
        "POST", f"/v1/reservations/{offer['reservation_id']}/reject", {"reason": "on a break"}
    )
    assert rejected.status == 200
    assert rejected.body == {"reservation_id": offer["reservation_id"], "status": "rejected"}
    again = await sockets[second].recv("offer")
    assert again["contact"]["id"] == contact["id"]

    await sockets[second].send({"type": "reject", "reservation_id": again["reservation_id"]})
    assert (await sockets[second].recv("rejected"))["status"] == "rejected"
    await sockets[first].silent("offer", 0.3)
    waiting = await api.get(f"/v1/contacts/{contact['id']}")
    assert (waiting["status"], waiting["position"]) == ("queued", 1)
    assert (await api.get("/v1/agents/ann"))["reservations"] == []

    carl = await available(api, "carl", billing=1)
    assert (await carl.recv("offer"))["contact"]["id"] == contact["id"]


async def test_offer_timeout_sets_agent_away_and_keeps_the_place(
    make_api: ApiFactory, fast_routing: Path
) -> None:
    """An unanswered offer is rescinded (timeout), the agent goes away, the contact keeps rank."""
    api = await make_api(config=str(fast_routing))
    ann = await available(api, "ann", billing=5)
    first = await api.contact()
    second = await api.contact()
    offer = await ann.recv("offer")
    assert offer["contact"]["id"] == first["id"]

    rescinded = await ann.recv("rescinded", within=3)
    assert rescinded == {
        "type": "rescinded",
        "reservation_id": offer["reservation_id"],
        "reason": "timeout",
    }
    while (await ann.recv("state"))["state"] != "away":
        pass  # (the push of the offer's load, still unread)
    assert (await api.get("/v1/agents/ann"))["state"] == "away"
    assert (await api.get(f"/v1/contacts/{first['id']}"))["position"] == 1
    assert (await api.get(f"/v1/contacts/{second['id']}"))["position"] == 2
    late = await api.call("POST", f"/v1/reservations/{offer['reservation_id']}/accept")
    assert late.status == 409

    bob = await available(api, "bob", billing=5)
    assert (await bob.recv("offer"))["contact"]["id"] == first["id"]


async def test_abandon_while_queued(api: Api) -> None:
    """A waiting contact the customer left is abandoned and leaves the line."""
    first = await api.contact()
    second = await api.contact()
    gone = await api.call("POST", f"/v1/contacts/{first['id']}/abandon", token=GATEWAY)
    assert gone.status == 200
    assert gone.body["status"] == "abandoned"
    assert gone.body["position"] is None
    assert (await api.get(f"/v1/contacts/{second['id']}"))["position"] == 1
    assert (await api.get("/v1/queues/billing"))["waiting"] == 1


async def test_abandon_while_offered_rescinds_the_offer(api: Api) -> None:
    """Abandoning an offered contact rescinds the offer with reason `abandoned`."""
    ws = await available(api, "ann", billing=5)
    contact = await api.contact()
    offer = await ws.recv("offer")
    gone = await api.call("POST", f"/v1/contacts/{contact['id']}/abandon", token=GATEWAY)
    assert gone.status == 200
    assert gone.body["status"] == "abandoned"
    assert await ws.recv("rescinded") == {
        "type": "rescinded",
        "reservation_id": offer["reservation_id"],
        "reason": "abandoned",
    }
    agent = await api.get("/v1/agents/ann")
    assert (agent["reservations"], agent["load"]) == ([], {})


async def test_cancel_withdraws_an_offered_contact(api: Api) -> None:
    """The gateway cancels: the offer is rescinded with reason `cancelled`, the contact ends
    `cancelled`, a repeat answers the same, and an assigned contact cannot be cancelled."""
    ws = await available(api, "ann", billing=5)
    contact = await api.contact()
    offer = await ws.recv("offer")
    gone = await api.call("POST", f"/v1/contacts/{contact['id']}/cancel", token=GATEWAY)
    assert (gone.status, gone.body["status"]) == (200, "cancelled")
    assert await ws.recv("rescinded") == {
        "type": "rescinded",
        "reservation_id": offer["reservation_id"],
        "reason": "cancelled",
    }
    again = await api.call("POST", f"/v1/contacts/{contact['id']}/cancel", token=GATEWAY)
    assert (again.status, again.body["status"]) == (200, "cancelled")
    taken = await api.contact()
    offer = await ws.recv("offer")
    await api.ok("POST", f"/v1/reservations/{offer['reservation_id']}/accept")
    late = await api.call("POST", f"/v1/contacts/{taken['id']}/cancel", token=GATEWAY)
    assert late.status == 409
    missing = await api.call("POST", "/v1/contacts/nobody/cancel", token=GATEWAY)
    assert missing.status == 404


async def test_abandon_after_accept_is_a_conflict(api: Api) -> None:
    """Once an agent has the contact, abandon is 409 and the contact stays assigned."""
    ws = await available(api, "ann", billing=5)
    contact = await api.contact()
    offer = await ws.recv("offer")
    await api.ok("POST", f"/v1/reservations/{offer['reservation_id']}/accept")
    late = await api.call("POST", f"/v1/contacts/{contact['id']}/abandon", token=GATEWAY)
    assert late.status == 409
    assert late.body["status"] == 409
    assert late.headers["Content-Type"].startswith("application/problem+json")
    assert (await api.get(f"/v1/contacts/{contact['id']}"))["status"] == "assigned"


async def test_abandon_repeated_answers_again_but_not_after_a_cancel(api: Api) -> None:
    """Abandoning an abandoned contact answers it again (200, nothing changes); abandoning a
    cancelled one is 409 contact-not-waiting (docs/api.md, abandon)."""
    left, withdrawn = await api.contact(), await api.contact()
    path = f"/v1/contacts/{left['id']}/abandon"
    first = await api.call("POST", path, token=GATEWAY)
    again = await api.call("POST", path, token=GATEWAY)
    assert (first.status, again.status) == (200, 200)
    assert again.body == first.body
    assert first.body["status"] == "abandoned"
    await api.ok("POST", f"/v1/contacts/{withdrawn['id']}/cancel", token=GATEWAY)
    late = await api.call("POST", f"/v1/contacts/{withdrawn['id']}/abandon", token=GATEWAY)
    assert (late.status, late.body["type"]) == (409, PROBLEM_TYPE + "contact-not-waiting")


async def test_position_and_wait_are_null_once_no_longer_queued(api: Api) -> None:
    """An offered and an assigned contact have no position and no estimated wait, while one
    queued behind them has both (docs/api.md, the Contact)."""
    ws = await available(api, "ann", billing=5)
    contact = await api.contact()
    behind = await api.contact()
    assert (behind["position"], behind["estimated_wait_seconds"]) == (1, 180.0)
    offered = await api.get(f"/v1/contacts/{contact['id']}")
    assert (offered["status"], offered["position"], offered["estimated_wait_seconds"]) == (
        "offered",
        None,
        None,
    )
    offer = await ws.recv("offer")
    accepted = await api.ok("POST", f"/v1/reservations/{offer['reservation_id']}/accept")
    held = accepted["contact"]
    assert (held["status"], held["position"], held["estimated_wait_seconds"]) == (
        "assigned",
        None,
        None,
    )


async def test_callback_keeps_the_place_in_line(api: Api) -> None:
    """A contact turned into a callback keeps its position and is offered in that order."""
    await api.agent("ann", billing=5)  # offline, able to call back
    first, second, third = [await api.contact() for _ in range(3)]
    held = await api.call(
        "POST", f"/v1/contacts/{second['id']}/callback", {"number": "+14155550101"}, token=GATEWAY
    )
    assert held.status == 200
    assert (held.body["status"], held.body["position"]) == ("queued", 2)
    assert (await api.get(f"/v1/contacts/{third['id']}"))["position"] == 3

    ws = await available(api, "ann", billing=5)
    order = []
    for _ in range(3):
        offer = await ws.recv("offer")
        order.append(offer["contact"]["id"])
        await ws.send({"type": "accept", "reservation_id": offer["reservation_id"]})
        await ws.recv("accepted")
        await ws.send({"type": "complete", "contact_id": order[-1]})
        await ws.recv("completed")
    assert order == [first["id"], second["id"], third["id"]]


async def test_callback_contact_reads_as_a_callback(api: Api) -> None:
    """After virtual hold the contact's channel is `callback` (it is offered as one)."""
    await api.agent("ann", billing=5)  # offline, able to call back
    contact = await api.contact(**{"from": "+1 415 555 0100"})
    held = await api.ok("POST", f"/v1/contacts/{contact['id']}/callback", {}, token=GATEWAY)
    assert held["channel"] == "callback"


async def test_the_callback_offer_names_the_number_to_dial(api: Api) -> None:
    """The agent's offer carries the number to call back, read as E.164; an unreadable
    number is a 422 that changes nothing."""
    await api.agent("ann", billing=5)  # offline, able to call back
    contact = await api.contact()
    path = f"/v1/contacts/{contact['id']}/callback"
    bad = await api.call("POST", path, {"number": "call me maybe"}, token=GATEWAY)
    assert bad.status == 422
    assert bad.body["errors"][0]["loc"] == ["body", "number"]
    assert (await api.get(f"/v1/contacts/{contact['id']}"))["channel"] == "voice"
    await api.ok("POST", path, {"number": "(415) 555-0101"}, token=GATEWAY)
    ws = await available(api, "ann", billing=5)
    offer = await ws.recv("offer")
    assert offer["contact"]["id"] == contact["id"]
    assert offer["contact"]["callback"] == {"number": "+14155550101"}


@pytest.mark.parametrize("channel", ["chat", "email"])
async def test_a_callback_for_a_contact_without_a_phone_needs_a_number(
    api: Api, channel: str
) -> None:
    """A chat or email contact came from no phone number: a callback without `number` is a
    422 that changes nothing (the agent would have had a handle to dial); with one it holds."""
    await api.agent("ann", billing=5)  # offline, able to call back
    contact = await api.contact(channel=channel, intent="billing")
    path = f"/v1/contacts/{contact['id']}/callback"
    bad = await api.call("POST", path, {}, token=GATEWAY)
    assert bad.status == 422
    assert bad.body["errors"][0]["loc"] == ["body", "number"]
    assert f"a {channel} contact came from no phone number" in bad.body["detail"]
    assert (await api.get(f"/v1/contacts/{contact['id']}"))["channel"] == channel
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    held = await api.ok(
        "POST", path, {"number": "+14155550101", "not_before": later}, token=GATEWAY
    )
    assert held["channel"] == "callback"
    # asked again without a number (say, "call now instead"): still no number of its own
    again = await api.call("POST", path, {}, token=GATEWAY)
    assert again.status == 422
    assert again.body["errors"][0]["loc"] == ["body", "number"]


async def test_a_scheduled_callback_expects_to_wait_until_it_is_due(api: Api) -> None:
    """A callback held until later says it will wait at least until then (the estimate
    counted only the contacts ahead of it, as if it were in line now)."""
    await api.agent("ann", billing=5)
    await api.state("ann", "away")  # staffed, not taking contacts: an estimate exists
    contact = await api.contact(**{"from": "+1 415 555 0100"})
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    held = await api.ok(
        "POST", f"/v1/contacts/{contact['id']}/callback", {"not_before": later}, token=GATEWAY
    )
    assert 3_590 <= held["estimated_wait_seconds"] <= 3_600
    shown = await api.get(f"/v1/contacts/{contact['id']}")
    assert 3_580 <= shown["estimated_wait_seconds"] <= 3_600


async def test_position_and_estimated_wait(api: Api) -> None:
    """Position counts from 1; estimated wait is null until an agent is staffed for the queue."""
    first = await api.contact()
    second = await api.contact()
    assert (first["position"], first["estimated_wait_seconds"]) == (1, None)
    assert (second["position"], second["estimated_wait_seconds"]) == (2, None)

    await api.agent("ann", billing=5)  # new agents are offline: not staffed
    assert (await api.get(f"/v1/contacts/{second['id']}"))["estimated_wait_seconds"] is None
    await api.state("ann", "away")  # signed in: staffed, not taking contacts
    now = await api.get(f"/v1/contacts/{second['id']}")
    # position 2 x the default 180 s handle time / 1 agent staffed
    assert (now["position"], now["estimated_wait_seconds"]) == (2, 360.0)


async def test_a_call_in_a_blended_queue_has_no_estimate_while_only_chat_agents_work(
    api: Api,
) -> None:
    """In a queue of voice and chat agents, a caller gets no estimate while the voice agents
    are signed out and a chat agent works, and one counting the voice agents once they sign in."""
    await api.agent("cleo", {"chat": 2}, billing=5)
    await api.agent("vic", {"voice": 1}, billing=5)
    await api.state("cleo", "available")
    call = await api.contact()
    assert (call["status"], call["position"], call["estimated_wait_seconds"]) == (
        "queued",
        1,
        None,
    )
    await api.state("vic", "away")
    now = await api.get(f"/v1/contacts/{call['id']}")
    # position 1 x the default 180 s handle time / 1 voice agent staffed (cleo takes no calls)
    assert (now["position"], now["estimated_wait_seconds"]) == (1, 180.0)


async def test_after_an_escalation_position_is_the_best_place_of_its_queues(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """Escalated into a second queue where it is first, though third in its first queue, a
    contact reads position 1, and its wait is the shortest of its queues' own estimates."""
    path = tmp_path / "routing.yaml"
    path.write_text(ESCALATING)
    api = await make_api(config=str(path))
    await api.agent("ann", billing=5)
    await api.agent("bea", billing=5)
    await api.agent("sal", sales=5)
    for agent_id in ("ann", "bea", "sal"):
        await api.state(agent_id, "away")  # staffed, taking nothing
    await api.contact()
    await api.contact()
    late = await api.contact(intent="late")
    # third of billing's 2 agents: 3 x the default 180 s / 2
    assert (late["position"], late["estimated_wait_seconds"]) == (3, 270.0)
    now = await api.until(f"/v1/contacts/{late['id']}", lambda c: c["position"] == 1)
    # billing: 3 x 180 / 2 = 270 s; sales: 1 x 180 / 1 = 180 s
    assert (now["queue"], now["estimated_wait_seconds"]) == ("billing", 180.0)


#: billing first; a contact with intent "late" waits 0.3 s there, then in billing and sales
ESCALATING = """\
queues:
  - name: billing
    agents: "agent.skills.billing >= 1"
  - name: sales
    agents: "agent.skills.sales >= 1"
rules:
  - name: escalate
    when: "contact.intent == 'late'"
    steps:
      - {queue: billing, timeout_seconds: 0.3}
      - {queues: [billing, sales]}
  - {name: default, when: "true", steps: [{queue: billing}]}
"""


# ------------------------------------------------------------------ routing (demo config)


async def test_rule_priority_serves_a_later_cancellation_first(api: Api) -> None:
    """A later `cancel` contact (30 s of credit) is served before an earlier default one."""
    plain = await api.contact()
    cancel = await api.contact(intent="cancel")
    assert (plain["rule"], plain["priority"], plain["queue"]) == ("default", 0.0, "billing")
    assert (cancel["rule"], cancel["priority"], cancel["queue"]) == (
        "cancellation",
        30.0,
        "retention",
    )
    ws = await available(api, "ann", billing=5, retention=5)
    assert (await ws.recv("offer"))["contact"]["id"] == cancel["id"]


async def test_spanish_billing_goes_to_a_spanish_speaker(api: Api) -> None:
    """Spanish billing reaches the agent with spanish >= 5, not the longer-idle English one."""
    english = await available(api, "ann", billing=5, spanish=3)
    spanish = await available(api, "bea", billing=2, spanish=6)
    contact = await api.contact(language="es", intent="billing")
    assert (contact["rule"], contact["queue"], contact["agent_id"]) == (
        "spanish-billing",
        "billing-es",
        "bea",
    )
    assert (await spanish.recv("offer"))["contact"]["id"] == contact["id"]
    other = await api.contact(intent="billing")
    assert other["agent_id"] == "ann"
    assert (await english.recv("offer"))["contact"]["id"] == other["id"]


async def test_a_valuable_customer_whose_agent_is_offline_goes_to_retention_at_once(
    api: Api,
) -> None:
    """The demo's valuable-at-risk rule tries the customer's last agent for 20 s; with that agent
    logged off the contact goes to the retention desk at once, not after the 20 s."""
    caller = {"from": "+1 415 555 0142"}
    profile = {"name": "Dana", "phones": [caller["from"]], "value": 5000.0, "churn_risk": 0.9}
    await api.ok("PUT", "/v1/customers/cu-dana", profile)
    ann = await available(api, "ann", retention=5)
    first = await api.contact(**caller)
    assert (first["rule"], first["agent_id"]) == ("valuable-at-risk", "ann")
    offer = await ann.recv("offer")
    await ann.send({"type": "accept", "reservation_id": offer["reservation_id"]})
    await ann.recv("accepted")
    await ann.send({"type": "complete", "contact_id": first["id"], "ref": "done"})
    await ann.recv("completed")
    await api.state("ann", "offline")
    bea = await available(api, "bea", retention=4)
    again = await api.contact(**caller)
    assert (again["rule"], again["status"], again["agent_id"]) == (
        "valuable-at-risk",
        "offered",
        "bea",
    )
    assert (await bea.recv("offer"))["queue"] == "retention"


async def test_oldest_contact_first_across_an_agents_queues(api: Api) -> None:
    """An agent of two queues takes the longest-waiting contact of either, in arrival order."""
    created = [
        await api.contact(intent="support"),
        await api.contact(intent="billing"),
        await api.contact(intent="support"),
        await api.contact(intent="billing"),
    ]
    assert [c["queue"] for c in created] == ["support", "billing", "support", "billing"]
    ws = await available(api, "ann", billing=5, support=5)
    served = []
    for _ in created:
        offer = await ws.recv("offer")
        served.append(offer["contact"]["id"])
        await ws.send({"type": "accept", "reservation_id": offer["reservation_id"]})
        await ws.recv("accepted")
        await ws.send({"type": "complete", "contact_id": served[-1]})
        await ws.recv("completed")
    assert served == [c["id"] for c in created]


# ---------------------------------------------------------------------------- idempotency


async def test_same_key_same_body_replays_the_contact(api: Api) -> None:
    """The same Idempotency-Key and body answer 200 with the same contact; nothing is added."""
    body = {"channel": "chat", "from": "dana@example.com", "intent": "billing"}
    headers = {"Idempotency-Key": "order-42"}
    made = await api.call("POST", "/v1/contacts", body, token=GATEWAY, headers=headers)
    again = await api.call("POST", "/v1/contacts", body, token=GATEWAY, headers=headers)
    assert (made.status, again.status) == (201, 200)
    assert again.body == made.body
    assert (await api.get("/v1/queues/billing"))["waiting"] == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/contacts", {"channel": "voice", "from": "+14155550100"}),
        ("/v1/channels/voice", {"call_id": "loc-1", "from": "+14155550100"}),
        ("/v1/channels/sms", {"message_id": "loc-1", "from": "+14155550100", "text": "hi"}),
        ("/v1/channels/email", {"message_id": "<loc-1@example.com>", "from": "a@example.com"}),
    ],
)
async def test_a_new_contact_gives_its_url_in_location(
    api: Api, path: str, body: dict[str, Any]
) -> None:
    """A 201 that made a contact carries ``Location: /v1/contacts/{id}`` (RFC 9110), which
    reads the contact, and /openapi.json documents the header; a replay's 200 has none."""
    headers = {"Idempotency-Key": "loc-1"}
    made = await api.call("POST", path, body, token=GATEWAY, headers=headers)
    again = await api.call("POST", path, body, token=GATEWAY, headers=headers)
    assert (made.status, again.status) == (201, 200)
    assert made.headers["Location"] == f"/v1/contacts/{made.body['id']}"
    assert (await api.get(made.headers["Location"]))["id"] == made.body["id"]
    assert "Location" not in again.headers
    doc = (await api.call("GET", "/openapi.json")).body
    responses = doc["paths"][path]["post"]["responses"]
    assert set(responses["201"]["headers"]) == {"Location"}
    assert "headers" not in responses["200"]


async def test_same_key_other_body_is_a_conflict(api: Api) -> None:
    """The same Idempotency-Key with a different body is 409 and records nothing."""
    headers = {"Idempotency-Key": "order-43"}
    made = await api.call("POST", "/v1/contacts", {"channel": "voice"}, token=GATEWAY,
                          headers=headers)  # fmt: skip
    clash = await api.call("POST", "/v1/contacts", {"channel": "sms"}, token=GATEWAY,
                           headers=headers)  # fmt: skip
    assert made.status == 201
    assert clash.status == 409
    assert clash.headers["Content-Type"].startswith("application/problem+json")
    assert clash.body == {
        "type": "https://switchboard.dev/problems/idempotency-conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "this Idempotency-Key was already used with a different request body",
    }
    assert (await api.get("/v1/queues/billing"))["waiting"] == 1


BY_COUNTRY = """\
queues:
  - {name: billing, agents: "agent.skills.billing >= 1"}
  - {name: mexico, agents: "agent.skills.spanish >= 5"}
rules:
  - {name: from-mexico, when: "contact.country == 'MX'", steps: [{queue: mexico}]}
  - {name: default, when: "true", steps: [{queue: billing}]}
"""


async def test_rules_route_by_the_callers_country(make_api: ApiFactory, tmp_path: Path) -> None:
    """`contact.country` is the region of a phone sender: a call from a Mexican number goes to
    the Mexico queue, one from a US number (read in the default region) and an email do not."""
    path = tmp_path / "routing.yaml"
    path.write_text(BY_COUNTRY)
    api = await make_api(config=str(path))
    mexico = await api.contact(**{"from": "+52 55 1234 5678"})
    home = await api.contact(**{"from": "(415) 555-0100"})
    sms = await api.contact(channel="sms", body="hola", **{"from": "+52 33 1234 5678"})
    mail = await api.contact(channel="email", subject="hola", **{"from": "ana@example.mx"})
    routed = [(c["queue"], c["rule"]) for c in (mexico, home, sms, mail)]
    assert routed == [
        ("mexico", "from-mexico"),
        ("billing", "default"),
        ("mexico", "from-mexico"),
        ("billing", "default"),
    ]


BY_ADVISOR = """\
queues:
  - {name: billing, agents: "agent.skills.billing >= 1"}
rules:
  - name: advised
    when: "has(customer.attributes.advisor)"
    steps:
      - {target: preferred_agents, agents: "customer.attributes.advisor", queue: billing,
         timeout_seconds: 30}
      - {queue: billing}
  - {name: default, when: "true", steps: [{queue: billing}]}
"""


async def test_a_preferred_agent_from_customer_data_that_no_agent_could_be_is_nobody(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """A preferred-agents list read from the CRM may hold anything: a value that is no agent id
    (here one naming ann's line of contacts waiting for her) targets nobody, and the contact is
    routed to the step's queue, instead of failing with a 500 halfway through the store's
    script."""
    path = tmp_path / "routing.yaml"
    path.write_text(BY_ADVISOR)
    api = await make_api(config=str(path))
    await api.agent("ann", billing=5)
    await api.state("ann", "away")
    await api.ok("PUT", "/v1/customers/k1", {"attributes": {"advisor": "ann"}})
    await api.ok("PUT", "/v1/customers/k2", {"attributes": {"advisor": "ann:w:voice"}})
    first = await api.contact(customer_id="k1")  # waits for ann by name, and in billing
    second = await api.contact(customer_id="k2")
    assert (second["status"], second["rule"], second["position"]) == ("queued", "advised", 2)
    await api.state("ann", "available")
    assert (await api.get(f"/v1/contacts/{first['id']}"))["agent_id"] == "ann"
    assert (await api.get(f"/v1/contacts/{second['id']}"))["position"] == 1


async def test_the_offers_history_holds_the_configured_number_of_contacts(api: Api) -> None:
    """The offer's history is the customer's last 20 contacts (the demo's history length),
    this one among them, not this one and 20 more."""
    caller = {"from": "+1 415 555 0177"}
    for _ in range(22):
        await api.contact(**caller)
    ws = await available(api, "ann", billing=5)
    offer = await ws.recv("offer")
    history = offer["customer"]["history"]
    assert len(history) == 20
    assert history[0]["contact_id"] == offer["contact"]["id"]
