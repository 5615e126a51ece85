"""Know the customer: a contact's sender resolved to one profile across channels.

``resolve`` runs before routing: the sender's normalised identity (E.164 phone, case-folded
email, gateway-scoped chat handle) names the customer, or a new customer is created for an
unknown sender; an email reply joins its thread's customer and prefers the thread's agent.
The same single script returns the profile and recent contacts, so this costs one round trip.

A returning customer usually costs none: ``CustomerCache`` keeps, per instance, the profile and
recent contacts of the customers it resolved, and serves one only while every contact in it has
ended (completed or abandoned: those never change again) and nothing else may have touched the
customer. This instance's own contacts are added to the entry as they are created and brought
up to date from the replies of ``complete`` and ``abandon``; a contact that moved elsewhere
leaves the entry unusable, so the next contact resolves in Redis again and refreshes it.
Other instances are covered by notices on a pub/sub channel (``CHANNEL``): a profile change
or an erasure always sends one (and one for each placeholder customer it took over or erased:
see ``upsert`` and ``delete``), and, once an instance has heard another instance exists (each
announces itself when it subscribes), so does every new contact. While the subscription is
down the cache is off and emptied; when it comes back and another instance is there, nothing
is stored for a grace period (that instance may not have heard this one's announcement yet).
An entry is served for at most ``MAX_AGE_SECONDS`` after it was read from Redis: what changes
there without a notice (an ended contact expiring after the retention period) shows within
that time.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from channels import identity
from queues.contract import ContactState
from queues.customers import CustomerStore, Deleted
from queues.errors import CustomerHasLiveContacts, CustomerIdentityTaken
from router import models as m

log = structlog.get_logger("switchboard.customers")

#: pub/sub channel of the customer cache notices every instance subscribes to
CHANNEL = "sb:customer-cache"
#: statuses a contact never leaves, so a cached history entry in one stays right
FINAL = frozenset({"completed", "abandoned", "cancelled"})
_IDENTITY_MEMO = 65536
#: how long a customer read from Redis is served from the cache, at most
MAX_AGE_SECONDS = 3600.0
Publish = Callable[[str, bytes], Awaitable[int]]


def hashed_message_id(message_id: str) -> str:
    return hashlib.sha256(message_id.strip().encode()).hexdigest()[:32]


@dataclass(slots=True)
class Resolved:
    id: str | None
    profile: dict[str, Any] = field(default_factory=dict)
    last_agent: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    #: cache bookkeeping: the identity it was found by on the plain identity path, the
    #: cache's sequence number when resolving began (-1: the cache may not store it), and
    #: whether it came from the cache
    identity: str = ""
    started: int = -1
    cached: bool = False

    def single_view(self, segment: str) -> dict[str, Any]:
        """What the agent sees of the customer on an offer: the profile (with the numbers,
        addresses and handles the customer is known by, to call or write back on any channel),
        the segment and the recent contacts."""
        profile = self.profile
        return {
            "id": self.id,
            "name": profile.get("name"),
            "phones": list(profile.get("phones") or []),
            "emails": list(profile.get("emails") or []),
            "chat_handles": list(profile.get("chat_handles") or []),
            "segment": segment,
            "value": float(profile.get("value") or 0.0),
            "churn_risk": float(profile.get("churn_risk") or 0.0),
            "products": list(profile.get("products") or []),
            "attributes": profile.get("attributes") or {},
            "history": self.history,
        }


@dataclass(slots=True)
class Thread:
    """An email's place in a thread: the ids it replies to and its own id."""

    references: list[str] = field(default_factory=list)
    message_id: str | None = None


def history_item(state: ContactState) -> dict[str, Any]:
    """A contact as a line of its customer's history (the shape ``customer_history`` gives)."""
    return {
        "contact_id": state.id,
        "channel": state.channel,
        "created_at": state.doc.get("created_at"),
        "queue": state.queue,
        "agent_id": state.agent_id,
        "status": state.status,
        "disposition": state.disposition,
    }


def _last_agent(history: list[dict[str, Any]]) -> str | None:
    return next((h["agent_id"] for h in history if h["agent_id"]), None)


@dataclass(slots=True)
class _Entry:
    profile: dict[str, Any]
    history: list[dict[str, Any]]
    identities: set[str]
    read_at: float  # time.monotonic() when it was read from Redis


Key = tuple[str, str]


class CustomerCache:
    """Returning customers of one instance, kept correct as described in the module doc."""

    def __init__(
        self,
        size: int,
        history_length: int,
        grace_seconds: float = 1.0,
        max_age_seconds: float = MAX_AGE_SECONDS,
    ) -> None:
        self.size = size
        self.history_length = history_length
        self.grace_seconds = grace_seconds
        self.max_age_seconds = max_age_seconds
        self.instance = secrets.token_hex(8)
        self.identities: dict[Key, str] = {}  # (tenant, identity) -> customer id
        self.entries: dict[Key, _Entry] = {}  # (tenant, customer id), oldest first
        self.open: dict[Key, Key] = {}  # (tenant, contact id) not ended -> its customer
        self.changed: dict[Key, int] = {}  # customer -> sequence number of its last change
        self.seq = 0
        self.floor = 0  # every customer changed at this sequence number (a reset)
        self.live = False  # subscribed to the notices: the cache may serve
        self.shared = False  # another instance exists: new contacts send notices
        self.fill_after = float("inf")
        self.publish: Publish | None = None
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------------- lookups

    def lookup(self, tenant: str, ident: str) -> Resolved | None:
        """The cached customer of an identity, if it may be served as it is."""
        if not self.live:
            return None
        cid = self.identities.get((tenant, ident))
        entry = self.entries.get((tenant, cid)) if cid is not None else None
        if entry is None or cid is None or any(h["status"] not in FINAL for h in entry.history):
            self.misses += 1
            return None
        if time.monotonic() - entry.read_at > self.max_age_seconds:
            self._drop((tenant, cid))  # (the next resolution in Redis reads it afresh)
            self.misses += 1
            return None
        self.hits += 1
        history = list(entry.history)
        return Resolved(cid, entry.profile, _last_agent(history), history, ident, self.seq, True)

    def begin(self) -> int:
        """The sequence number a Redis resolution starts at (-1: its result is not kept)."""
        if not self.live or time.monotonic() < self.fill_after:
            return -1
        return self.seq

    # ------------------------------------------------------------------------- changes

    def created(self, tenant: str, found: Resolved, state: ContactState, replay: bool) -> None:
        """A contact of ``found`` was enqueued here: add it to the customer's entry."""
        if found.id is None:
            return
        key = (tenant, found.id)
        if found.started < 0 or self.changed.get(key, self.floor) > found.started:
            self._drop(key)  # something else touched the customer meanwhile
            return
        if replay:
            return
        item = history_item(state)
        old = self.entries.get(key)
        if found.cached:
            if old is None:
                return
            old.history = [item, *old.history][: self.history_length]
        else:
            entry = _Entry(
                found.profile,
                [item, *found.history][: self.history_length],
                old.identities if old is not None else set(),
                time.monotonic(),
            )
            if found.identity:
                entry.identities.add(found.identity)
                self.identities[(tenant, found.identity)] = found.id
            self._put(key, entry)
            for h in entry.history[1:]:
                if h["status"] not in FINAL:
                    self._track(tenant, h["contact_id"], key)
        if item["status"] not in FINAL:
            self._track(tenant, state.id, key)
        self._mark(key)

    def warm(
        self,
        tenant: str,
        customer_id: str,
        profile: dict[str, Any],
        history: list[dict[str, Any]],
        identities: list[str],
        started: int,
    ) -> None:
        """Keep a customer read from Redis (after a profile write) if nothing changed since."""
        key = (tenant, customer_id)
        if started < 0 or self.changed.get(key, self.floor) > started:
            return
        entry = _Entry(profile, history[: self.history_length], set(identities), time.monotonic())
        for ident in identities:
            self.identities[(tenant, ident)] = customer_id
        self._put(key, entry)
        for h in entry.history:
            if h["status"] not in FINAL:
                self._track(tenant, h["contact_id"], key)
        self._mark(key)

    def contact_changed(self, tenant: str, state: ContactState) -> None:
        """A transition's reply here (complete, abandon): bring the contact's line up to date."""
        key = self.open.get((tenant, state.id))
        if key is None:
            return
        if state.status in FINAL:
            del self.open[(tenant, state.id)]
        entry = self.entries.get(key)
        if entry is None:
            return
        item = history_item(state)
        entry.history = [item if h["contact_id"] == state.id else h for h in entry.history]

    def invalidate(self, tenant: str, customer_id: str) -> None:
        self._drop((tenant, customer_id))

    def clear(self) -> None:
        self.identities.clear()
        self.entries.clear()
        self.open.clear()
        self.changed.clear()
        self.seq += 1
        self.floor = self.seq  # whatever is resolving now is not kept

    def _put(self, key: Key, entry: _Entry) -> None:
        entries = self.entries
        entries.pop(key, None)
        entries[key] = entry
        while len(entries) > self.size:
            self._drop(next(iter(entries)))

    def _track(self, tenant: str, contact_id: str, key: Key) -> None:
        if len(self.open) >= 4 * self.size:
            self.open.clear()  # such contacts just stay unusable until Redis is asked again
        self.open[(tenant, contact_id)] = key

    def _drop(self, key: Key) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            for ident in entry.identities:
                if self.identities.get((key[0], ident)) == key[1]:
                    del self.identities[(key[0], ident)]
        self._mark(key)

    def _mark(self, key: Key) -> None:
        self.seq += 1
        if len(self.changed) >= 4 * self.size:
            self.changed.clear()
            self.floor = self.seq
        self.changed[key] = self.seq

    # ------------------------------------------------------------------------- notices

    async def connected(self, publish: Publish) -> None:
        """The hub (re)subscribed to ``CHANNEL``: start afresh and announce this instance."""
        self.clear()
        self.publish = publish
        self.fill_after = float("inf")
        self.live = True
        try:
            listeners = await publish(CHANNEL, orjson.dumps({"k": "hello", "i": self.instance}))
        except Exception as exc:  # cannot tell who else is there: assume someone is
            log.warning("customers.hello_failed", error=str(exc) or type(exc).__name__)
            listeners = 2
        if listeners > 1:
            # others may create contacts unannounced until they hear the hello: wait a moment
            self.shared = True
            self.fill_after = time.monotonic() + self.grace_seconds
        else:
            self.fill_after = 0.0

    def disconnected(self) -> None:
        """The subscription is lost: notices may be missed, so nothing is served."""
        self.live = False
        self.clear()

    def on_notice(self, raw: bytes | str) -> None:
        notice = orjson.loads(raw)
        if not isinstance(notice, dict) or notice.get("i") == self.instance:
            return
        if notice.get("k") == "hello":
            self.shared = True
        elif notice.get("k") == "customer":
            self.invalidate(str(notice.get("t")), str(notice.get("cu")))

    async def notify(self, tenant: str, customer_id: str) -> None:
        """Tell the other instances that a customer changed (their entries are dropped)."""
        if self.publish is None:
            return
        data = {"k": "customer", "i": self.instance, "t": tenant, "cu": customer_id}
        try:
            await self.publish(CHANNEL, orjson.dumps(data))
        except Exception as exc:
            log.warning("customers.notice_failed", error=str(exc) or type(exc).__name__)


class Customers:
    def __init__(
        self,
        store: CustomerStore | None,
        region: str = "US",
        history_length: int = 20,
        cache_size: int = 0,
    ) -> None:
        self.store = store
        self.region = region
        self.history_length = history_length
        self.cache = (
            CustomerCache(cache_size, history_length) if cache_size and store is not None else None
        )
        self._identities: dict[tuple[str, str, str], str] = {}
        #: identities of customers just written here, until ``get`` reads them back
        self._written: dict[tuple[str, str], list[str]] = {}

    def identity_of(self, contact: m.ContactIn, gateway: str = "web") -> str:
        """Raises ``identity.IdentityError`` for a sender that is not readable."""
        if not contact.from_:
            return ""
        key = (contact.channel, contact.from_, gateway)
        known = self._identities.get(key)
        if known is None:
            # parsing a phone number takes tens of microseconds; senders repeat
            known = identity.of_sender(contact.channel, contact.from_, self.region, gateway)
            if len(self._identities) >= _IDENTITY_MEMO:
                self._identities.clear()
            self._identities[key] = known
        return known

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
        cache = self.cache
        plain = not contact.customer_id and not thread
        if cache is not None and plain:
            hit = cache.lookup(tenant, ident)
            if hit is not None:
                return hit
        started = cache.begin() if cache is not None else -1
        # (a customer the gateway names but nobody has created yet is created under its id)
        fresh_id = contact.customer_id or "cu" + secrets.token_hex(8)
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
        return Resolved(
            found.id or None,
            found.profile or {},
            last_agent,
            history,
            ident if plain else "",
            started,
        )

    async def created(
        self, tenant: str, found: Resolved, state: ContactState, replay: bool
    ) -> None:
        """A contact was enqueued for ``found``: keep the cache (and other instances) right."""
        cache = self.cache
        if cache is None or found.id is None:
            return
        cache.created(tenant, found, state, replay)
        if cache.shared and not replay:
            await cache.notify(tenant, found.id)

    def contact_changed(self, tenant: str, state: ContactState) -> None:
        if self.cache is not None:
            self.cache.contact_changed(tenant, state)

    async def upsert(self, tenant: str, customer_id: str, body: m.CustomerIn) -> bool:
        """Write a profile; True if it created the customer.

        A placeholder (a customer made here for an unknown sender) that owns one of the
        profile's identities is merged into this customer: its identities and contacts pass to
        it. Raises ``UnreadableIdentities`` naming every phone, email or handle that cannot be
        read, ``CustomerIdentityTaken`` for one another customer owns (nothing is written
        then)."""
        assert self.store is not None
        identities = self._profile_identities(body)
        doc = body.model_dump(exclude_none=True)
        doc["id"] = customer_id
        cache = self.cache
        merged: list[str] = []
        try:
            done = await self.store.upsert(tenant, customer_id, doc, sorted(identities))
            merged = done.merged
        except CustomerIdentityTaken as exc:
            # say which entry of the profile it was, and whose it is (never the value: the
            # detail may be logged)
            where = identities.get(exc.ids.get("identity", ""), "a phone number, email or handle")
            owner = exc.ids.get("owner", "")
            raise CustomerIdentityTaken(
                f"{where} already belongs to customer {owner!r}; a PUT of that customer"
                " without it releases it",
                **exc.ids,
            ) from None
        finally:
            # every instance forgets the merged placeholders too: their identities and
            # contacts are this customer's now
            await self._forget(tenant, customer_id, *merged)
        if merged:
            log.info("customers.merged", customer=customer_id, placeholders=merged)
        if cache is not None:
            written = self._written
            if len(written) >= _IDENTITY_MEMO:
                written.clear()
            written[(tenant, customer_id)] = list(identities)
        return done.created

    async def delete(self, tenant: str, customer_id: str) -> Deleted:
        """Erase a customer (profile, identities, history, merged placeholders; its ended
        contacts lose their link to it) and make every instance forget it.

        Raises ``CustomerNotFound``, or ``CustomerHasLiveContacts`` naming how many of its
        contacts are still under way (nothing is erased then).
        """
        assert self.store is not None
        removed: list[str] = []
        try:
            done = await self.store.delete(tenant, customer_id)
            removed = done.placeholders
        except CustomerHasLiveContacts as exc:
            live = exc.ids.get("live", "some")
            raise CustomerHasLiveContacts(
                f"customer {customer_id!r} has {live} contact(s) still queued, offered, assigned"
                f" or wrapping ({exc.ids.get('contacts', '')}); delete it once they have ended",
                **exc.ids,
            ) from None
        finally:
            # no instance may route from, or show, the erased profile it holds in memory
            await self._forget(tenant, customer_id, *removed)
            self._written.pop((tenant, customer_id), None)
        log.info("customers.deleted", customer=customer_id)
        return done

    async def _forget(self, tenant: str, *customer_ids: str) -> None:
        """This instance's cache drops the customers, and a notice tells the others to."""
        cache = self.cache
        if cache is not None:
            for changed in customer_ids:
                cache.invalidate(tenant, changed)
                await cache.notify(tenant, changed)

    def _profile_identities(self, body: m.CustomerIn) -> dict[str, str]:
        """The profile's phones, emails and chat handles as identities, in that order, each
        with the entry it was read from (``phones[0]``; the first, for one given twice)."""
        region = self.region

        def phone(text: str) -> str:
            return f"phone:{identity.phone(text, region)}"

        def email(text: str) -> str:
            return f"email:{identity.email(text)}"

        def handle(text: str) -> str:
            return identity.scoped_handle(text)

        out: dict[str, str] = {}
        unreadable: list[tuple[str, int, str]] = []
        for name, values, read in (
            ("phones", body.phones, phone),
            ("emails", body.emails, email),
            ("chat_handles", body.chat_handles, handle),
        ):
            for i, value in enumerate(values):
                try:
                    out.setdefault(read(value), f"{name}[{i}]")
                except identity.IdentityError as exc:
                    unreadable.append((name, i, str(exc)))
        if unreadable:
            raise UnreadableIdentities(unreadable)
        return out

    async def get(self, tenant: str, customer_id: str) -> tuple[dict[str, Any] | None, list[Any]]:
        """The profile and recent contacts, from Redis.

        Right after ``upsert`` here (``PUT /v1/customers`` reads the customer back), the result
        is kept in the cache under the identities just written: a customer whose profile was
        just pushed is likely to call soon.
        """
        assert self.store is not None
        cache = self.cache
        written = self._written.pop((tenant, customer_id), None)
        started = cache.begin() if cache is not None and written is not None else -1
        profile, history = await self.store.history(tenant, customer_id, self.history_length)
        wired = [h.wire() for h in history]
        if cache is not None and written is not None and profile is not None:
            cache.warm(tenant, customer_id, profile, wired, written, started)
        return profile, wired


class UnreadableIdentities(identity.IdentityError):
    """The phones, emails or chat handles of a profile that cannot be read: (field, index,
    why) each."""

    def __init__(self, unreadable: list[tuple[str, int, str]]) -> None:
        self.unreadable = unreadable
        super().__init__("; ".join(f"{f}[{i}]: {why}" for f, i, why in unreadable))
