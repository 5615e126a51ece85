"""``switchboard serve``: settings from the environment, flags on top, then run until a signal.

SIGTERM and SIGINT shut down cleanly: websockets are closed with GOING_AWAY, background tasks
stop, and an embedded redis-server is stopped after flushing its append-only file.
``SWITCHBOARD_EVENT_LOOP=uvloop`` runs on uvloop (an optional package) instead of asyncio's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import secrets
import sys

from aiohttp import web

from config.routing import ConfigInvalid
from config.settings import Settings
from router import logs
from router.app import create_app


def event_loop(name: str) -> asyncio.AbstractEventLoop | None:
    """A new loop of the configured kind; None means asyncio's default. Raises ImportError."""
    if name == "uvloop":
        loop: asyncio.AbstractEventLoop = importlib.import_module("uvloop").new_event_loop()
        return loop
    return None


def serve(args: argparse.Namespace) -> int:
    overrides = {
        name: value
        for name, value in (("host", args.host), ("port", args.port), ("config", args.config))
        if value is not None
    }
    settings = Settings(**overrides)
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
    where = "an embedded Redis in " + str(settings.data_dir) if not settings.redis_url else "Redis"
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=lambda _: print(
            f"switchboard listening on http://{settings.host}:{settings.port} ({where})",
            flush=True,
        ),
        access_log=None,
        shutdown_timeout=5.0,
        loop=loop,
    )
    return 0
