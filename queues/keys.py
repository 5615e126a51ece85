"""Every Redis key Switchboard uses, defined once for Python and for the Lua scripts.

Keys are ``sb:{tenant}:<suffix>``. The hash tag ``{tenant}`` puts every key of a tenant in one
Redis Cluster slot, so each script touches a single slot. Scripts receive the tenant prefix as
``KEYS[1]`` and build the other keys with expressions rendered from ``TEMPLATES`` below
(``lua_key``), so the two languages cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Final

ROOT: Final = "sb"

#: name -> suffix template; ``<part>`` placeholders are filled with ids.
TEMPLATES: Final[dict[str, str]] = {
    "seq": "seq",
    "events": "ev",
    "timers": "timers",
    "agents": "agents",
    "identities": "ids",
    "signing_key": "signing-key",
    "contact": "c:<contact>",
    "idempotency": "idem:<key>",
    "reservation": "r:<reservation>",
    # an agent's hash also holds its pending offers: fields "o:<reservation>" (see lib.lua)
    "agent": "a:<agent>",
    "agent_declined": "a:<agent>:declined",
    "agent_waiting": "a:<agent>:w:<channel>",
    # presence: the agent's sockets per instance, and each instance's agents and liveness
    "agent_sockets": "a:<agent>:socks",
    "instances": "inst",
    "instance_agents": "inst:<instance>",
    "queue_waiting": "q:<queue>:w:<channel>",
    "queue_free": "q:<queue>:f:<channel>",
    "queue_age": "q:<queue>:age",
    "queue_held": "q:<queue>:held",
    "queue_members": "q:<queue>:members",
    "queue_staffing": "q:<queue>:staffing",
    "queue_channels": "q:<queue>:chans",
    # the staffing counters of data layout 0, which upgrade_layout.lua replaces and deletes
    "queue_staffed": "q:<queue>:staffed",
    "queue_signed_in": "q:<queue>:on",
    # the tenant's data layout (upgrade_layout.lua): absent before layout 1
    "layout": "layout",
    "queue_stats": "q:<queue>:stats",
    "customer": "cu:<customer>",
    "customer_history": "cu:<customer>:h",
    "messages": "msg",
}

# Ids become parts of keys and of timer members ("kind|id|n"), so they may not contain the
# separators ':' '|' nor the hash-tag braces.
ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,127}$"
TENANT_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_ID = re.compile(ID_PATTERN)
_TENANT = re.compile(TENANT_PATTERN)
_PART = re.compile(r"<(\w+)>")


def valid_id(value: str) -> bool:
    """True when ``value`` may be used as a contact, agent, queue or customer id."""
    return _ID.fullmatch(value) is not None


def valid_tenant(value: str) -> bool:
    """True when ``value`` may be used as a tenant name (it goes into every key's hash tag)."""
    return _TENANT.fullmatch(value) is not None


def tenant_prefix(tenant: str) -> str:
    """The key prefix of a tenant; also what scripts receive as ``KEYS[1]``."""
    if not valid_tenant(tenant):
        raise ValueError(f"invalid tenant name {tenant!r}")
    return f"{ROOT}:{{{tenant}}}:"


class Keys:
    """Builds the keys of one tenant."""

    __slots__ = ("prefix",)

    def __init__(self, tenant: str) -> None:
        self.prefix = tenant_prefix(tenant)

    def _key(self, name: str, **parts: str) -> str:
        return self.prefix + _PART.sub(lambda m: parts[m.group(1)], TEMPLATES[name])

    def seq(self) -> str:
        return self._key("seq")

    def events(self) -> str:
        return self._key("events")

    def timers(self) -> str:
        return self._key("timers")

    def agents(self) -> str:
        return self._key("agents")

    def identities(self) -> str:
        return self._key("identities")

    def signing_key(self) -> str:
        return self._key("signing_key")

    def contact(self, contact: str) -> str:
        return self._key("contact", contact=contact)

    def agent(self, agent: str) -> str:
        return self._key("agent", agent=agent)

    def reservation(self, reservation: str) -> str:
        return self._key("reservation", reservation=reservation)

    def queue_waiting(self, queue: str, channel: str) -> str:
        return self._key("queue_waiting", queue=queue, channel=channel)

    def queue_channels(self, queue: str) -> str:
        return self._key("queue_channels", queue=queue)

    def queue_staffing(self, queue: str) -> str:
        return self._key("queue_staffing", queue=queue)

    def queue_staffed(self, queue: str) -> str:
        return self._key("queue_staffed", queue=queue)

    def queue_signed_in(self, queue: str) -> str:
        return self._key("queue_signed_in", queue=queue)

    def layout(self) -> str:
        return self._key("layout")

    def customer(self, customer: str) -> str:
        return self._key("customer", customer=customer)

    def customer_history(self, customer: str) -> str:
        return self._key("customer_history", customer=customer)


def events_pattern() -> str:
    """The pub/sub pattern matching every tenant's event channel."""
    return f"{ROOT}:*:{TEMPLATES['events']}"


def tenant_of_channel(channel: str) -> str:
    """The tenant named by an event channel ``sb:{tenant}:ev``."""
    start = channel.index("{") + 1
    return channel[start : channel.index("}", start)]


def lua_key(name: str, parts: list[str]) -> str:
    """The Lua expression building key ``name`` from ``P`` (``KEYS[1]``) and Lua ``parts``.

    Scripts write ``K.<name>(parts...)``; ``queues.scripts`` replaces each such call with this
    expression, so building a key costs one concatenation and no function.
    """
    template = TEMPLATES[name]
    params = _PART.findall(template)
    if len(parts) != len(params):
        raise ValueError(f"K.{name} takes {len(params)} parts, not {len(parts)}")
    given = dict(zip(params, parts, strict=True))
    pieces = ["P"]
    for i, piece in enumerate(_PART.split(template)):
        if i % 2:
            pieces.append(given[piece])
        elif piece:
            pieces.append(f"'{piece}'")
    return "(" + " .. ".join(pieces) + ")"
