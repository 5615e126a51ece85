"""/openapi.json: an OpenAPI 3.1 document generated from ``api.ROUTES`` and the models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from queues.keys import ID_PATTERN
from router import models as m
from router.api import ROUTES
from router.api_channels import CHANNEL_ROUTES

ALL_ROUTES = ROUTES + CHANNEL_ROUTES

_DESCRIPTIONS = {
    400: "Malformed JSON, a missing body or a missing Idempotency-Key; on a websocket's URL, a"
    " request that is not a websocket handshake",
    401: "No token, or a token that does not verify",
    403: "The token lacks the right",
    404: "Unknown id",
    409: "State conflict (taken or expired reservation, reused Idempotency-Key, a queue in use,"
    " a customer's contact under way)",
    413: "Body too large",
    415: "Wrong content type",
    422: "Validation failure; `errors` lists each field",
    429: "Over the client's rate limit (SWITCHBOARD_RATE_LIMIT_PER_SECOND); see Retry-After",
    503: (
        "The store is unreachable (nothing was recorded), did not answer in time (the request"
        " may have been applied) or is out of memory (store-full: nothing was recorded); see"
        " Retry-After"
    ),
}


#: the header of a 201 that made a contact
LOCATION = {
    "description": "The new contact's URL, /v1/contacts/{id}",
    "schema": {"type": "string"},
}

#: bodies their handlers read with ``read_body(required=False)``: every other body is required
_OPTIONAL_BODIES: set[type[BaseModel]] = {m.AcceptIn, m.CallbackIn, m.CompleteIn, m.RejectIn}


def build(version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {m.ProblemOut}
    for route in ALL_ROUTES:
        models.update(x for x in (route.body, route.response) if x is not None)
    keyed: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (model, "validation" if model in _bodies() else "serialization") for model in models
    ]
    refs, schema = models_json_schema(
        sorted(keyed, key=lambda pair: pair[0].__name__),
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in ALL_ROUTES:
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "tags": list(route.tags),
            "responses": {},
        }
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in ("id", "name")
            if "{" + name + "}" in route.path
        ]
        for param in params:
            if param["name"] == "id":  # (path_id: any other is a 404)
                param["schema"]["pattern"] = ID_PATTERN
        if route.idempotent_header:
            params.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                }
            )
        if params:
            op["parameters"] = params
        if route.roles:
            op["security"] = [{"bearer": []}]
            if route.status == 101:  # (browsers cannot set headers on a websocket handshake)
                op["security"].append({"access_token": []})
            op["description"] = "Roles: " + ", ".join(route.roles)
        if route.body is not None:
            op["requestBody"] = {
                "required": route.body not in _OPTIONAL_BODIES,
                "content": {"application/json": {"schema": refs[(route.body, "validation")]}},
            }
            for ctype in route.raw:  # taken as they come: bytes, not JSON
                op["requestBody"]["content"][ctype] = {"schema": {"type": "string"}}
        ok: dict[str, Any] = {"description": "Success"}
        if route.response is not None:
            ok["content"] = {
                "application/json": {"schema": refs[(route.response, "serialization")]}
            }
        op["responses"][str(route.status)] = ok
        if route.status == 201 and route.replays:
            op["responses"]["200"] = {**ok, "description": "Replay or update of the same resource"}
        if route.status == 201 and route.response is m.Contact:
            ok["headers"] = {"Location": LOCATION}  # (a replay's 200 has none)
        problem = {"application/problem+json": {"schema": refs[(m.ProblemOut, "serialization")]}}
        errors = set(route.errors)
        if route.roles:
            errors |= {401, 403, 429}
            if route.status != 101:  # (a websocket's handshake lists its own)
                errors.add(503)  # (every call with a token reads or writes the store)
        if route.body is not None:  # (read_body: malformed, over the limit, not JSON, invalid)
            errors |= {400, 413, 415, 422}
        if "{id}" in route.path:
            errors.add(404)  # (an id that is not one is a 404, even for a PUT that creates)
        for status in sorted(errors):
            op["responses"][str(status)] = {
                "description": _DESCRIPTIONS[status],
                "content": problem,
            }
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard API",
            "version": version,
            "description": "Omnichannel contact routing (api-v1).",
        },
        "paths": paths,
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "access_token": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "access_token",
                    "description": "The bearer token on a websocket's URL, for browsers; "
                    "ignored on every other URL",
                },
            },
        },
    }


def _bodies() -> set[type[BaseModel]]:
    return {r.body for r in ALL_ROUTES if r.body is not None}
