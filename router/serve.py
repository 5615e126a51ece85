"""``switchboard serve``: settings from the environment, flags on top, then run until a signal.

SIGTERM and SIGINT shut down cleanly: websockets are closed with GOING_AWAY, background tasks
stop, and an embedded redis-server is stopped after flushing its append-only file.
The event loop is uvloop when it is installed (``SWITCHBOARD_EVENT_LOOP=auto``, the default),
or asyncio's own (``asyncio``); ``uvloop`` insists on uvloop. Survivors of full garbage
collections are frozen (``SWITCHBOARD_GC_FREEZE``), so that with thousands of sockets a full
collection does not stop the loop for hundreds of milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import re
import secrets
import sys
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from pydantic_settings import SettingsError

from config.routing import ConfigInvalid
from config.settings import Settings
from router import logs
from router.app import create_app
from router.runner import run


def event_loop(name: str) -> asyncio.AbstractEventLoop | None:
    """A new loop of the configured kind; None means asyncio's default.

    ``auto`` is uvloop when it can be imported. Raises ImportError for ``uvloop`` without it.
    """
    if name in ("uvloop", "auto"):
        try:
            module = importlib.import_module("uvloop")
        except ImportError:
            if name == "uvloop":
                raise
            return None
        loop: asyncio.AbstractEventLoop = module.new_event_loop()
        return loop
    return None


class GcFreezer:
    """A ``gc.callbacks`` hook: freeze what survives each full (generation 2) collection.

    Survivors of a full collection are long-lived (sockets, tasks, config, caches); frozen, the
    next full collections skip them, which at 10,000 agents cuts their pauses several-fold.
    Frozen objects are never collected, so every ``unfreeze_every``-th full collection first
    unfreezes everything: garbage cycles among once-frozen objects (closed sockets) are then
    collected after all.
    """

    def __init__(self, unfreeze_every: int = 20) -> None:
        self.unfreeze_every = unfreeze_every
        self.full = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self.full += 1
            if self.unfreeze_every and self.full % self.unfreeze_every == 0:
                gc.unfreeze()
        elif phase == "stop":
            gc.freeze()

    def install(self) -> None:
        """Hook into the collector; what exists now (modules, config) is frozen at once.

        Objects that outlive a young collection are moved on to the oldest generation at the
        next one (generation 1 is collected every other time): with thousands of sockets,
        each waiting for its next frame in a chain of futures and coroutines that lives for
        seconds, a middle generation that piles them up for ten young collections is what
        made the long pauses, and their frozen survivors cost nothing after that.
        """
        if self not in gc.callbacks:
            gc.callbacks.append(self)
        young, _, old = gc.get_threshold()
        gc.set_threshold(young, 1, old)
        gc.collect()
        gc.freeze()

    def periodic(self, app: web.Application, seconds: float) -> None:
        """Run a full collection every ``seconds`` while ``app`` runs.

        The collector's own full collections wait until a quarter as many objects as survived
        the last one have been promoted since: with everything frozen after each, that is a
        quarter of the whole heap, and the collection that finally comes stops the loop for
        tens of milliseconds (10,000 sockets). Frequent ones each see only what was promoted
        in the last ``seconds``, so they stay short.
        """

        async def collect() -> None:
            while True:
                await asyncio.sleep(seconds)
                gc.collect(2)

        async def start(app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(collect(), name="gc")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.cleanup_ctx.append(start)

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self)


def settings_problems(exc: ValidationError | SettingsError) -> list[str]:
    """One line per bad setting, naming its env var, without the value given (it may be a
    token or a key)."""
    if isinstance(exc, SettingsError):
        # pydantic-settings could not parse a JSON-valued variable: its message names the field
        named = re.search(r'field "(\w+)"', str(exc))
        name = f"SWITCHBOARD_{named.group(1).upper()}" if named else "a SWITCHBOARD_ variable"
        return [f"{name}: not valid JSON"]
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"SWITCHBOARD_{field.upper()}" if field else "settings"
        msg = error["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {msg}")
    return lines


def serve(args: argparse.Namespace) -> int:
    overrides = {
        name: value
        for name, value in (("host", args.host), ("port", args.port), ("config", args.config))
        if value is not None
    }
    try:
        settings = Settings(**overrides)
    except (ValidationError, SettingsError) as exc:
        for line in settings_problems(exc):
            print(f"switchboard: {line}", file=sys.stderr)
        return 2
    key = settings.log_hash_key or settings.secret_key
    logs.configure(
        key.get_secret_value().encode() if key else secrets.token_bytes(32),
        settings.log_format,
        settings.log_level,
    )
    try:
        loop = event_loop(settings.event_loop)
    except ImportError:
        print("SWITCHBOARD_EVENT_LOOP=uvloop needs the uvloop package installed", file=sys.stderr)
        return 2
    try:
        app = create_app(settings)
    except ConfigInvalid as exc:
        print(exc, file=sys.stderr)
        return 2
    if settings.gc_freeze:
        freezer = GcFreezer(settings.gc_unfreeze_every)
        freezer.install()
        if settings.gc_collect_seconds > 0:
            freezer.periodic(app, settings.gc_collect_seconds)
    where = "an embedded Redis in " + str(settings.data_dir) if not settings.redis_url else "Redis"
    with asyncio.Runner(loop_factory=(lambda: loop) if loop is not None else None) as runner:
        runner.run(
            run(
                app,
                settings.host,
                settings.port,
                lambda: print(
                    f"switchboard listening on http://{settings.host}:{settings.port} ({where})",
                    flush=True,
                ),
                access_log=None,
                keepalive_timeout=75.0,  # web.run_app's
                shutdown_timeout=5.0,
            )
        )
    return 0
