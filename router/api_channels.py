"""Channel adapters and customer profiles over HTTP (api-v1 §2 adapters, §4 customers).

Each adapter endpoint turns its native payload into a Contact with a pure function from
``channels/`` and then takes exactly the path of ``POST /v1/contacts``, idempotent by the
native id (call id, Message-ID, SMS id, chat session id).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from channels import chat, email, sms, voice
from channels.identity import IdentityError
from channels.inbound import NATIVE_ID, AdapterError, Inbound
from queues.errors import ContactNotWaiting, IdempotencyConflict, SwitchboardError
from router import appkeys as k
from router import models as m
from router.api import (
    ADMIN,
    GATEWAY,
    Route,
    created_contact,
    is_json,
    path_id,
    principal,
    read_body,
    read_json,
    read_limited,
)
from router.auth import Principal
from router.customers import Thread, UnreadableIdentities
from router.problems import Problem, from_store, from_validation
from router.service import Created
from router.sockets import Sender
from router.ws import BINARY_FRAME, error_message, parse_message, prepare

log = structlog.get_logger("switchboard.channels")
POSITION_PUSH_SECONDS = 2.0
#: a chat's statuses once an agent has accepted it
ASSIGNED = ("assigned", "wrapping", "completed")


def _adapter_problem(exc: AdapterError) -> Problem:
    return Problem(
        exc.status,
        str(exc),
        kind="bad-payload",
        errors=[{"loc": list(exc.loc), "msg": str(exc)}] if exc.loc else None,
    )


async def ingest(
    request: web.Request, who: Principal, inbound: Inbound, gateway: str = "web"
) -> Created:
    """Validate the adapter's contact and route it like ``POST /v1/contacts``; new or replay."""
    try:
        contact = m.ContactIn.model_validate(inbound.contact)
    except ValidationError as exc:
        raise from_validation(exc) from None
    thread = Thread(inbound.references, inbound.message_id) if inbound.scope == "email" else None
    try:
        return await request.app[k.SERVICE].create_contact(
            who.tenant,
            contact,
            inbound.scope,
            inbound.native_id,
            extra=inbound.payload_hash,
            thread=thread,
            gateway=gateway,
        )
    except IdempotencyConflict:
        # (the gateway sent no Idempotency-Key: its own id is the key)
        name = NATIVE_ID.get(inbound.scope, "id")
        raise Problem(
            409,
            f"this {name} was already used with a different payload",
            kind="idempotency-conflict",
        ) from None


def _reply(created: Created) -> web.Response:
    return created_contact(created.contact, created.created)


async def _json_adapter(
    request: web.Request, adapter: Callable[[Any], Inbound]
) -> web.StreamResponse:
    """A JSON webhook: authorise, adapt the native payload, then route it as a contact."""
    who = await principal(request, GATEWAY)
    try:
        inbound = adapter(await read_json(request))
    except AdapterError as exc:
        raise _adapter_problem(exc) from None
    return _reply(await ingest(request, who, inbound))


async def voice_call(request: web.Request) -> web.StreamResponse:
    return await _json_adapter(request, voice.from_webhook)


async def sms_message(request: web.Request) -> web.StreamResponse:
    return await _json_adapter(request, sms.from_webhook)


async def email_message(request: web.Request) -> web.StreamResponse:
    who = await principal(request, GATEWAY)
    settings = request.app[k.SETTINGS]
    try:
        if request.content_type == "message/rfc822":
            inbound = email.from_raw(await read_limited(request, settings.max_email_bytes))
        elif is_json(request.content_type):
            inbound = email.from_json(await read_json(request))
        else:
            raise Problem(415, "expected message/rfc822 or application/json")
    except AdapterError as exc:
        raise _adapter_problem(exc) from None
    return _reply(await ingest(request, who, inbound))


# ------------------------------------------------------------------------------ customers


async def put_customer(request: web.Request) -> web.StreamResponse:
    who = await principal(request, GATEWAY)
    customer_id = path_id(request)
    body = await read_body(request, m.CustomerIn)
    service = request.app[k.SERVICE]
    try:
        created = await service.customers.upsert(who.tenant, customer_id, body)
    except UnreadableIdentities as exc:
        raise Problem(
            422,
            f"an identity cannot be read: {exc}",
            kind="validation",
            # (indexes as strings, as in every other 422: FieldError.loc is a list of strings)
            errors=[{"loc": ["body", f, str(i)], "msg": why} for f, i, why in exc.unreadable],
        ) from None
    profile, history = await service.customers.get(who.tenant, customer_id)
    if profile is None:
        raise Problem(404, "no such customer", kind="customer-not-found")
    # the offers of the customer's waiting contacts show the new profile (a new customer has
    # some when it took over a placeholder's)
    await service.refresh_views(who.tenant, customer_id, profile, history)
    customer = service.render_customer(profile, history)
    return web.Response(
        body=customer.model_dump_json(),
        status=201 if created else 200,
        content_type="application/json",
    )


async def get_customer(request: web.Request) -> web.StreamResponse:
    who = await principal(request, GATEWAY)
    customer = await _customer(request, who.tenant, path_id(request))
    return web.Response(body=customer.model_dump_json(), content_type="application/json")


async def delete_customer(request: web.Request) -> web.StreamResponse:
    """Erasure (GDPR art. 17): 204, 404 for no such customer, 409 while some of its contacts
    are under way (see ``Customers.delete``)."""
    who = await principal(request, ADMIN)
    await request.app[k.SERVICE].customers.delete(who.tenant, path_id(request))
    return web.Response(status=204)


async def _customer(request: web.Request, tenant: str, customer_id: str) -> m.Customer:
    service = request.app[k.SERVICE]
    profile, history = await service.customers.get(tenant, customer_id)
    if profile is None:
        raise Problem(404, "no such customer", kind="customer-not-found")
    return service.render_customer(profile, history)


# ---------------------------------------------------------------------------- chat socket


class ChatSocket:
    """One gateway connection carrying any number of chat sessions."""

    def __init__(
        self, request: web.Request, who: Principal, ws: web.WebSocketResponse, sender: Sender
    ) -> None:
        self.request = request
        self.who = who
        self.ws = ws
        self.sender = sender
        self.sessions: dict[str, m.Contact] = {}  # session id -> contact as last pushed
        self.watchers: dict[str, Any] = {}
        #: sessions told `assigned` (once each, whether the hub's event or a replayed start
        #: told it first)
        self.told: set[str] = set()
        #: pushes to follow the reply being sent
        self.after: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        await self.sender.send(orjson.dumps(message))  # (never waits for the gateway to read)

    async def start(self, data: dict[str, Any]) -> dict[str, Any]:
        inbound = chat.from_start(data)
        session = inbound.native_id
        # a bare handle is on the default ("web") gateway, `gateway:handle` on its own, as in
        # PUT /v1/customers (identity.scoped_handle)
        contact = (await ingest(self.request, self.who, inbound)).contact
        self.sessions[session] = contact
        if session not in self.watchers:

            async def watcher(ev: dict[str, Any]) -> None:
                if ev.get("t") == "assigned" and session not in self.told:
                    self.told.add(session)
                    await self.send(
                        {"type": "assigned", "session_id": session, "agent_id": ev.get("a")}
                    )

            self.watchers[session] = watcher
            self.request.app[k.HUB].watch(self.who.tenant, contact.id, watcher)
        if contact.status in ASSIGNED and session not in self.told:
            # a gateway that reconnected starts its sessions again: one assigned meanwhile
            # had its push go to the closed socket, so it is told now, after the reply
            self.told.add(session)
            self.after.append(
                {"type": "assigned", "session_id": session, "agent_id": contact.agent_id}
            )
        return {
            "type": "queued",
            "session_id": session,
            "contact": contact.model_dump(mode="json"),
        }

    async def end(self, data: dict[str, Any]) -> dict[str, Any]:
        session = str(data.get("session_id") or "")
        if not session and len(self.sessions) == 1:
            session = next(iter(self.sessions))  # api-v1's bare {"type": "end"}
        if session not in self.sessions:
            raise Problem(404, "no such chat session on this connection")
        contact = self.sessions[session]
        service = self.request.app[k.SERVICE]
        # (the session stays on the connection until its end is recorded: an `end` that fails,
        # Redis unavailable, can be sent again)
        current = await service.get_contact(self.who.tenant, contact.id)
        if current.status in ("queued", "offered"):
            try:
                current = await service.abandon(self.who.tenant, contact.id)
            except ContactNotWaiting:
                # assigned between the read and the abandon: the agent has the chat now, and
                # this connection stops following it all the same
                current = await service.get_contact(self.who.tenant, contact.id)
        self.sessions.pop(session, None)
        self._unwatch(session, contact.id)
        return {"type": "ended", "session_id": session, "contact": current.model_dump(mode="json")}

    def _unwatch(self, session: str, contact_id: str) -> None:
        self.told.discard(session)
        watcher = self.watchers.pop(session, None)
        if watcher is not None:
            self.request.app[k.HUB].unwatch(self.who.tenant, contact_id, watcher)

    async def push_positions(self) -> None:
        """Tell each waiting customer where they stand when it changes."""
        service = self.request.app[k.SERVICE]
        while not self.ws.closed:
            await asyncio.sleep(POSITION_PUSH_SECONDS)
            for session, before in list(self.sessions.items()):
                if before.status not in ("queued", "offered"):
                    continue  # assigned or over: no position to tell any more
                with contextlib.suppress(SwitchboardError):
                    now = await service.get_contact(self.who.tenant, before.id)
                    if self.sessions.get(session) is not before:
                        continue  # ended (or started again) while the others were read
                    if session in self.told:
                        continue  # assigned while it was read: no position after `assigned`
                    if now.status == "queued" and (
                        now.position != before.position
                        or now.estimated_wait_seconds != before.estimated_wait_seconds
                    ):
                        await self.send(
                            {
                                "type": "position",
                                "session_id": session,
                                "position": now.position,
                                "estimated_wait_seconds": now.estimated_wait_seconds,
                            }
                        )
                    self.sessions[session] = now

    def close(self) -> None:
        for session, contact in list(self.sessions.items()):
            self._unwatch(session, contact.id)


async def chat_socket(request: web.Request) -> web.StreamResponse:
    who = await principal(request, GATEWAY, websocket=True)
    ws = web.WebSocketResponse(heartbeat=request.app[k.SETTINGS].heartbeat_interval_seconds)
    await prepare(ws, request)
    transport = request.transport
    if transport is None:  # the gateway left during the handshake
        return ws
    request.app[k.SOCKETS].add(ws)
    sender = request.app[k.SENDERS].new(ws, transport, socket="chat", tenant=who.tenant)
    sock = ChatSocket(request, who, ws, sender)
    pusher = asyncio.create_task(sock.push_positions())
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await sock.send(error_message(BINARY_FRAME))
                continue
            if msg.type != WSMsgType.TEXT:
                continue
            ref = None
            try:
                data = parse_message(msg.data)
                ref = data.get("ref")
                kind = data.get("type")
                if kind == "start":
                    reply = await sock.start(data)
                elif kind == "end":
                    reply = await sock.end(data)
                else:
                    raise Problem(422, f"unknown message type {kind!r}")
            except orjson.JSONDecodeError:
                reply = error_message(Problem(400, "malformed JSON"))
            except AdapterError as exc:
                reply = error_message(_adapter_problem(exc))
            except IdentityError as exc:
                reply = error_message(Problem(422, str(exc)))
            except Problem as exc:
                reply = error_message(exc)
            except SwitchboardError as exc:
                reply = error_message(from_store(exc))
            if ref is not None:
                reply["ref"] = ref
            await sock.send(reply)
            while sock.after:
                await sock.send(sock.after.pop(0))
    finally:
        pusher.cancel()
        sock.close()
        request.app[k.SOCKETS].discard(ws)
    return ws


CHANNEL_ROUTES: list[Route] = [
    Route("POST", "/v1/channels/voice", voice_call, "Telephony webhook: a call arrives",
          GATEWAY, m.VoiceCall, m.Contact, 201, (400, 409, 413, 415, 422, 503),
          tags=("channels",)),
    Route("POST", "/v1/channels/email", email_message,
          "An email (message/rfc822 or JSON); replies join their thread", GATEWAY, m.EmailJson,
          m.Contact, 201, (400, 409, 413, 415, 422, 503), tags=("channels",),
          raw=("message/rfc822",)),
    Route("POST", "/v1/channels/sms", sms_message, "An SMS arrives", GATEWAY, m.SmsMessage,
          m.Contact, 201, (400, 409, 413, 415, 422, 503), tags=("channels",)),
    Route("GET", "/v1/channels/chat", chat_socket, "Chat gateway websocket", GATEWAY, None, None,
          101, (400,), tags=("channels",)),
    Route("PUT", "/v1/customers/{id}", put_customer, "Create or replace a customer profile",
          GATEWAY, m.CustomerIn, m.Customer, 201, (409, 422), tags=("customers",)),
    Route("GET", "/v1/customers/{id}", get_customer,
          "A customer's profile, segment and last contacts", GATEWAY, None, m.Customer, 200,
          (404,), tags=("customers",)),
    Route("DELETE", "/v1/customers/{id}", delete_customer,
          "Erase a customer: profile, numbers and addresses, history (refused while a contact "
          "of theirs is under way)", ADMIN, None, None, 204, (404, 409), tags=("customers",)),
]  # fmt: skip

__all__ = ["ADMIN", "CHANNEL_ROUTES"]
