"""Customer profiles, identities and history in Redis (one script per operation).

Profiles are not routing state: the simulator passes customer views straight to the engine,
so these have no memory-store twin. Contact history is read live from the contact records the
routing scripts keep (``customer_history``), so it always shows each contact as it stands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from queues import contract as c_
from queues.redis_store import RedisStore


@dataclass(slots=True)
class HistoryEntry:
    contact_id: str
    channel: str
    created_at: str
    queue: str
    agent_id: str | None
    status: str
    disposition: str | None

    def wire(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "channel": self.channel,
            "created_at": self.created_at,
            "queue": self.queue,
            "agent_id": self.agent_id,
            "status": self.status,
            "disposition": self.disposition,
        }


@dataclass(slots=True)
class Resolution:
    id: str
    created: bool
    profile: dict[str, Any] | None
    history: list[HistoryEntry]
    thread_agent: str | None


@dataclass(slots=True)
class Upserted:
    created: bool
    #: placeholders (customers made for an unknown sender) merged into this customer because
    #: the profile claimed their identities
    merged: list[str]


@dataclass(slots=True)
class Deleted:
    #: ended contacts the customer's history (and its merged placeholders') listed, kept with
    #: their link to the customer cut
    contacts: int
    #: numbers, addresses and handles released
    identities: int
    #: placeholders merged into it, whose forwards went with it
    placeholders: list[str]


class CustomerStore:
    def __init__(self, store: RedisStore) -> None:
        self.store = store

    async def resolve(
        self,
        tenant: str,
        identity: str,
        given_id: str,
        fresh: tuple[str, dict[str, Any]],
        history: int,
        thread: tuple[list[str], str, str] = ([], "", ""),
        idempotency: tuple[str, str] = ("", ""),
    ) -> Resolution:
        """The customer of a new contact: by id, by thread, by identity, or a new one.

        ``thread`` is (hashed ids it replies to, its own hashed id, the new contact's id).
        """
        refs, own, contact_id = thread
        reply = await self.store.run(
            "resolve_customer",
            tenant,
            identity,
            given_id,
            fresh[0],
            json.dumps(fresh[1]),
            history,
            json.dumps(refs),
            own,
            contact_id,
            *idempotency,
        )
        payload, _ = c_.unpack(reply, customer=given_id or fresh[0])
        doc = payload["doc"]
        return Resolution(
            payload["id"],
            bool(payload["created"]),
            json.loads(doc) if doc else None,
            _entries(payload["contacts"]),
            payload["thread_agent"] or None,
        )

    async def upsert(
        self,
        tenant: str,
        customer_id: str,
        doc: dict[str, Any],
        identities: list[str],
    ) -> Upserted:
        """Write the profile, taking over placeholders that own its identities (their
        identities and contacts join it).

        Raises ``CustomerIdentityTaken`` with the ``identity`` and its ``owner`` in its ids
        when one belongs to a customer that is not a placeholder.
        """
        reply = await self.store.run(
            "upsert_customer",
            tenant,
            customer_id,
            json.dumps(doc),
            json.dumps(identities),
        )
        payload, _ = c_.unpack(reply, customer=customer_id)
        return Upserted(bool(payload["created"]), list(payload.get("merged") or []))

    async def delete(self, tenant: str, customer_id: str) -> Deleted:
        """Erase the customer: profile, identities, history, the placeholders merged into it,
        and the links its ended contacts keep to it (see delete_customer.lua).

        Raises ``CustomerNotFound``, or ``CustomerHasLiveContacts`` with ``live`` (how many)
        and ``contacts`` (their ids, comma-joined) in its ids, changing nothing.
        """
        reply = await self.store.run("delete_customer", tenant, customer_id)
        payload, _ = c_.unpack(reply, customer=customer_id)
        return Deleted(
            int(payload["contacts"]),
            int(payload["released"]),
            list(payload.get("placeholders") or []),
        )

    async def history(
        self, tenant: str, customer_id: str, limit: int
    ) -> tuple[dict[str, Any] | None, list[HistoryEntry]]:
        reply = await self.store.run("customer_history", tenant, customer_id, limit)
        payload, _ = c_.unpack(reply, customer=customer_id)
        profile = json.loads(payload["doc"]) if payload["doc"] else None
        return profile, _entries(payload["contacts"])


def _entries(raw_list: Any) -> list[HistoryEntry]:
    entries = []
    for raw in raw_list or []:
        doc = json.loads(raw["doc"])
        entries.append(
            HistoryEntry(
                doc["id"],
                raw["ch"],
                doc["created_at"],
                raw["queue"],
                raw["agent"] or None,
                raw["st"],
                raw["disp"] or None,
            )
        )
    return entries
