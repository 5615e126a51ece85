"""HTTP handlers of api-v1: parse a pydantic model, call the service, render the result.

``ROUTES`` is the single table the app registers and ``/openapi.json`` is generated from, so the
document cannot drift from what the handlers do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from config.routing import ConfigInvalid
from queues.keys import ID_PATTERN, valid_id
from router import appkeys as k
from router import models as m
from router.auth import AuthError, Principal, RoleName, bearer_token
from router.problems import Problem, from_validation
from router.reloads import QueuesStillWaiting
from router.service import FieldRefused
from router.ws import agent_socket

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    roles: tuple[RoleName, ...]
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    idempotent_header: bool = False
    tags: tuple[str, ...] = field(default=())
    raw: tuple[str, ...] = ()  # further request content types taken as raw bytes
    replays: bool = True  # a 201 answers 200 when it is sent again (a replay or an update)


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        body=model.__pydantic_serializer__.to_json(model),
        status=status,
        content_type="application/json",
    )


async def principal(
    request: web.Request, roles: tuple[RoleName, ...], websocket: bool = False
) -> Principal:
    """Who is calling, if one of ``roles``. A websocket handler passes ``websocket``: browsers
    cannot set headers on the handshake, so a token may come as ``?access_token=`` there (and
    only there: on other URLs it would end up in access logs and browser history)."""
    token = bearer_token(request)
    if not token and websocket:
        token = request.query.get("access_token", "")
    try:
        who = await request.app[k.AUTH].principal(token)
    except AuthError as exc:
        raise Problem(
            401, str(exc), kind="unauthorized", headers={"WWW-Authenticate": "Bearer"}
        ) from None
    # every log line of the request names its tenant (ids are per tenant)
    structlog.contextvars.bind_contextvars(tenant=who.tenant)
    if who.role not in roles:
        article = "an" if who.role[0] in "aeiou" else "a"
        raise Problem(403, f"{article} {who.role} token cannot do this", kind="forbidden")
    return who


def is_json(content_type: str) -> bool:
    """application/json, or a JSON type with the +json suffix (RFC 6839)."""
    return content_type == "application/json" or content_type.endswith("+json")


_BLANK = object()  # read_json: no default for a blank body
_EMPTY = object()  # read_body: a blank body where none is required


async def read_json(request: web.Request, blank: Any = _BLANK) -> Any:
    """The parsed JSON body (415 for another type, 400 for malformed JSON); a body of only
    white space is ``blank`` when one is given."""
    ctype = request.content_type
    if not is_json(ctype):
        raise Problem(415, f"expected application/json, got {ctype or 'nothing'}")
    raw = await read_limited(request, request.app[k.SETTINGS].max_body_bytes)
    if blank is not _BLANK and not raw.strip():
        return blank
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        detail = f"malformed JSON: {exc}"
        try:
            raw.decode()
        except UnicodeDecodeError as bad:
            # (orjson says "surrogates not allowed" of a Latin-1 or UTF-16 body)
            detail = f"malformed JSON: the body is not UTF-8 (byte {bad.start}); JSON is UTF-8"
        raise Problem(400, detail, kind="malformed-json") from None


async def read_body(request: web.Request, model: type[M], required: bool = True) -> M:
    if not request.body_exists:
        if required:
            raise Problem(400, "this request needs a JSON body")
        return model()
    data = await read_json(request, _BLANK if required else _EMPTY)
    if data is _EMPTY:
        return model()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body, or 413 as soon as it is known to exceed ``limit`` bytes."""
    too_large = Problem(413, f"the body exceeds this endpoint's limit of {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def path_id(request: web.Request, name: str = "id") -> str:
    value = request.match_info[name]
    if not valid_id(value):
        # (a PUT that creates is refused this way too: say what an id may be)
        what = name.removesuffix("_id") if name != "id" else "resource"
        raise Problem(404, f"no such {what}: ids match {ID_PATTERN}")
    return value


def _agent_scope(who: Principal, agent_id: str) -> None:
    if not who.may_act_as_agent(agent_id):
        raise Problem(403, "an agent token may only act for its own agent", kind="forbidden")


# ----------------------------------------------------------------------------- contacts

GATEWAY: tuple[RoleName, ...] = ("gateway", "admin")
ADMIN: tuple[RoleName, ...] = ("admin",)
ANY: tuple[RoleName, ...] = ("gateway", "admin", "agent")
AGENT: tuple[RoleName, ...] = ("agent", "admin")


async def create_contact(request: web.Request) -> web.StreamResponse:
    who = await principal(request, GATEWAY)
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        raise Problem(400, "the Idempotency-Key header is required", kind="missing-idempotency-key")
    if len(key) > 128:
        raise Problem(400, "Idempotency-Key is longer than 128 characters")
    try:
        key.encode()
    except UnicodeEncodeError:
        # (aiohttp hands header bytes that are not UTF-8 over as surrogates)
        raise Problem(400, "Idempotency-Key is not valid UTF-8") from None
    body = await read_body(request, m.ContactIn)
    created = await request.app[k.SERVICE].create_contact(who.tenant, body, "api", key)
    return created_contact(created.contact, created.created)


def created_contact(contact: m.Contact, created: bool) -> web.Response:
    """A contact made by a gateway: ``201`` with its URL in ``Location`` (RFC 9110), or ``200``
    for a replay."""
    response = _json(contact, 201 if created else 200)
    if created:
        response.headers["Location"] = f"/v1/contacts/{contact.id}"
    return response


async def get_contact(request: web.Request) -> web.StreamResponse:
    who = await principal(request, ANY)
    return _json(await request.app[k.SERVICE].get_contact(who.tenant, path_id(request)))


async def abandon_contact(request: web.Request) -> web.StreamResponse:
    who = await principal(request, GATEWAY)
    return _json(await request.app[k.SERVICE].abandon(who.tenant, path_id(request)))


async def cancel_contact(request: web.Request) -> web.StreamResponse:
    who = await principal(request, GATEWAY)
    service = request.app[k.SERVICE]
    return _json(await service.abandon(who.tenant, path_id(request), "cancelled"))


async def callback_contact(request: web.Request) -> web.StreamResponse:
    who = await principal(request, GATEWAY)
    body = await read_body(request, m.CallbackIn, required=False)
    try:
        contact = await request.app[k.SERVICE].callback(who.tenant, path_id(request), body)
    except FieldRefused as exc:
        raise Problem(
            422,
            f"{exc.field}: {exc}",
            kind="validation",
            errors=[{"loc": ["body", exc.field], "msg": str(exc)}],
        ) from None
    return _json(contact)


async def complete_contact(request: web.Request) -> web.StreamResponse:
    who = await principal(request, AGENT)
    body = await read_body(request, m.CompleteIn, required=False)
    service = request.app[k.SERVICE]
    return _json(await service.complete(who.tenant, path_id(request), who.agent_id, body))


# ------------------------------------------------------------------------ reservations


async def accept(request: web.Request) -> web.StreamResponse:
    who = await principal(request, AGENT)
    await read_body(request, m.AcceptIn, required=False)
    service = request.app[k.SERVICE]
    return _json(await service.accept(who.tenant, path_id(request), who.agent_id))


async def reject(request: web.Request) -> web.StreamResponse:
    who = await principal(request, AGENT)
    await read_body(request, m.RejectIn, required=False)
    service = request.app[k.SERVICE]
    return _json(await service.reject(who.tenant, path_id(request), who.agent_id))


# ------------------------------------------------------------------------------ agents


async def put_agent(request: web.Request) -> web.StreamResponse:
    who = await principal(request, ADMIN)
    body = await read_body(request, m.AgentIn)
    agent, created = await request.app[k.SERVICE].upsert_agent(who.tenant, path_id(request), body)
    return _json(agent, 201 if created else 200)


async def get_agent(request: web.Request) -> web.StreamResponse:
    who = await principal(request, AGENT)
    agent_id = path_id(request)
    _agent_scope(who, agent_id)
    return _json(await request.app[k.SERVICE].get_agent(who.tenant, agent_id))


async def set_agent_state(request: web.Request) -> web.StreamResponse:
    who = await principal(request, AGENT)
    agent_id = path_id(request)
    _agent_scope(who, agent_id)
    body = await read_body(request, m.AgentStateIn)
    return _json(await request.app[k.SERVICE].set_state(who.tenant, agent_id, body.state))


async def mint_token(request: web.Request) -> web.StreamResponse:
    who = await principal(request, ADMIN)
    agent_id = path_id(request)
    service = request.app[k.SERVICE]
    await service.get_agent(who.tenant, agent_id)  # 404 for an unknown agent
    settings = request.app[k.SETTINGS]
    token, expires = await request.app[k.AUTH].issuer.mint(
        who.tenant, agent_id, settings.agent_token_ttl_seconds, service.clock.now_ms() / 1000
    )
    return _json(m.Token(token=token, expires_at=expires), 201)  # type: ignore[arg-type]


async def agent_ws(request: web.Request) -> web.StreamResponse:
    who = await principal(request, AGENT, websocket=True)
    agent_id = path_id(request)
    _agent_scope(who, agent_id)
    return await agent_socket(request, who, agent_id)


# ------------------------------------------------------------------------ queues & ops


async def list_queues(request: web.Request) -> web.StreamResponse:
    who = await principal(request, ANY)
    return _json(m.QueueList(queues=await request.app[k.SERVICE].queues(who.tenant)))


async def get_queue(request: web.Request) -> web.StreamResponse:
    who = await principal(request, ANY)
    service = request.app[k.SERVICE]
    name = request.match_info["name"]
    if name not in service.engine.queue_config:
        # (never the name: a mistyped URL may hold a phone number or an email address)
        raise Problem(404, "no such queue")
    return _json((await service.queues(who.tenant, [name]))[0])


async def reload_config(request: web.Request) -> web.StreamResponse:
    who = await principal(request, ADMIN)
    if who.tenant != request.app[k.SETTINGS].default_tenant:
        # (one routing config serves every tenant: the operator's tenant reloads it)
        raise Problem(
            403,
            "the routing config is shared by every tenant: only an admin of the default tenant "
            "may reload it",
            kind="forbidden",
        )
    try:
        applied = await request.app[k.RELOADS].reload()
    except ConfigInvalid as exc:
        errors: list[dict[str, Any]] = [
            {"loc": [p.file, str(p.line or ""), p.path], "msg": p.message} for p in exc.problems
        ]
        raise Problem(
            422, "the routing config is invalid; nothing was applied", kind="config", errors=errors
        ) from None
    except QueuesStillWaiting as exc:
        raise Problem(409, str(exc), kind="queues-in-use") from None
    return _json(applied)


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    retry = {"Retry-After": str(request.app[k.SETTINGS].retry_after_seconds)}
    try:
        await request.app[k.REDIS].ping()
    except Exception:
        raise Problem(503, "redis is unreachable", headers=retry) from None
    if not request.app[k.HUB].ready.is_set():
        raise Problem(503, "event subscription not ready", headers=retry)
    return web.json_response({"status": "ready"})


ROUTES: list[Route] = [
    Route("POST", "/v1/contacts", create_contact, "Create a contact", GATEWAY, m.ContactIn,
          m.Contact, 201, (400, 409, 413, 415, 422, 503), True, ("contacts",)),
    Route("GET", "/v1/contacts/{id}", get_contact, "A contact with live position and wait", ANY,
          None, m.Contact, 200, (404,), tags=("contacts",)),
    Route("POST", "/v1/contacts/{id}/abandon", abandon_contact, "The customer left", GATEWAY,
          None, m.Contact, 200, (404, 409), tags=("contacts",)),
    Route("POST", "/v1/contacts/{id}/cancel", cancel_contact,
          "Withdraw a waiting or offered contact (not an abandonment)", GATEWAY, None, m.Contact,
          200, (404, 409), tags=("contacts",)),
    Route("POST", "/v1/contacts/{id}/callback", callback_contact,
          "Virtual hold: call back, keeping the place in line", GATEWAY, m.CallbackIn, m.Contact,
          200, (404, 409, 422), tags=("contacts",)),
    Route("POST", "/v1/contacts/{id}/complete", complete_contact, "End the conversation", AGENT,
          m.CompleteIn, m.Contact, 200, (403, 404, 409, 422), tags=("contacts",)),
    Route("POST", "/v1/reservations/{id}/accept", accept,
          "Accept an offer (again: the same answer while the contact is the agent's)", AGENT,
          m.AcceptIn, m.AcceptedOut, 200, (403, 404, 409), tags=("reservations",)),
    Route("POST", "/v1/reservations/{id}/reject", reject, "Decline an offer", AGENT, m.RejectIn,
          m.RejectedOut, 200, (403, 404, 409), tags=("reservations",)),
    Route("PUT", "/v1/agents/{id}", put_agent, "Create or update an agent", ADMIN, m.AgentIn,
          m.Agent, 201, (422,), tags=("agents",)),
    Route("GET", "/v1/agents/{id}", get_agent,
          "An agent's state, load, queues, offers and the contacts it holds", AGENT, None,
          m.Agent, 200, (403, 404), tags=("agents",)),
    Route("POST", "/v1/agents/{id}/state", set_agent_state, "Set available, away or offline",
          AGENT, m.AgentStateIn, m.Agent, 200, (403, 404, 422), tags=("agents",)),
    Route("POST", "/v1/agents/{id}/tokens", mint_token, "Mint a token for the agent", ADMIN,
          None, m.Token, 201, (404,), tags=("agents",), replays=False),
    Route("GET", "/v1/agents/{id}/ws", agent_ws, "The agent's websocket (offers, actions)", AGENT,
          None, None, 101, (400, 401, 403, 404, 503), tags=("agents",)),
    Route("GET", "/v1/queues", list_queues, "Every queue's depth, staffing and service level",
          ANY, None, m.QueueList, 200, tags=("queues",)),
    Route("GET", "/v1/queues/{name}", get_queue, "One queue", ANY, None, m.QueueOut, 200, (404,),
          tags=("queues",)),
    Route("POST", "/v1/config/reload", reload_config, "Validate and apply the routing config",
          ADMIN, None, m.ReloadOut, 200, (409, 422), tags=("operations",)),
    Route("GET", "/healthz", healthz, "Liveness", (), tags=("operations",)),
    Route("GET", "/readyz", readyz, "Readiness: Redis and the event subscription", (), None, None,
          200, (503,), tags=("operations",)),
]  # fmt: skip
