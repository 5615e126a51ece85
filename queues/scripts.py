"""Loads the Lua scripts: generated prelude (keys, codes) + lib.lua + the script's own file."""

from __future__ import annotations

from functools import cache
from importlib import resources

from queues.errors import lua_codes
from queues.keys import lua_prelude

SCRIPT_NAMES = (
    "enqueue_contact",
    "accept_reservation",
    "reject_reservation",
    "timeout_offer",
    "abandon_contact",
    "complete_contact",
    "end_wrapup",
    "advance_step",
    "request_callback",
    "release_callback",
    "set_agent_state",
    "upsert_agent",
    "claim_timers",
    "contact_status",
    "agent_status",
    "queue_snapshot",
    "list_agents",
    "agent_offers",
    "resolve_customer",
    "upsert_customer",
    "customer_history",
)


def _read(name: str) -> str:
    return (resources.files("queues") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@cache
def sources() -> dict[str, str]:
    """Each script's full source, as sent to Redis."""
    head = lua_prelude() + lua_codes() + _read("lib")
    return {name: f"{head}\n-- ---- {name}.lua\n{_read(name)}" for name in SCRIPT_NAMES}
