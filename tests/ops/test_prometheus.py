"""A real Prometheus scrapes a real ``switchboard serve`` with the shipped rules loaded.

The test drives contacts through the HTTP API (some answered in time, one late, some
abandoned), computes the service level from its own contacts, and reads the recorded service
level back through Prometheus's HTTP API. It also checks that every shipped rule evaluates
without error on real series and that every dashboard query parses.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from tests.ops.conftest import (
    DASHBOARD,
    PROMETHEUS_DIR,
    free_port,
    promtool_check_metrics,
    tool,
)

SWITCHBOARD = Path(sys.executable).parent / "switchboard"
TOKEN = "prom-admin"
THRESHOLD = 0.5  # seconds: billing's service-level threshold in this test's routing config
ROUTING = f"""\
queues:
  - name: billing
    agents: "agent.skills.billing >= 1"
    service_level: {{threshold_seconds: {THRESHOLD}, target: 0.8}}
rules:
  - {{name: default, when: "true", steps: [{{queue: billing}}]}}
"""
_keys = count(1)


def _http(method: str, url: str, body: Any = None, **headers: str) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in headers.items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=10) as resp:
        raw = resp.read()
        return json.loads(raw) if "json" in resp.headers.get("Content-Type", "") else raw.decode()


def _wait(what: str, check: Callable[[], bool], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {limit} s")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Stack:
    switchboard: str
    prometheus: str
    logs: Path
    expected_sl: float
    expected_abandon: float

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = self.prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        reply = _http("GET", url)
        assert reply["status"] == "success", reply
        result: list[dict[str, Any]] = reply["data"]["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


def _traffic(base: str) -> tuple[float, float]:
    """Contacts with known outcomes; returns (service level, abandon rate) computed here."""

    def contact() -> tuple[dict[str, Any], float]:
        key = f"prom-{next(_keys)}"
        body = {"channel": "voice"}
        return _http("POST", base + "/v1/contacts", body, **{"Idempotency-Key": key}), time.time()

    for agent in ("a1", "a2"):
        doc = {"name": agent, "skills": {"billing": 1}, "capacity": {"voice": 1}}
        _http("PUT", f"{base}/v1/agents/{agent}", doc)
        _http("POST", f"{base}/v1/agents/{agent}/state", {"state": "available"})
    waits: list[float] = []
    abandoned = 0
    c1, t1 = contact()
    c2, t2 = contact()
    for c, t in ((c1, t1), (c2, t2)):
        _http("POST", f"{base}/v1/reservations/{c['reservation_id']}/accept")
        waits.append(time.time() - t)
    c3, t3 = contact()
    c4, _ = contact()
    assert (c3["status"], c4["status"]) == ("queued", "queued")
    _http("POST", f"{base}/v1/contacts/{c4['id']}/abandon")  # left early
    abandoned += 1
    time.sleep(THRESHOLD + 0.5)
    _http("POST", f"{base}/v1/contacts/{c1['id']}/complete", {})
    c3 = _http("GET", f"{base}/v1/contacts/{c3['id']}")
    assert c3["agent_id"] == "a1"
    _http("POST", f"{base}/v1/reservations/{c3['reservation_id']}/accept")
    waits.append(time.time() - t3)  # answered, but late
    c5, _ = contact()
    time.sleep(THRESHOLD + 0.5)
    _http("POST", f"{base}/v1/contacts/{c5['id']}/abandon")  # left after the threshold
    abandoned += 1
    within = sum(1 for w in waits if w <= THRESHOLD)
    assert within == 2  # the sleeps above are far from the threshold
    outcomes = len(waits) + abandoned
    return within / outcomes, abandoned / outcomes


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """switchboard serve + prometheus (1 s scrapes, the shipped rules), after the traffic."""
    prometheus = tool("prometheus")
    tmp = tmp_path_factory.mktemp("prom")
    (tmp / "routing.yaml").write_text(ROUTING)
    sb_port, prom_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(
        SWITCHBOARD_DATA_DIR=str(tmp / "data"),
        SWITCHBOARD_ADMIN_TOKEN=TOKEN,
        SWITCHBOARD_STATS_REFRESH_SECONDS="0.2",
        SWITCHBOARD_REDIS_FSYNC="everysec",
        SWITCHBOARD_LOG_FORMAT="json",
    )
    logs = tmp / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with (logs / "switchboard.log").open("wb") as out:
            args = ["serve", "--port", str(sb_port), "--config", str(tmp / "routing.yaml")]
            processes.append(
                subprocess.Popen(
                    [str(SWITCHBOARD), *args], env=env, cwd=tmp, stdout=out, stderr=out
                )
            )
        base = f"http://127.0.0.1:{sb_port}"
        _wait("switchboard ready", lambda: bool(_http("GET", base + "/readyz") is not None))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [
                str(PROMETHEUS_DIR / "switchboard-rules.yml"),
                str(PROMETHEUS_DIR / "switchboard-alerts.yml"),
            ],
            "scrape_configs": [
                {
                    "job_name": "switchboard",
                    "static_configs": [{"targets": [f"127.0.0.1:{sb_port}"]}],
                }
            ],
        }
        (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        with (logs / "prometheus.log").open("wb") as out:
            cmd = [
                prometheus,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ]
            processes.append(subprocess.Popen(cmd, cwd=tmp, stdout=out, stderr=out))
        stack = Stack(base, f"http://127.0.0.1:{prom_port}", logs, 0.0, 0.0)
        # two scrapes before any contact: every counter series is seen at 0 first
        _wait(
            "prometheus scraping",
            lambda: (stack.scalar('count_over_time(up{job="switchboard"}[1m])') or 0) >= 2,
        )
        stack.expected_sl, stack.expected_abandon = _traffic(base)
        yield stack
    finally:
        for process in reversed(processes):
            _stop(process)


def test_recorded_service_level_equals_the_contacts(stack: Stack) -> None:
    """Prometheus's recorded service levels (5m, 1h, today) equal the test's own figure."""
    assert stack.expected_sl == pytest.approx(0.4)
    billing = '{queue="billing"}'
    for rule in ("ratio5m", "ratio1h", "ratio_today"):
        name = f"switchboard:queue_service_level:{rule}{billing}"

        def settled(name: str = name) -> bool:
            got = stack.scalar(name)
            return got is not None and abs(got - stack.expected_sl) < 1e-9

        _wait(f"{name} == {stack.expected_sl}", settled)
    abandon = stack.scalar(f"switchboard:queue_abandon:ratio5m{billing}")
    assert abandon == pytest.approx(stack.expected_abandon)
    queue = _http("GET", stack.switchboard + "/v1/queues/billing")
    assert queue["service_level"] == pytest.approx(stack.expected_sl)


def test_recorded_speed_of_answer_counts_every_answered_contact(stack: Stack) -> None:
    """The 5m and 1h ASA (from the counters of this instance) equal today's (Redis's total wait
    / answered): every answered contact counts, the first one too, although its series only
    had contacts after Prometheus first saw it."""
    billing = '{queue="billing"}'
    today = stack.scalar(f"switchboard:queue_asa:seconds_today{billing}")
    answered = stack.scalar('switchboard_queue_today_contacts{queue="billing",outcome="answered"}')
    assert answered == 3
    assert today is not None
    assert today > 0
    for rule in ("seconds5m", "seconds1h"):
        name = f"switchboard:queue_asa:{rule}{billing}"

        def settled(name: str = name, today: float = today) -> bool:
            got = stack.scalar(name)
            return got is not None and abs(got - today) < 1e-9

        _wait(f"{name} == {today}", settled)
    segment = stack.scalar('switchboard:segment_asa:seconds5m{segment="standard"}')
    assert segment == pytest.approx(today, abs=1e-9)


def test_every_rule_evaluates_on_real_series(stack: Stack) -> None:
    """All shipped recording rules and alerts are loaded and evaluate without error."""

    def unhealthy() -> list[tuple[str, str, str]]:
        reply = _http("GET", stack.prometheus + "/api/v1/rules")
        rules = [r for g in reply["data"]["groups"] for r in g["rules"]]
        assert len(rules) > 30
        return [
            (r["name"], r["health"], r.get("lastError", "")) for r in rules if r["health"] != "ok"
        ]

    with contextlib.suppress(AssertionError):
        _wait("rules evaluated", lambda: not unhealthy(), limit=10)
    assert not unhealthy()
    reply = _http("GET", stack.prometheus + "/api/v1/rules?type=alert")
    alerts = {r["name"] for g in reply["data"]["groups"] for r in g["rules"]}
    assert len(alerts) == 7
    assert stack.scalar("switchboard_redis_up") == 1.0


def test_every_dashboard_query_runs(stack: Stack) -> None:
    """Each Grafana panel query parses and runs against the live Prometheus."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for expr in exprs:
        stack.query(expr.replace("$tenant", ".*").replace("$queue", ".*"))
    assert stack.query('switchboard:queue_waiting:max{queue="billing"}')


def test_promtool_accepts_served_metrics(stack: Stack) -> None:
    """promtool check metrics finds nothing to complain about in the served /metrics."""
    text = _http("GET", stack.switchboard + "/metrics")
    result = promtool_check_metrics(tool("promtool"), text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip(), result.stdout
