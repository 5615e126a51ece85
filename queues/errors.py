"""Store failure codes and the exceptions they map to.

Every script returns ``[code, payload, events]``; ``code`` is one ``Code``. ``raise_for`` is the
one place that turns a code into an exception carrying the ids involved.

Hierarchy::

    SwitchboardError
    ├── StoreUnavailable            Redis cannot be reached (HTTP 503)
    │   └── StoreFull               Redis refused a write: out of memory (HTTP 503)
    └── StoreError                  a transition was refused; nothing changed
        ├── NotFound                (404)
        │   ├── ContactNotFound
        │   ├── AgentNotFound
        │   ├── ReservationNotFound
        │   └── CustomerNotFound
        ├── Conflict                (409)
        │   ├── ReservationNotPending   rejected, rescinded, timed out, or its contact done
        │   ├── ReservationExpired      past its lease, its timeout not yet processed
        │   ├── ContactNotWaiting       abandon / callback once offered or assigned
        │   ├── CallbackUnavailable     a callback no agent the contact can reach could make
        │   ├── ContactNotAssigned      complete before accept, or twice
        │   ├── IdempotencyConflict     Idempotency-Key reused with another body
        │   ├── CustomerIdentityTaken   an identity already belongs to another customer
        │   └── CustomerHasLiveContacts erasure while some of its contacts are under way
        └── Forbidden               (403)
            ├── NotYourReservation
            └── NotYourContact
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    OK = 0
    CONTACT_NOT_FOUND = 1
    AGENT_NOT_FOUND = 2
    RESERVATION_NOT_FOUND = 3
    CUSTOMER_NOT_FOUND = 4
    RESERVATION_NOT_PENDING = 10
    RESERVATION_EXPIRED = 11
    CONTACT_NOT_WAITING = 12
    CONTACT_NOT_ASSIGNED = 13
    IDEMPOTENCY_CONFLICT = 14
    CUSTOMER_IDENTITY_TAKEN = 15
    CUSTOMER_HAS_LIVE_CONTACTS = 16
    CALLBACK_UNAVAILABLE = 17
    NOT_YOUR_RESERVATION = 20
    NOT_YOUR_CONTACT = 21


class SwitchboardError(Exception):
    """Root of every error Switchboard raises on purpose."""


class StoreUnavailable(SwitchboardError):
    """The store (Redis) could not be reached or did not answer. ``sent``: the command may
    have reached Redis (written before the connection was lost or timed out), so it may have
    been applied; False only when no connection could be made for it."""

    def __init__(self, message: str, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class StoreFull(StoreUnavailable):
    """Redis refused the script's first write: its memory is at ``maxmemory`` (and its policy
    evicts nothing). A script refused so has written nothing (Redis only refuses the first
    write of a script), so nothing was applied."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=False)


class StoreError(SwitchboardError):
    """A transition the store refused; it changed nothing."""

    code: Code = Code.OK

    def __init__(self, message: str, **ids: str) -> None:
        super().__init__(message)
        self.ids = ids


class NotFound(StoreError):
    pass


class ContactNotFound(NotFound):
    code = Code.CONTACT_NOT_FOUND


class AgentNotFound(NotFound):
    code = Code.AGENT_NOT_FOUND


class ReservationNotFound(NotFound):
    code = Code.RESERVATION_NOT_FOUND


class CustomerNotFound(NotFound):
    code = Code.CUSTOMER_NOT_FOUND


class Conflict(StoreError):
    pass


class ReservationNotPending(Conflict):
    code = Code.RESERVATION_NOT_PENDING


class ReservationExpired(Conflict):
    code = Code.RESERVATION_EXPIRED


class ContactNotWaiting(Conflict):
    code = Code.CONTACT_NOT_WAITING


class CallbackUnavailable(Conflict):
    code = Code.CALLBACK_UNAVAILABLE


class ContactNotAssigned(Conflict):
    code = Code.CONTACT_NOT_ASSIGNED


class IdempotencyConflict(Conflict):
    code = Code.IDEMPOTENCY_CONFLICT


class CustomerIdentityTaken(Conflict):
    code = Code.CUSTOMER_IDENTITY_TAKEN


class CustomerHasLiveContacts(Conflict):
    code = Code.CUSTOMER_HAS_LIVE_CONTACTS


class Forbidden(StoreError):
    pass


class NotYourReservation(Forbidden):
    code = Code.NOT_YOUR_RESERVATION


class NotYourContact(Forbidden):
    code = Code.NOT_YOUR_CONTACT


_MESSAGES: dict[Code, tuple[type[StoreError], str]] = {
    Code.CONTACT_NOT_FOUND: (ContactNotFound, "no such contact"),
    Code.AGENT_NOT_FOUND: (AgentNotFound, "no such agent"),
    Code.RESERVATION_NOT_FOUND: (ReservationNotFound, "no such reservation"),
    Code.CUSTOMER_NOT_FOUND: (CustomerNotFound, "no such customer"),
    Code.RESERVATION_NOT_PENDING: (
        ReservationNotPending,
        "the reservation is no longer pending (rejected, rescinded or timed out, or accepted"
        " and its contact since completed)",
    ),
    Code.RESERVATION_EXPIRED: (ReservationExpired, "the reservation has expired"),
    Code.CONTACT_NOT_WAITING: (ContactNotWaiting, "the contact is no longer waiting"),
    Code.CALLBACK_UNAVAILABLE: (
        CallbackUnavailable,
        "nobody could make the callback: no queue of the contact's current or later steps has"
        " a member with voice capacity, nor has any agent they name",
    ),
    Code.CONTACT_NOT_ASSIGNED: (ContactNotAssigned, "the contact is not assigned to an agent"),
    Code.IDEMPOTENCY_CONFLICT: (
        IdempotencyConflict,
        "this Idempotency-Key was already used with a different request body",
    ),
    Code.CUSTOMER_IDENTITY_TAKEN: (
        CustomerIdentityTaken,
        "a phone number, email or handle in the profile already belongs to another customer",
    ),
    Code.CUSTOMER_HAS_LIVE_CONTACTS: (
        CustomerHasLiveContacts,
        "some of the customer's contacts are still queued, offered, assigned or wrapping",
    ),
    Code.NOT_YOUR_RESERVATION: (NotYourReservation, "the reservation belongs to another agent"),
    Code.NOT_YOUR_CONTACT: (NotYourContact, "the contact is assigned to another agent"),
}


def raise_for(code: int, **ids: str) -> None:
    """Raise the exception for a non-OK script code, with the ids it concerns."""
    if code == Code.OK:
        return
    cls, message = _MESSAGES[Code(code)]
    raise cls(message, **ids)


def lua_codes() -> str:
    """The codes as a Lua table ``E``, part of every script's prelude."""
    body = ", ".join(f"{c.name} = {c.value}" for c in Code)
    return f"local E = {{{body}}}\n"
