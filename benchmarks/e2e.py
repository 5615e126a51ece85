"""End-to-end benchmark (issue 7): ``switchboard serve`` on a real Redis, driven by the loadtest.

One redis-server (no persistence) serves every run; before each run it is flushed and a fresh
``switchboard serve`` subprocess is started on it, so runs do not see each other. The load
generator (``simulations.loadtest``) runs in this process: loader, server and Redis share the
machine, as the targets require. In the same run it measures:

* Switchboard at several rates with 500 agents, and at 200/s with 10,000 agents;
* the ceiling: a bare aiohttp app doing one trivial EVALSHA (``return 1``) per POST, driven by
  the same generator (POSTs only), at rising rates;
* the highest sustained rate of each, meaning no errors and p99 <= 50 ms (Switchboard: arrival
  -> offer on the agent's socket; the ceiling: arrival -> 201), refined by bisection;
* two instances on one Redis (agents' sockets on one, POSTs to the other);
* the embedded default (append-only file, ``appendfsync always``) at 200/s.

    python -m benchmarks.e2e            # the full run, several minutes
    python -m benchmarks.e2e --quick    # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

from queues.embedded import EmbeddedRedis, find_redis_server, server_version
from router.fastredis import serve_client
from router.serve import event_loop
from simulations.loadgen_agents import Behaviour
from simulations.loadtest import LoadConfig, run_sync

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
TOKEN = "bench-" + secrets.token_hex(8)
P99_LIMIT_MS = 50.0
RATES = [100.0, 200.0, 400.0, 600.0, 800.0, 1000.0, 1200.0, 1500.0]
CEILING = [400.0, 800.0, 1600.0, 2500.0, 4000.0, 6000.0, 8000.0, 10000.0, 12000.0, 16000.0]
ALWAYS_RATE = 200.0  # the targets' rate is measured even when a lower rate already failed
PARTS = ("sweep", "big", "ceiling", "two", "embedded")
#: parts run only when named in --only (the ceiling on a plain redis-py pool, as runs before
#: 2026-11-24 measured it)
EXTRA_PARTS = ("ceiling-redis-py",)
#: agents answer fast and briefly, so agent capacity is not what limits the rate
BEHAVIOUR = Behaviour(accept_delay=(0.005, 0.02), handle_time=(0.1, 0.3))
PACKAGES = ("aiohttp", "redis", "hiredis", "orjson", "hdrhistogram", "uvloop")
Row = dict[str, Any]


# --------------------------------------------------------------------------- the ceiling


def bare_app(redis_url: str, token: str, client: str = "serve") -> web.Application:
    """POST /v1/contacts: check the token, parse the body, one EVALSHA, answer 201.

    ``client`` ``serve``: the Redis client ``switchboard serve`` uses (scripts pipelined on one
    connection); ``redis-py``: redis-py on a blocking pool of up to 64 connections.
    """
    client_key = web.AppKey("client", Redis)
    sha_key = web.AppKey("sha", str)
    expected = f"Bearer {token}"

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        if client == "serve":  # its EVALSHA is as cheap as the server's
            app[client_key] = serve_client(redis_url)
        else:
            pool = BlockingConnectionPool.from_url(redis_url, max_connections=64, timeout=30)
            app[client_key] = Redis(connection_pool=pool)
        app[sha_key] = await app[client_key].script_load("return 1")
        yield
        await app[client_key].aclose()

    async def create(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != expected:
            return web.json_response({"title": "unauthorized"}, status=401)
        body = orjson.loads(await request.read())
        await request.app[client_key].evalsha(request.app[sha_key], 0)
        out = {"id": "c" + secrets.token_hex(8), "channel": body.get("channel")}
        return web.Response(body=orjson.dumps(out), status=201, content_type="application/json")

    async def put(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response({})

    async def ready(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.cleanup_ctx.append(redis_ctx)
    app.router.add_post("/v1/contacts", create)
    app.router.add_put("/v1/customers/{id}", put)
    app.router.add_get("/readyz", ready)
    return app


# -------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux ``/proc``), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url + "/readyz", timeout=1.0) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} was not ready in {timeout} s")


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    """Run one server subprocess on a free port; yields (base URL, pid); SIGTERM at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        wait_ready(url, process)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


#: a source tree to run ``serve`` from instead of the installed one (A/B experiments)
SERVER_ROOT: Path | None = None
#: the loader's arrivals on its lean HTTP client (False: aiohttp's client, as before)
LEAN_HTTP = True


def serve_command() -> list[str]:
    if SERVER_ROOT is not None:
        code = (
            f"import sys; sys.path.insert(0, {str(SERVER_ROOT)!r}); "
            "from router.cli import main; sys.exit(main(['serve', *sys.argv[1:]]))"
        )
        return [sys.executable, "-c", code]
    return [str(BIN / "switchboard"), "serve"]


#: the event loop of every server of the run, Switchboard's and the ceiling's alike
SERVER_LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def serve_env(redis_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_DATA_DIR": str(data_dir),
        "SWITCHBOARD_ADMIN_TOKEN": TOKEN,
        "SWITCHBOARD_EVENT_LOOP": SERVER_LOOP,
    }


def bare_command(redis_url: str, client: str = "serve") -> list[str]:
    return [sys.executable, "-m", "benchmarks.e2e", "--bare", "--redis-url", redis_url, "--token",
            TOKEN, "--loop", SERVER_LOOP, "--bare-client", client]  # fmt: skip


# ------------------------------------------------------------------------------ runs


class Bench:
    def __init__(self, work: Path, redis: EmbeddedRedis, duration: float) -> None:
        self.work = work
        self.redis = redis
        self.duration = duration
        self.rows: list[Row] = []
        self.log = work / "servers.log"

    @property
    def redis_pid(self) -> int:
        return self.redis.process.pid if self.redis.process else -1

    def flush(self) -> None:
        import redis as sync_redis

        client = sync_redis.Redis(unix_socket_path=str(self.redis.socket_path))
        try:
            client.flushall()
        finally:
            client.close()

    def load(
        self, url: str, rate: float, agents: int, pids: dict[str, int], ws_url: str = ""
    ) -> Row:
        """One loadtest run, with the CPU each process spent during the arrivals and drain."""
        marks: dict[str, dict[str, float | None]] = {}

        def phase(name: str) -> None:
            marks[name] = {who: cpu_seconds(pid) for who, pid in pids.items()}
            marks[name]["loader"] = time.process_time()
            marks[name]["wall"] = time.monotonic()

        cfg = LoadConfig(
            url=url, token=TOKEN, rate=rate, agents=agents, duration=self.duration,
            ws_url=ws_url, progress=False, behaviour=BEHAVIOUR, phase=phase,
            lean_http=LEAN_HTTP,
        )  # fmt: skip
        result = run_sync(cfg)
        start, end = marks.get("start", {}), marks.get("end", {})
        wall = (end.get("wall") or 0.0) - (start.get("wall") or 0.0)
        cpu: Row = {"wall_seconds": round(wall, 3)}
        for who in [*pids, "loader"]:
            a, b = start.get(who), end.get(who)
            if a is None or b is None or wall <= 0:
                continue
            cpu[f"{who}_share"] = round((b - a) / wall, 3)  # 1.0 = one core busy
            if result["created"]:
                cpu[f"{who}_ms_per_contact"] = round((b - a) * 1000 / result["created"], 3)
        result["cpu"] = cpu
        return result

    def record(self, label: str, kind: str, result: Row) -> Row:
        metric = "create_ms" if kind.startswith("ceiling") else "offer_ms"
        p99 = result[metric]["p99"]
        result["label"], result["kind"], result["load"] = label, kind, os.getloadavg()[0]
        result["passed"] = bool(
            result["errors"] == 0
            and result["lost"] == 0
            and result["double_offers"] == 0
            # (Switchboard's runs: a run that left contacts in line measured a queue; the
            # ceiling's has no agents, and its unrouted is null)
            and not result.get("unrouted")
            and p99 is not None
            and p99 <= P99_LIMIT_MS
        )
        self.rows.append(result)
        print(_row(result), flush=True)
        return result

    def switchboard(self, rate: float, agents: int, label: str = "") -> Row:
        self.flush()
        env = serve_env(self.redis.url, self.work / "data")
        with server(serve_command(), env, self.log) as (url, pid):
            result = self.load(url, rate, agents, {"server": pid, "redis": self.redis_pid})
        return self.record(label or f"switchboard {agents} agents", "switchboard", result)

    def two_instances(self, rate: float, agents: int) -> Row:
        self.flush()
        env = serve_env(self.redis.url, self.work / "data")
        with (
            server(serve_command(), env, self.log) as (a, pa),
            server(serve_command(), env, self.log) as (b, pb),
        ):
            pids = {"server": pa, "server2": pb, "redis": self.redis_pid}
            result = self.load(a, rate, agents, pids, ws_url=b)
        return self.record(f"two instances {agents} agents", "two-instances", result)

    def embedded(self, rate: float, agents: int) -> Row:
        """The default ``serve``: its own redis-server with appendfsync always."""
        data = Path(tempfile.mkdtemp(dir=self.work, prefix="embedded-"))
        env = {**serve_env("", data), "SWITCHBOARD_REDIS_URL": ""}
        with server(serve_command(), env, self.log) as (url, pid):
            result = self.load(url, rate, agents, {"server": pid})
        return self.record(f"embedded fsync always {agents}", "embedded", result)

    def ceiling(self, rate: float, client: str = "serve") -> Row:
        self.flush()
        with server(bare_command(self.redis.url, client), {}, self.log) as (url, pid):
            result = self.load(url, rate, 0, {"server": pid, "redis": self.redis_pid})
        if client == "serve":
            return self.record("bare aiohttp+EVALSHA", "ceiling", result)
        return self.record("bare, redis-py pool", "ceiling-redis-py", result)

    def highest(self, measure: Callable[[float], Row], rates: list[float], steps: int) -> float:
        """Climb ``rates`` to the first failure, then bisect ``steps`` times between.

        Rates up to ``ALWAYS_RATE`` are measured whatever happens below them.
        """
        best, worst = 0.0, 0.0
        for rate in rates:
            if worst and rate > ALWAYS_RATE:
                break
            passed = measure(rate)["passed"]
            if passed and not worst:
                best = rate
            elif not passed and not worst:
                worst = rate
        for _ in range(steps if worst else 0):
            mid = round((best + worst) / 2 / 25) * 25
            if mid <= best or mid >= worst:
                break
            if measure(mid)["passed"]:
                best = mid
            else:
                worst = mid
        return best


def _ms(row: Row, key: str, q: str) -> str:
    value = row[key][q]
    return "-" if value is None else f"{value:.2f}"


def _cpu(row: Row, who: str) -> str:
    """CPU ms per contact of one process (the second instance's added to the first's)."""
    cpu = row.get("cpu", {})
    value = cpu.get(f"{who}_ms_per_contact")
    if value is None:
        return "-"
    if who == "server":
        value += cpu.get("server2_ms_per_contact", 0.0)
    return f"{value:.2f}"


def _row(r: Row) -> str:
    return (
        f"{r['label']:<32}{r['rate']:>7g}{r['agents']:>7}{r['sent']:>7}{r['routed']:>7}"
        f"{r['errors']:>5}{r['lost']:>5}{r['double_offers']:>5}{r['throughput_per_second']:>8.1f}"
        f"{_ms(r, 'create_ms', 'p50'):>8}{_ms(r, 'create_ms', 'p99'):>8}"
        f"{_ms(r, 'offer_ms', 'p50'):>8}{_ms(r, 'offer_ms', 'p99'):>8}"
        f"{_ms(r, 'accept_ms', 'p99'):>8}{_ms(r, 'send_lag_ms', 'p99'):>8}"
        f"{_cpu(r, 'server'):>7}{_cpu(r, 'redis'):>7}{_cpu(r, 'loader'):>7}"
        f"{r['load']:>6.2f} {'ok' if r['passed'] else 'FAIL'}"
    )


HEADER = (
    f"{'run':<32}{'rate':>7}{'agents':>7}{'sent':>7}{'routed':>7}{'err':>5}{'lost':>5}"
    f"{'dbl':>5}{'thru/s':>8}{'cr p50':>8}{'cr p99':>8}{'of p50':>8}{'of p99':>8}"
    f"{'ac p99':>8}{'lag99':>8}{'srv/c':>7}{'rds/c':>7}{'ldr/c':>7}{'load':>6}"
)


def machine() -> Row:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis_server": server_version(find_redis_server()),
        "packages": versions,
    }


def summarise(bench: Bench, best: float, ceiling: float) -> Row:
    def find(kind: str, rate: float, agents: int) -> Row | None:
        rows = [r for r in bench.rows if r["kind"] == kind and r["rate"] == rate]
        rows = [r for r in rows if r["agents"] == agents]
        return rows[0] if rows else None

    base = find("switchboard", 200, 500)
    big = find("switchboard", 200, 10_000)
    two = find("two-instances", 200, 500)
    out: Row = {"max_switchboard_per_second": best, "max_ceiling_per_second": ceiling}
    out["ratio_to_ceiling"] = round(best / ceiling, 3) if ceiling else None
    if base is not None:
        out["at_200_500"] = {"offer_ms": base["offer_ms"], "errors": base["errors"]}
        out["at_200_500"]["lost"] = base["lost"]
        out["target_200_500"] = bool(
            base["offer_ms"]["p99"] is not None
            and base["offer_ms"]["p99"] <= 5.0
            and base["offer_ms"]["p50"] <= 2.0
            and base["errors"] == 0
            and base["lost"] == 0
        )
    if base is not None and big is not None and base["offer_ms"]["p99"]:
        ratio = big["offer_ms"]["p99"] / base["offer_ms"]["p99"]
        out["ratio_10k_to_500_p99"] = round(ratio, 2)
        out["target_10k"] = ratio <= 1.5 and big["errors"] == 0 and big["lost"] == 0
    out["target_ceiling"] = bool(ceiling and best / ceiling >= 0.5)
    if two is not None:
        out["target_two_instances"] = two["lost"] == 0 and two["double_offers"] == 0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--out", default=None, help="JSON path (default results/e2e.json)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per run")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--bare-client", default="serve", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only", default="", help=f"comma list of {','.join(PARTS + EXTRA_PARTS)},base"
    )
    parser.add_argument("--server-root", default="", help="run serve from this source tree")
    parser.add_argument(
        "--loader-http",
        choices=("lean", "aiohttp"),
        default="lean",
        help="the loader's clients, HTTP and websocket (aiohttp: the earlier, costlier ones)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="raise the CPU priority of loader, server and Redis by N nice steps (root only):"
        " keeps other jobs on a shared machine from skewing the latencies",
    )
    args = parser.parse_args(argv)
    if args.bare:
        app = bare_app(args.redis_url, args.token, args.bare_client)
        web.run_app(app, port=args.port, print=None, access_log=None, loop=event_loop(args.loop))
        return 0
    global SERVER_ROOT, LEAN_HTTP
    LEAN_HTTP = args.loader_http == "lean"
    if args.priority:
        os.nice(-args.priority)  # inherited by every server and redis-server started below
    SERVER_ROOT = Path(args.server_root).resolve() if args.server_root else None
    quick = args.quick
    duration = args.duration or (1.5 if quick else 10.0)
    parts = set(args.only.split(",")) if args.only else set(PARTS)
    out = Path(args.out or RESULTS / ("e2e-quick.json" if quick else "e2e.json"))
    best = ceiling = 0.0
    extra: Row = {}
    with tempfile.TemporaryDirectory(prefix="sb-e2e-") as tmp:
        work = Path(tmp)
        redis = EmbeddedRedis(work / "redis", persistent=False)
        redis.start()
        bench = Bench(work, redis, duration)
        started = time.monotonic()
        load_before = os.getloadavg()
        print(HEADER, flush=True)
        agents, rates, up = (20, [50.0], [100.0]) if quick else (500, RATES, CEILING)
        try:
            if "base" in parts and "sweep" not in parts:
                bench.switchboard(rates[-1] if quick else 200.0, agents)
            if "sweep" in parts:
                best = bench.highest(
                    lambda r: bench.switchboard(r, agents), rates, 0 if quick else 2
                )
            if "big" in parts and not quick:
                bench.switchboard(200, 10_000)
            if "ceiling" in parts:
                ceiling = bench.highest(bench.ceiling, up, 0 if quick else 2)
            if "ceiling-redis-py" in parts:
                redis_py = partial(bench.ceiling, client="redis-py")
                extra["max_ceiling_redis_py_per_second"] = bench.highest(
                    redis_py, up, 0 if quick else 2
                )
            if "two" in parts:
                bench.two_instances(rates[0] if quick else 200.0, agents)
            if "embedded" in parts and not quick:
                bench.embedded(200, agents)
        finally:
            redis.stop()
    summary = {**summarise(bench, best, ceiling), **extra}
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "duration_seconds": duration,
        "p99_limit_ms": P99_LIMIT_MS,
        "machine": machine(),
        "load_average_before": load_before,
        "niceness": os.nice(0),
        "server_loop": SERVER_LOOP,
        "loader_http": "lean" if LEAN_HTTP else "aiohttp",
        "load_average_after": os.getloadavg(),
        "elapsed_seconds": round(time.monotonic() - started, 1),
        "summary": summary,
        "runs": bench.rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
