"""Know the customer: a contact's sender resolved to one profile across channels.

``resolve`` runs before routing: the sender's normalised identity (E.164 phone, case-folded
email, gateway-scoped chat handle) names the customer, or a new customer is created for an
unknown sender; an email reply joins its thread's customer and prefers the thread's agent.
The same single script returns the profile and recent contacts, so this costs one round trip.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from channels import identity
from queues.customers import CustomerStore
from router import models as m


def hashed_message_id(message_id: str) -> str:
    return hashlib.sha256(message_id.strip().encode()).hexdigest()[:32]


@dataclass(slots=True)
class Resolved:
    id: str | None
    profile: dict[str, Any] = field(default_factory=dict)
    last_agent: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def single_view(self, segment: str) -> dict[str, Any]:
        """What the agent sees of the customer on an offer."""
        return {
            "id": self.id,
            "name": self.profile.get("name"),
            "segment": segment,
            "value": float(self.profile.get("value") or 0.0),
            "churn_risk": float(self.profile.get("churn_risk") or 0.0),
            "products": list(self.profile.get("products") or []),
            "attributes": self.profile.get("attributes") or {},
            "history": self.history,
        }


@dataclass(slots=True)
class Thread:
    """An email's place in a thread: the ids it replies to and its own id."""

    references: list[str] = field(default_factory=list)
    message_id: str | None = None


class Customers:
    def __init__(
        self, store: CustomerStore | None, region: str = "US", history_length: int = 20
    ) -> None:
        self.store = store
        self.region = region
        self.history_length = history_length

    def identity_of(self, contact: m.ContactIn, gateway: str = "web") -> str:
        """Raises ``identity.IdentityError`` for a sender that is not readable."""
        if not contact.from_:
            return ""
        return identity.of_sender(contact.channel, contact.from_, self.region, gateway)

    async def resolve(
        self,
        tenant: str,
        contact: m.ContactIn,
        contact_id: str,
        now_iso: str,
        thread: Thread | None = None,
        gateway: str = "web",
        idempotency: tuple[str, str] = ("", ""),
    ) -> Resolved:
        """Raises ``IdempotencyConflict`` (and creates nothing) for a conflicting replay."""
        ident = self.identity_of(contact, gateway)
        if self.store is None or (not ident and not contact.customer_id and not thread):
            return Resolved(contact.customer_id)
        fresh_id = "cu" + secrets.token_hex(8)
        refs = [hashed_message_id(r) for r in thread.references] if thread else []
        own = hashed_message_id(thread.message_id) if thread and thread.message_id else ""
        found = await self.store.resolve(
            tenant,
            ident,
            contact.customer_id or "",
            (fresh_id, {"id": fresh_id, "created_at": now_iso, "source": contact.channel}),
            self.history_length,
            (refs, own, contact_id),
            idempotency,
        )
        history = [h.wire() for h in found.history]
        last_agent = found.thread_agent or next(
            (h.agent_id for h in found.history if h.agent_id), None
        )
        return Resolved(found.id or None, found.profile or {}, last_agent, history)

    async def upsert(self, tenant: str, customer_id: str, body: m.CustomerIn) -> bool:
        assert self.store is not None
        identities = [f"phone:{identity.phone(p, self.region)}" for p in body.phones]
        identities += [f"email:{identity.email(e)}" for e in body.emails]
        identities += [identity.handle(gw, h) for gw, h in _handles(body.chat_handles)]
        doc = body.model_dump(exclude_none=True)
        doc["id"] = customer_id
        return await self.store.upsert(tenant, customer_id, doc, sorted(set(identities)))

    async def get(self, tenant: str, customer_id: str) -> tuple[dict[str, Any] | None, list[Any]]:
        assert self.store is not None
        profile, history = await self.store.history(tenant, customer_id, self.history_length)
        return profile, [h.wire() for h in history]


def _handles(values: list[str]) -> list[tuple[str, str]]:
    """``gateway:handle`` pairs; a bare handle belongs to the ``web`` chat gateway."""
    out = []
    for value in values:
        gateway, sep, handle = value.partition(":")
        out.append((gateway, handle) if sep else ("web", value))
    return out
