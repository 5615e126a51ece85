"""Who is calling: a contact's sender resolved to a customer profile and its history.

This first version knows customers only by the ``customer_id`` a gateway passes; identity
resolution across phone, email and chat handles, profiles in Redis and contact history are
the customer issue's work (api-v1 §4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from queues.contract import ContactState
from router import models as m


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
            "segment": segment,
            "value": float(self.profile.get("value") or 0.0),
            "churn_risk": float(self.profile.get("churn_risk") or 0.0),
            "name": self.profile.get("name"),
            "products": list(self.profile.get("products") or []),
            "history": self.history,
        }


class Customers:
    async def resolve(self, tenant: str, contact: m.ContactIn) -> Resolved:
        return Resolved(contact.customer_id)

    async def record(self, tenant: str, contact: ContactState) -> None:
        """Keep the customer's history current as a contact moves (nothing kept yet)."""
