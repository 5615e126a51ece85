"""The embedded default: contacts survive a restart, and ``switchboard serve`` as a process.

``serve`` runs as a real subprocess with only environment variables and flags, the way the
README starts it: it answers /readyz, stops on SIGTERM with exit code 0 after closing agent
sockets with GOING_AWAY, leaves no redis-server behind, and never prints a token.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import aiohttp
from pytest_aiohttp import AiohttpClient

from router.app import create_app
from tests.router.conftest import (
    GATEWAY,
    SWITCHBOARD,
    Api,
    Served,
    SettingsFactory,
    http,
)

ADMIN_TOKEN = "serve-admin-3c1d9f0b"


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_queued_contacts_survive_a_restart(
    aiohttp_client: AiohttpClient, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """Contacts queued before a full stop are queued after it, in the same places."""
    settings = make_settings(redis_url="", data_dir=tmp_path / "var")
    first = Api(await aiohttp_client(create_app(settings)), settings.default_tenant)
    made = [await first.contact(key=f"k{i}", intent=intent)
            for i, intent in enumerate(["billing", "cancel", "billing"])]  # fmt: skip
    before = {c["id"]: (c["status"], c["position"], c["queue"]) for c in made}
    assert list(before.values()) == [
        ("queued", 1, "billing"),
        ("queued", 1, "retention"),
        ("queued", 2, "billing"),
    ]
    await first.client.close()  # stops the app and its embedded redis-server

    second = Api(await aiohttp_client(create_app(settings)), settings.default_tenant)
    for contact_id, expected in before.items():
        now = await second.get(f"/v1/contacts/{contact_id}")
        assert (now["status"], now["position"], now["queue"]) == expected
    replay = await second.call(
        "POST",
        "/v1/contacts",
        {"channel": "voice", "intent": "billing"},
        token=GATEWAY,
        headers={"Idempotency-Key": "k0"},
    )
    assert (replay.status, replay.body["id"]) == (200, made[0]["id"])
    assert (await second.get("/v1/queues/billing"))["waiting"] == 2
    # the data (customers' numbers, the agent-token signing key) is this user's alone
    data = settings.data_dir
    assert data.stat().st_mode & 0o777 == 0o700
    for path in data.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


def test_serve_starts_with_no_settings_at_all(
    serve_child: Callable[..., Served], tmp_path: Path
) -> None:
    """The README's first command: no setting, so the embedded Redis lives in ./var of the
    working directory (a relative data dir used to stop redis-server from starting: it looked
    for var/var/redis.log)."""
    served = serve_child({})
    assert "an embedded Redis in var" in served.output()
    assert (tmp_path / "var" / "redis.sock").exists()
    assert http("GET", served.url + "/healthz")[0] == 200


async def test_serve_runs_and_stops_cleanly(
    serve_child: Callable[..., Served], tmp_path: Path
) -> None:
    """serve answers, SIGTERM closes sockets (1001) and exits 0, and its redis-server is gone."""
    served = serve_child(
        {"SWITCHBOARD_DATA_DIR": str(tmp_path / "var"), "SWITCHBOARD_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    assert "switchboard listening on http://127.0.0.1:" in served.output()
    assert (tmp_path / "var" / "redis.sock").exists()
    redis_pids = children(served.process.pid)
    assert len(redis_pids) == 1
    assert "redis-server" in cmdline(redis_pids[0])

    url = served.url
    status, agent = http("PUT", f"{url}/v1/agents/ann", {"name": "Ann"}, ADMIN_TOKEN)
    assert (status, agent["state"]) == (201, "offline")
    status, minted = http("POST", f"{url}/v1/agents/ann/tokens", token=ADMIN_TOKEN)
    assert status == 201
    token = minted["token"]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{url}/v1/agents/ann/ws?access_token={token}")
        assert (await ws.receive_json())["type"] == "state"
        served.process.send_signal(signal.SIGTERM)
        closing = await ws.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
        await ws.close()
    assert await asyncio.to_thread(served.process.wait, 15) == 0
    assert not alive(redis_pids[0])
    output = served.output()
    assert "Traceback" not in output
    for secret in (ADMIN_TOKEN, token, token.rsplit(".", 1)[1]):
        assert secret not in output


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    """serve --config with an invalid file exits 2 naming the problem, starting nothing."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("queues: []\nrules: [{name: x, steps: [{queue: nowhere}]}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["SWITCHBOARD_DATA_DIR"] = str(tmp_path / "var")
    done = subprocess.run(
        [str(SWITCHBOARD), "serve", "--port", "0", "--config", str(bad)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "nowhere" in done.stderr
    assert not (tmp_path / "var").exists()


def test_serve_refuses_bad_settings_in_one_line_each(tmp_path: Path) -> None:
    """Bad SWITCHBOARD_ variables stop serve with exit 2 and one line per variable naming it,
    no traceback, and no token in the output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["SWITCHBOARD_DATA_DIR"] = str(tmp_path / "var")
    cases = [
        ({"SWITCHBOARD_TOKENS": '{"tok-9f3e": "agent:acme"}'}, ["SWITCHBOARD_TOKENS: "]),
        ({"SWITCHBOARD_TOKENS": "not json"}, ["SWITCHBOARD_TOKENS: not valid JSON"]),
        (
            {"SWITCHBOARD_MAX_BODY_BYTES": "lots", "SWITCHBOARD_DEFAULT_TENANT": "a:b"},
            ["SWITCHBOARD_DEFAULT_TENANT: ", "SWITCHBOARD_MAX_BODY_BYTES: "],
        ),
    ]
    for extra, lines in cases:
        done = subprocess.run(
            [str(SWITCHBOARD), "serve", "--port", "0"],
            env=env | extra,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2, done.stderr
        got = done.stderr.splitlines()
        assert len(got) == len(lines), done.stderr
        for line, start in zip(sorted(got), lines, strict=True):
            assert line.startswith("switchboard: " + start)
        assert "Traceback" not in done.stderr
        assert "tok-9f3e" not in done.stderr
    assert not (tmp_path / "var").exists()
