"""``switchboard loadtest`` (api-v1 §7) through the real CLI against a real ``serve``, plus the
pure parts of the generator (schedule, mix, loss and double-offer bookkeeping)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from benchmarks import e2e
from queues.embedded import EmbeddedRedis
from simulations.loadgen_plan import (
    DEFAULT_MIX,
    MixInvalid,
    agent_profile,
    arrivals,
    customers,
    parse_mix,
)
from simulations.loadgen_track import GRACE_SECONDS, Tracker

BIN = Path(sys.executable).parent
TOKEN = "loadtest-admin-token"
PERCENTILES = {"p50", "p90", "p99", "max"}


def _serve(
    tmp_path: Path, name: str, redis_url: str, extra: dict[str, str] | None = None
) -> Generator[str, None, None]:
    env = {
        "SWITCHBOARD_DATA_DIR": str(tmp_path / name),
        "SWITCHBOARD_ADMIN_TOKEN": TOKEN,
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_LOG_LEVEL": "warning",
        **(extra or {}),
    }
    with e2e.server([str(BIN / "switchboard"), "serve"], env, tmp_path / f"{name}.log") as (url, _):
        yield url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server for this test alone, stopped by the test even if ``serve`` is killed."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def server(tmp_path: Path, own_redis: str) -> Iterator[str]:
    """``switchboard serve`` on a free port, its data dir in ``tmp_path``."""
    yield from _serve(tmp_path, "a", own_redis)


def _loadtest(*args: str, timeout: float = 40.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "switchboard"), "loadtest", "--token", TOKEN, "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _check_shape(result: dict[str, object]) -> None:
    for key in ("sent", "routed", "errors"):
        assert isinstance(result[key], int)
    assert isinstance(result["throughput_per_second"], float | int)
    for key in ("create_ms", "offer_ms", "accept_ms"):
        summary = result[key]
        assert isinstance(summary, dict)
        assert set(summary) == PERCENTILES
        assert all(isinstance(v, float) for v in summary.values())
        assert summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["max"]


def test_cli_drives_a_live_server_and_reports_the_section_7_json(
    server: str, tmp_path: Path
) -> None:
    """A short run routes every contact once: §7 JSON shape, no errors, none lost, exit 0."""
    out = tmp_path / "load.json"
    done = _loadtest(
        "--url", server, "--rate", "15", "--agents", "10", "--duration", "3",
        "--handle-time", "0.05:0.2", "--customers", "50", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    _check_shape(result)
    assert result["sent"] > 10
    assert result["errors"] == 0
    assert result["lost"] == 0
    assert result["double_offers"] == 0
    assert result["routed"] == result["sent"]
    assert result["accepted"] == result["sent"]
    assert "offer (arrival→socket)" in done.stdout


def test_cli_json_to_stdout_is_json_alone(server: str, tmp_path: Path) -> None:
    """`--json -` puts the JSON alone on stdout (the table on stderr), as simulate and staff
    do; it used to write a file named '-'."""
    done = subprocess.run(
        [str(BIN / "switchboard"), "loadtest", "--token", TOKEN, "--no-progress",
         "--url", server, "--rate", "10", "--agents", "5", "--duration", "1",
         "--handle-time", "0.05:0.1", "--customers", "10", "--json", "-"],
        capture_output=True, text=True, timeout=40, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    _check_shape(json.loads(done.stdout))
    assert "offer (arrival→socket)" in done.stderr
    assert not (tmp_path / "-").exists()


def test_plan_holds_a_few_hundred_bytes_per_arrival() -> None:
    """The plan built before a run keeps each request body at its own size: orjson's bytes
    held its 4 KB buffer, 4 GB for a million arrivals on the machine under test."""
    pool = customers(100, DEFAULT_MIX["segment"])
    tracemalloc.start()
    try:
        plan = arrivals(200.0, 100.0, 1, DEFAULT_MIX, pool, "lt1-abcd")
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(plan) > 19_000
    assert held / len(plan) < 1000


def test_two_instances_on_one_redis_lose_nothing(tmp_path: Path, own_redis: str) -> None:
    """Sockets on one instance, POSTs to another: every offer crosses over, none twice."""
    a = _serve(tmp_path, "a", own_redis)
    b = _serve(tmp_path, "b", own_redis)
    try:
        url_a, url_b = next(a), next(b)
        out = tmp_path / "two.json"
        done = _loadtest(
            "--url", url_a, "--ws-url", url_b, "--rate", "15", "--agents", "10",
            "--duration", "2", "--handle-time", "0.05:0.2", "--customers", "20",
            "--seed", "7", "--json", str(out),
        )  # fmt: skip
    finally:
        a.close()
        b.close()
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["errors"] == result["lost"] == result["double_offers"] == 0
    assert result["routed"] == result["sent"] > 5


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop not installed")
def test_serve_on_uvloop_routes_every_contact(tmp_path: Path, own_redis: str) -> None:
    """SWITCHBOARD_EVENT_LOOP=uvloop: the same run, on uvloop, routes everything once."""
    served = _serve(tmp_path, "uv", own_redis, {"SWITCHBOARD_EVENT_LOOP": "uvloop"})
    try:
        out = tmp_path / "uv.json"
        done = _loadtest(
            "--url", next(served), "--rate", "15", "--agents", "10", "--duration", "2",
            "--handle-time", "0.05:0.2", "--customers", "20", "--json", str(out),
        )  # fmt: skip
    finally:
        served.close()
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["errors"] == result["lost"] == result["double_offers"] == 0
    assert result["routed"] == result["sent"] > 5


@pytest.mark.slow
def test_e2e_benchmark_quick_mode_writes_its_json(tmp_path: Path, repo_root: Path) -> None:
    """``benchmarks/e2e.py --quick``: every part runs once and the JSON names the machine."""
    out = tmp_path / "e2e.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.e2e", "--quick", "--out", str(out)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=55,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert {"cpu", "cores", "python", "redis_server", "packages"} <= set(result["machine"])
    kinds = {run["kind"] for run in result["runs"]}
    assert kinds == {"switchboard", "ceiling", "two-instances"}
    for run in result["runs"]:
        assert run["errors"] == run["lost"] == run["double_offers"] == 0
        assert run["sent"] > 0
    assert "ratio_to_ceiling" in result["summary"]


def test_unreachable_server_is_exit_code_2() -> None:
    """Nothing listening: a one-line reason on stderr and exit code 2, no traceback."""
    done = _loadtest(
        "--url", f"http://127.0.0.1:{e2e.free_port()}", "--rate", "5", "--agents", "1",
        "--duration", "1",
    )  # fmt: skip
    assert done.returncode == 2
    assert "loadtest:" in done.stderr
    assert "Traceback" not in done.stderr


def test_arrivals_are_a_seeded_poisson_schedule() -> None:
    """Same seed, same schedule; the count is near rate x duration; bodies follow the mix."""
    pool = customers(100, DEFAULT_MIX["segment"])
    first = arrivals(200.0, 20.0, 3, DEFAULT_MIX, pool, "r")
    again = arrivals(200.0, 20.0, 3, DEFAULT_MIX, pool, "r")
    assert [a.offset for a in first] == [a.offset for a in again]
    assert abs(len(first) - 4000) < 4 * 4000**0.5  # Poisson: sd = sqrt(mean)
    assert all(0 < a.offset < 20.0 for a in first)
    assert [a.offset for a in first] == sorted(a.offset for a in first)
    assert len({a.key for a in first}) == len(first)
    voice = sum(a.channel == "voice" for a in first) / len(first)
    assert 0.55 < voice < 0.65
    chat = json.loads(next(a.body for a in first if a.channel == "chat"))
    assert chat["from"].startswith("lt-")


def test_mix_overrides_and_rejects_nonsense() -> None:
    """A --mix part replaces that dimension only; unknown dimensions and bad weights fail."""
    mix = parse_mix("channel:email=1; language:es=1")
    assert mix["channel"] == {"email": 1.0}
    assert mix["language"] == {"es": 1.0}
    assert mix["intent"] == DEFAULT_MIX["intent"]
    for bad in ("colour:red=1", "channel:voice", "channel:voice=-1", "channel:voice=0"):
        with pytest.raises(MixInvalid):
            parse_mix(bad)


def test_agent_profiles_cover_every_demo_queue() -> None:
    """Across a few agents, every demo queue (incl. Spanish and retention) has members."""
    import random

    rng = random.Random(1)
    skills = [agent_profile(i, rng)["skills"] for i in range(6)]
    assert all(s["billing"] >= 1 and s["support"] >= 1 and s["sales"] >= 1 for s in skills)
    assert any(s.get("spanish", 0) >= 5 for s in skills)
    assert any(s.get("retention", 0) >= 3 for s in skills)


def test_tracker_counts_a_second_live_offer_as_a_double_offer() -> None:
    """Two live reservations for one contact count; a prompt rescind of the first does not."""
    tracker = Tracker()
    tracker.created("c1", 0.0, 0.001)
    tracker.offered_to("c1", "r1", "a1", 0.002)
    tracker.offered_to("c1", "r2", "a2", 1.0)
    assert tracker.double_offers() == 1
    tracker.rescinded("r1", 1.0 + GRACE_SECONDS / 2)  # crossed on the wire: forgiven
    assert tracker.double_offers() == 0
    tracker.accept_done("r2", 0.001)
    tracker.accept_done("r1", 0.001)  # two accepts succeeding is always a double
    assert tracker.double_offers() == 1


def test_tracker_measures_offers_that_beat_their_201() -> None:
    """An offer seen before the 201 is timed from the arrival's scheduled time all the same."""
    tracker = Tracker()
    tracker.offered_to("c1", "r1", "a1", 10.004)
    tracker.created("c1", 10.0, 10.006)
    assert tracker.routed == 1
    assert tracker.unrouted() == []
    assert tracker.offer.summary()["max"] == pytest.approx(4.0, rel=0.01)
    assert tracker.create.summary()["max"] == pytest.approx(6.0, rel=0.01)
