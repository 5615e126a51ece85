"""``switchboard loadtest`` leaves the server as it found it and fails a run that routes
(nearly) nothing: the real CLI against a real ``serve`` on a real redis-server."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from queues.embedded import EmbeddedRedis
from router.cli import _parser
from simulations.loadgen_cleanup import Rest, prepare_agents
from simulations.loadgen_plan import agent_profile, arrivals, customers, parse_mix
from simulations.loadtest import loadtest
from tests.simulations.test_loadtest import BIN, TOKEN, _loadtest, _serve

#: everything to the demo's billing queue, which every load agent staffs, one voice call each
VOICE_BILLING = "channel:voice=1;language:en=1;intent:billing=1"
UNSTAFFED = """\
queues:
  - {name: nobody, agents: "agent.skills.underwater_basketry >= 1"}
rules:
  - {name: default, when: "true", steps: [{queue: nobody}]}
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``switchboard serve`` (demo config) on its own redis-server."""
    redis = EmbeddedRedis(tmp_path / "redis", persistent=False)
    redis.start()
    served = _serve(tmp_path, "a", redis.url)
    try:
        yield next(served)
    finally:
        served.close()
        redis.stop()


def _get(base: str, path: str) -> Any:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _count(rate: float, duration: float, seed: int, n_customers: int) -> int:
    """How many contacts ``loadtest --rate --duration --seed --customers --mix VOICE_BILLING``
    sends: its schedule is drawn in advance from the seed."""
    mix = parse_mix(VOICE_BILLING)
    return len(arrivals(rate, duration, seed, mix, customers(n_customers, mix["segment"]), "x"))


def _run(server: str, tmp_path: Path, name: str, *args: str) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    done = _loadtest(
        "--url", server, "--mix", VOICE_BILLING, "--customers", "20", "--json", str(out), *args
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _assert_left_clean(server: str, agents: int) -> None:
    for i in range(agents):
        agent = _get(server, f"/v1/agents/lt-a{i}")
        assert (agent["state"], agent["load"], agent["reservations"]) == ("offline", {}, [])
    assert _get(server, "/v1/queues/billing")["waiting"] == 0


def test_a_second_run_finds_the_agents_free(server: str, tmp_path: Path) -> None:
    """Contacts still held when a run ends are completed, so the next run's agents are free."""
    n = _count(6.0, 1.5, 3, 20)
    assert n >= 3
    # one call per agent, each held far past the end of the run
    first = _run(
        server, tmp_path, "first", "--rate", "6", "--duration", "1.5", "--seed", "3",
        "--agents", str(n), "--handle-time", "60:60",
    )  # fmt: skip
    assert first["routed"] == first["sent"] == n
    _assert_left_clean(server, n)
    second = _run(
        server, tmp_path, "second", "--rate", "6", "--duration", "1.5", "--seed", "4",
        "--agents", str(n), "--handle-time", "0.05:0.2",
    )  # fmt: skip
    assert second["routed"] == second["sent"] > 3
    assert second["errors"] == second["lost"] == second["unrouted"] == 0
    _assert_left_clean(server, n)


def test_a_killed_run_is_cleaned_up_by_the_next(server: str, tmp_path: Path) -> None:
    """A SIGKILLed run's held and queued calls are cleared by the next run, which routes all."""
    agents = 3
    killed = subprocess.Popen(
        [str(BIN / "switchboard"), "loadtest", "--token", TOKEN, "--no-progress", "--url", server,
         "--mix", VOICE_BILLING, "--customers", "20", "--rate", "8", "--duration", "30",
         "--agents", str(agents), "--handle-time", "60:60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                held = [_get(server, f"/v1/agents/lt-a{i}")["load"] for i in range(agents)]
                waiting = _get(server, "/v1/queues/billing")["waiting"]
            except OSError:  # the agents are not created yet
                held, waiting = [], 0
            if held and all(held) and waiting >= 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the first run never filled its agents")
    finally:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
    result = _run(
        server, tmp_path, "after", "--rate", "6", "--duration", "1.5", "--seed", "5",
        "--agents", str(agents), "--handle-time", "0.05:0.2",
    )  # fmt: skip
    assert result["routed"] == result["sent"] > 3
    assert result["errors"] == result["lost"] == result["orphan_offers"] == 0
    recovered = result["setup"]["recovered"]
    assert recovered["completed"] == agents
    assert recovered["cancelled"] >= 2
    assert recovered["agents_replaced"] == 0
    _assert_left_clean(server, agents)


async def test_recovery_completes_what_each_agent_lists(server: str) -> None:
    """Contacts a load agent holds that no pool customer's history shows (a run without a
    pool, or histories moved on) are found in the agent's own listing: the assigned one is
    completed and the one in wrap-up left to end, so neither slot moves to a spare id."""
    admin = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    profiles = [agent_profile(i, random.Random(i)) for i in range(2)]
    async with aiohttp.ClientSession(headers=admin) as http:

        async def call(method: str, path: str, body: Any = None) -> Any:
            async with http.request(method, server + path, json=body) as resp:
                assert resp.status in (200, 201), (path, resp.status, await resp.text())
                return await resp.json()

        held = []
        for slot, profile in enumerate(profiles):  # one at a time: each takes its own chat
            await call("PUT", f"/v1/agents/lt-a{slot}", profile)
            await call("POST", f"/v1/agents/lt-a{slot}/state", {"state": "available"})
            new = {"channel": "chat", "intent": "billing", "from": f"earlier-run-{slot}"}
            async with http.post(
                server + "/v1/contacts", json=new, headers={"Idempotency-Key": f"k{slot}"}
            ) as resp:
                contact = await resp.json()
            assert contact["agent_id"] == f"lt-a{slot}", contact
            await call("POST", f"/v1/reservations/{contact['reservation_id']}/accept")
            await call("POST", f"/v1/agents/lt-a{slot}/state", {"state": "away"})
            held.append(contact["id"])
        await call("POST", f"/v1/contacts/{held[1]}/complete", {"wrap_up_seconds": 600})

        async def put(items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
            return [await call("PUT", path, body) for path, body in items]

        ids, recovered = await prepare_agents(Rest(http, server, None), put, profiles, [])
        assert ids == ["lt-a0", "lt-a1"]
        assert (recovered["completed"], recovered["agents_replaced"]) == (1, 0)
        assert (recovered["agents_offline"], recovered["failures"]) == (2, 0)
        assert (await call("GET", f"/v1/contacts/{held[0]}"))["status"] == "completed"
        assert (await call("GET", f"/v1/contacts/{held[1]}"))["status"] == "wrapping"
        assert (await call("GET", "/v1/agents/lt-a1"))["contacts"] == [held[1]]


def test_a_run_that_routes_nothing_fails(tmp_path: Path) -> None:
    """Agents no queue takes: every contact waits, the JSON counts them, and the exit code is 1."""
    config = tmp_path / "unstaffed.yaml"
    config.write_text(UNSTAFFED)
    redis = EmbeddedRedis(tmp_path / "redis", persistent=False)
    redis.start()
    served = _serve(tmp_path, "a", redis.url, {"SWITCHBOARD_CONFIG": str(config)})
    try:
        url = next(served)
        out = tmp_path / "nothing.json"
        args = _parser().parse_args(
            ["loadtest", "--url", url, "--token", TOKEN, "--rate", "10", "--duration", "1",
             "--agents", "2", "--customers", "5", "--no-progress", "--json", str(out),
             "--drain", "0.5"]
        )  # fmt: skip
        code = loadtest(args)
        result = json.loads(out.read_text())
        waiting = _get(url, "/v1/queues/nobody")["waiting"]
    finally:
        served.close()
        redis.stop()
    assert code == 1
    assert result["ok"] is False
    assert result["routed"] == 0
    assert result["unrouted"] == result["sent"] > 3
    assert result["errors"] == result["lost"] == 0
    assert any("never offered" in check for check in result["failed_checks"])
    assert waiting == 0  # withdrawn at the end of the run


def test_the_unrouted_share_fails_a_run_past_the_limit() -> None:
    """1 of 200 never offered passes at the default 1 %; 3 of 200 fail; a looser limit passes."""
    from simulations.loadgen_report import failed_checks

    clean = {"sent": 200, "lost": 0, "double_offers": 0, "errors": 0, "cleanup": {"failures": 0}}
    assert failed_checks({**clean, "unrouted": 1}, 0.01) == []
    assert failed_checks({**clean, "unrouted": None}, 0.01) == []  # no sockets: not measured
    (check,) = failed_checks({**clean, "unrouted": 3}, 0.01)
    assert check.startswith("3 of 200 contacts (1.5 %) never offered")
    assert failed_checks({**clean, "unrouted": 3}, 0.05) == []
