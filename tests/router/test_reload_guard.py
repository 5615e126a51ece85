"""The config reload guard through the real app: a reload may not remove a queue that a contact
under way still depends on, by the steps of its workflow still ahead too, and what came to
depend on one while the reload was applied is reported (``stranded``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from config.routing import RoutingConfig
from queues.errors import StoreUnavailable
from router import appkeys as k
from router import models as m
from router.reloads import InUse
from router.service import Service
from tests.router.conftest import GATEWAY, ApiFactory
from tests.router.test_api_agents import eventually, queue_names

#: contacts wait in billing, then move on to support
ESCALATING = """\
queues:
  - name: billing
    agents: "agent.skills.billing >= 1"
    offer_timeout_seconds: 30
  - name: support
    agents: "agent.skills.support >= 1"
rules:
  - name: default
    when: "true"
    steps:
      - {queue: billing, timeout_seconds: 600}
      - {queue: support}
"""
#: the same without support: the contacts' later step would name a queue nobody serves
WITHOUT_SUPPORT = """\
queues:
  - name: billing
    agents: "agent.skills.billing >= 1"
    offer_timeout_seconds: 30
rules:
  - {name: default, when: "true", steps: [{queue: billing}]}
"""


async def test_a_reload_removing_a_queue_a_later_step_names_is_refused(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """Contacts in billing whose later step is support (one on offer from billing, one waiting,
    one a callback scheduled for later) keep a reload that removes support from applying: 409
    naming support and the three, nothing changes; once they are gone the file applies."""
    path = tmp_path / "routing.yaml"
    path.write_text(ESCALATING)
    api = await make_api(config=str(path))
    await api.agent("ann", billing=5)
    desk = await api.ws("ann")
    await api.state("ann", "available")
    offered = await api.contact()
    offer = await desk.recv("offer")
    waiting = await api.contact()
    held = await api.contact(**{"from": "+1 415 555 0100"})
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    path_cb = f"/v1/contacts/{held['id']}/callback"
    await api.ok("POST", path_cb, {"not_before": later}, token=GATEWAY)
    assert [c["status"] for c in (offered, waiting)] == ["offered", "queued"]
    support = await api.get("/v1/queues/support")
    assert (support["waiting"], support["scheduled_callbacks"]) == (0, 0)

    path.write_text(WITHOUT_SUPPORT)
    refused = await api.call("POST", "/v1/config/reload")
    assert refused.status == 409, refused.body
    assert refused.body["type"].endswith("queues-in-use")
    assert "'support' (3 whose workflow leads there)" in refused.body["detail"]
    assert "nothing was applied" in refused.body["detail"]
    assert await queue_names(api) == ["billing", "support"]
    await desk.silent("rescinded", 0.3)
    ann = await api.get("/v1/agents/ann")
    assert ann["reservations"] == [offer["reservation_id"]]

    for contact in (offered, waiting, held):
        await api.call("POST", f"/v1/contacts/{contact['id']}/abandon", token=GATEWAY)
    applied = await api.call("POST", "/v1/config/reload")
    assert applied.status == 200, applied.body
    assert applied.body["stranded"] == {}
    assert await queue_names(api) == ["billing"]


async def test_a_contact_waiting_for_an_agent_by_name_holds_its_later_queue(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """A contact waiting for ann by name (a preferred_agents step, in no queue's line) whose
    next step is support keeps a reload that removes support from applying."""
    path = tmp_path / "routing.yaml"
    path.write_text(
        ESCALATING.replace(
            "      - {queue: billing, timeout_seconds: 600}",
            "      - {target: preferred_agents, agents: '\"ann\"', timeout_seconds: 600}",
        )
    )
    api = await make_api(config=str(path))
    await api.agent("ann", billing=5)
    await api.state("ann", "away")  # waited for, not offered
    contact = await api.contact()
    assert contact["status"] == "queued"

    path.write_text(WITHOUT_SUPPORT)
    refused = await api.call("POST", "/v1/config/reload")
    assert refused.status == 409, refused.body
    assert "'support' (1 whose workflow leads there)" in refused.body["detail"]
    assert await queue_names(api) == ["billing", "support"]


async def test_each_removed_queue_counts_the_contacts_that_depend_on_it(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """A reload removing both queues of a contact's workflow names each: billing, where it
    waits, and support, where its next step leads."""
    path = tmp_path / "routing.yaml"
    path.write_text(ESCALATING)
    api = await make_api(config=str(path))
    await api.contact()
    path.write_text(WITHOUT_SUPPORT.replace("billing", "accounts"))
    refused = await api.call("POST", "/v1/config/reload")
    assert refused.status == 409, refused.body
    detail = refused.body["detail"]
    assert "'billing' (1 waiting), 'support' (1 whose workflow leads there)" in detail
    assert await queue_names(api) == ["billing", "support"]


#: support, reached by contacts whose intent is support; the reload below removes both
WITH_SUPPORT_RULE = """\
queues:
  - name: billing
    agents: "agent.skills.billing >= 1"
  - name: support
    agents: "agent.skills.support >= 1"
rules:
  - {name: support, when: "contact.intent == 'support'", steps: [{queue: support}]}
  - {name: default, when: "true", steps: [{queue: billing}]}
"""


async def test_a_contact_routed_during_the_apply_is_reported_stranded(
    make_api: ApiFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A contact routed into support by an instance still on the old config, after A's check
    found support unused and before A applied the new config, is found by the check A runs
    again once the config is in force: the reload applies (200) and reports it under
    `stranded`, and both A and B (after it follows) log `config.reload_stranded`."""
    path = tmp_path / "routing.yaml"
    path.write_text(WITH_SUPPORT_RULE)
    a = await make_api(config=str(path))
    b = await make_api(config=str(path))
    service = a.client.app[k.SERVICE]
    apply = service.reload
    late: list[dict[str, Any]] = []

    async def routed_meanwhile(tenants: list[str], config: RoutingConfig) -> m.ReloadOut:
        # (B has not heard of the reload: it routes by the old rules)
        late.append(await b.contact(intent="support"))
        return await apply(tenants, config)

    monkeypatch.setattr(service, "reload", routed_meanwhile)
    path.write_text(WITHOUT_SUPPORT)
    with capture_logs() as logs:
        applied = await a.call("POST", "/v1/config/reload")
        assert applied.status == 200, applied.body
        assert applied.body["stranded"] == {"support": 1}
        assert late[0]["queue"] == "support"

        async def b_follows() -> bool:
            return await queue_names(b) == ["billing"]

        assert await eventually(b_follows)

        async def both_checked() -> bool:  # (B checks again once it has applied)
            return len([e for e in logs if e["event"] == "config.reload_stranded"]) == 2

        assert await eventually(both_checked)
    stranded = [e for e in logs if e["event"] == "config.reload_stranded"]
    assert {e["source"] for e in stranded} == {"this instance", "another instance"}
    assert all(e["queues"] == {"support": 1} for e in stranded), stranded
    assert all(e["log_level"] == "warning" for e in stranded)


async def test_a_second_check_that_fails_leaves_the_reload_applied_and_unchecked(
    make_api: ApiFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the store goes away between the apply and the second check, the reload still
    answers 200 (it is applied, and the other instances told) with `stranded` null, and logs
    `config.reload_check_failed`."""
    path = tmp_path / "routing.yaml"
    path.write_text(WITH_SUPPORT_RULE)
    api = await make_api(config=str(path))
    reloads = api.client.app[k.RELOADS]
    check = reloads.in_use
    calls: list[set[str]] = []

    async def gone_after_the_first(service: Service, removed: set[str], queues: list[str]) -> InUse:
        calls.append(removed)
        if len(calls) > 1:
            raise StoreUnavailable("redis unavailable: connection refused")
        return await check(service, removed, queues)

    monkeypatch.setattr(reloads, "in_use", gone_after_the_first)
    path.write_text(WITHOUT_SUPPORT)
    with capture_logs() as logs:
        applied = await api.call("POST", "/v1/config/reload")
    assert applied.status == 200, applied.body
    assert applied.body["stranded"] is None
    assert calls == [{"support"}, {"support"}]
    assert await queue_names(api) == ["billing"]
    failed = [e for e in logs if e["event"] == "config.reload_check_failed"]
    assert [e["log_level"] for e in failed] == ["error"]
