"""Typed keys of everything the app factory puts on the aiohttp application."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from config.settings import Settings
from router.auth import Authenticator
from router.hub import Hub
from router.presence import Presence
from router.reloads import ConfigReloads
from router.service import Service
from router.sockets import Senders
from router.timers import TimerLoop

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", CollectorRegistry)
REDIS = web.AppKey("redis", Redis)
SERVICE = web.AppKey("service", Service)
AUTH = web.AppKey("auth", Authenticator)
HUB = web.AppKey("hub", Hub)
TIMERS = web.AppKey("timers", TimerLoop)
PRESENCE = web.AppKey("presence", Presence)
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("sockets")
SENDERS = web.AppKey("senders", Senders)
CLOSING = web.AppKey("closing", asyncio.Event)
CONFIG_PATH = web.AppKey("config_path", str)
RELOADS = web.AppKey("reloads", ConfigReloads)
