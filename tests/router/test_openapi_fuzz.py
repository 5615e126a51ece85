"""/openapi.json: a structurally valid OpenAPI 3.1 document of every route, and a bounded fuzz.

The fuzz loads the document from a running ``switchboard serve`` (on the session Redis, its
own tenant) with schemathesis, sends valid and invalid requests for every operation as the
admin, and requires that none is answered with a 5xx and that every answer conforms to the
document (a status it lists, with that response's content type, headers and schema).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from queues.embedded import EmbeddedRedis
from queues.keys import ID_PATTERN
from router.api import ROUTES
from router.api_channels import CHANNEL_ROUTES
from router.openapi import build
from tests.router.conftest import GATEWAY, Api, Served

EXAMPLES = 15  # per operation: about 350 requests in all
ADMIN = "fuzz-admin"


def test_document_is_openapi_3_1_listing_every_route() -> None:
    """Every route of ROUTES is an operation with responses; every $ref resolves."""
    doc = build("0.1.0")
    assert doc["openapi"] == "3.1.0"
    assert set(doc["info"]) >= {"title", "version"}
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    operations = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert operations == {(r.method, r.path) for r in ROUTES + CHANNEL_ROUTES}
    for path, item in doc["paths"].items():
        params = set(re.findall(r"{(\w+)}", path))
        for op in item.values():
            assert op["responses"], path
            assert all(re.fullmatch(r"[1-5]\d\d", code) for code in op["responses"])
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == params, path
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    media = response["content"]["application/problem+json"]
                    assert media["schema"] == {"$ref": "#/components/schemas/ProblemOut"}
    schemas = doc["components"]["schemas"]
    for ref in re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(doc)):
        assert ref in schemas


def test_document_matches_the_contract_shapes() -> None:
    """Contact create needs Idempotency-Key; errors are problems; roles are documented; an
    Agent lists the contacts it holds."""
    doc = build("0.1.0")
    create = doc["paths"]["/v1/contacts"]["post"]
    assert {"name": "Idempotency-Key", "in": "header", "required": True}.items() <= {
        **create["parameters"][0]
    }.items()
    assert set(create["responses"]) >= {"201", "200", "400", "401", "409", "413", "415", "422"}
    contact = doc["components"]["schemas"]["Contact"]
    assert set(contact["required"]) >= {"id", "channel", "status", "position", "queue", "rule"}
    assert doc["paths"]["/healthz"]["get"].get("security") is None
    assert doc["paths"]["/v1/agents/{id}"]["put"]["description"] == "Roles: admin"
    agent = doc["components"]["schemas"]["Agent"]
    assert set(agent["required"]) >= {"state", "load", "reservations", "contacts"}
    assert agent["properties"]["contacts"]["type"] == "array"
    assert agent["properties"]["contacts"]["items"] == {"type": "string"}


async def test_document_request_bodies_match_the_server(api: Api) -> None:
    """Each operation's requestBody says what the server does: ``required`` exactly when a
    request without a body is a 400, a 415 for text/plain that the responses list, and the
    raw email type (message/rfc822) among the email adapter's types, which the server takes."""
    doc = build("0.1.0")
    checked = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "requestBody" not in op:
                continue
            url = path.replace("{id}", "x1").replace("{name}", "billing")
            key = {"Idempotency-Key": f"doc-{method}-{path}"}
            json_type = {**key, "Content-Type": "application/json"}
            empty = await api.call(method.upper(), url, headers=json_type)
            assert (empty.status == 400) is op["requestBody"]["required"], (path, empty)
            typed = {**key, "Content-Type": "text/plain"}
            wrong = await api.call(method.upper(), url, data="x", headers=typed)
            assert wrong.status == 415, (path, wrong)
            assert {"400", "413", "415"} <= set(op["responses"]), path
            checked += 1
    assert checked == 11
    email = doc["paths"]["/v1/channels/email"]["post"]["requestBody"]["content"]
    assert set(email) == {"application/json", "message/rfc822"}
    raw = "Message-ID: <doc-1@example.com>\r\nFrom: ann@example.com\r\nTo: s@example.com\r\n\r\nhi"
    sent = await api.call(
        "POST",
        "/v1/channels/email",
        data=raw,
        token=GATEWAY,
        headers={"Content-Type": "message/rfc822"},
    )
    assert sent.status == 201, sent


async def test_an_operation_without_a_request_body_reads_none(api: Api) -> None:
    """An operation the document gives no requestBody does not read one: a text/plain body
    sent to it is no 415 (accept read its optional ``{}`` without the document saying so)."""
    doc = build("0.1.0")
    checked = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "requestBody" in op or "101" in op["responses"]:
                continue  # (a websocket's handshake has no body)
            url = path.replace("{id}", "x1").replace("{name}", "billing")
            typed = {"Content-Type": "text/plain"}
            reply = await api.call(method.upper(), url, data="x", headers=typed)
            assert reply.status != 415, (method, path, reply)
            checked += 1
    assert checked == 12


@pytest.mark.parametrize("key", ["", "k", "k" * 128, "k" * 129])
async def test_idempotency_key_schema_refuses_what_the_server_refuses(api: Api, key: str) -> None:
    """The Idempotency-Key parameter's schema holds a key valid exactly when the server takes
    it: an empty key is a 400 (missing), as one over 128 characters is (the schema allowed an
    empty one)."""
    doc = build("0.1.0")
    (param,) = doc["paths"]["/v1/contacts"]["post"]["parameters"]
    valid = jsonschema_rs.Draft202012Validator(param["schema"]).is_valid(key)
    headers = {"Idempotency-Key": key}
    reply = await api.call("POST", "/v1/contacts", {"channel": "voice"}, headers=headers)
    assert reply.status in (201, 400), reply
    assert valid is (reply.status == 201), reply


async def test_websockets_document_the_400_of_a_plain_request(api: Api) -> None:
    """A request to a websocket's URL that is no handshake is a 400, which both websocket
    operations list (neither did)."""
    await api.agent("ann", billing=1)
    doc = build("0.1.0")
    sockets = [
        (path, op)
        for path, item in doc["paths"].items()
        for op in item.values()
        if "101" in op["responses"]
    ]
    assert [path for path, _ in sockets] == ["/v1/agents/{id}/ws", "/v1/channels/chat"]
    for path, op in sockets:
        reply = await api.call("GET", path.replace("{id}", "ann"))
        assert reply.status == 400, (path, reply)
        assert "400" in op["responses"], path


async def test_websockets_document_the_access_token_parameter(api: Api) -> None:
    """The two websocket operations take the token as ``?access_token=`` as well as a bearer
    header, and the document says so (a security alternative, on them alone); the server opens
    both sockets with it."""
    await api.agent("ann", billing=1)
    token = await api.token("ann")
    doc = build("0.1.0")
    scheme = doc["components"]["securitySchemes"]["access_token"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "query", "access_token")
    for path, item in doc["paths"].items():
        for op in item.values():
            if "security" not in op:
                continue
            socket = "101" in op["responses"]
            assert ({"access_token": []} in op["security"]) is socket, path
            if socket:
                who = token if "{id}" in path else GATEWAY
                url = path.replace("{id}", "ann") + f"?access_token={who}"
                ws = await api.client.ws_connect(url)
                await ws.close()


#: a request body for each operation that answers 201
CREATED: dict[str, Any] = {
    "/v1/contacts": {"channel": "voice"},
    "/v1/agents/{id}": {"name": "Ann", "skills": {"billing": 1}},
    "/v1/agents/{id}/tokens": None,
    "/v1/channels/voice": {"call_id": "again-1"},
    "/v1/channels/sms": {"message_id": "again-1", "from": "+14155550100", "text": "hi"},
    "/v1/channels/email": {"message_id": "<again-1@example.com>", "from": "a@example.com"},
    "/v1/customers/{id}": {"name": "Ann"},
}


async def test_document_lists_200_where_sending_again_answers_it(api: Api) -> None:
    """An operation answering 201 lists a 200 exactly when the same request sent again answers
    200 (a replay, an update); minting a token answers 201 every time and lists no 200 (it
    did)."""
    doc = build("0.1.0")
    checked = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "201" not in op["responses"]:
                continue
            url = path.replace("{id}", "x1")
            key = {"Idempotency-Key": "again-1"}
            first = await api.call(method.upper(), url, CREATED[path], headers=key)
            again = await api.call(method.upper(), url, CREATED[path], headers=key)
            assert first.status == 201, (path, first)
            assert again.status in (200, 201), (path, again)
            assert ("200" in op["responses"]) is (again.status == 200), (path, again)
            checked += 1
    assert checked == len(CREATED)


#: gateway payloads, each sent to its adapter and checked against the adapter's schema
WEBHOOKS: list[tuple[str, dict[str, Any]]] = [
    ("voice", {"call_id": "v1", "from": "+14155550100", "to": "+18005550000",
               "ivr": {"language": "es", "intent": "billing", "digits": "2"}}),
    ("voice", {"call_id": "v2", "ivr": None}),
    ("voice", {"call_id": "v3", "colour": "red"}),
    ("voice", {"call_id": "v4", "ivr": {"langauge": "es"}}),
    ("voice", {"call_id": "v" * 129}),
    ("voice", {"call_id": ""}),
    ("voice", {"call_id": "v5", "from": "1" * 65}),
    ("sms", {"message_id": "s1", "from": "+14155550101", "to": "+18005550000", "text": ""}),
    ("sms", {"message_id": "s2", "from": "+14155550101", "text": "hi", "media": []}),
    ("sms", {"message_id": "s3", "from": "+14155550101", "text": "x" * 1601}),
    ("sms", {"message_id": "s4", "from": "", "text": "hi"}),
    ("email", {"message_id": "<e1@example.com>", "from": "ann@example.com",
               "to": "s@example.com", "subject": "s", "body": "b",
               "references": "<e0@example.com>"}),
    ("email", {"message_id": "<e2@example.com>", "from": "ann@example.com",
               "references": ["<e0@example.com>"], "in_reply_to": "<e0@example.com>"}),
    ("email", {"message_id": "<e3@example.com>", "from": "ann@example.com", "cc": "x"}),
    ("email", {"message_id": "<e4@example.com>", "from": "ann@example.com", "subject": "s" * 999}),
]  # fmt: skip


async def test_adapter_schemas_refuse_what_the_adapters_refuse(api: Api) -> None:
    """A gateway payload is valid by the document's schema exactly when its adapter takes it:
    an unknown key (at the top or in ``ivr``), an empty id or sender and a field over its
    length are refused by both (the schemas allowed any key and any length)."""
    for channel, payload in WEBHOOKS:
        path = f"/v1/channels/{channel}"
        valid = schema_accepts(CHANNEL_SCHEMAS[channel], payload)
        reply = await api.call("POST", path, payload, token=GATEWAY)
        assert reply.status in (201, 422), (path, payload, reply)
        assert valid is (reply.status == 201), (path, payload, reply)


CHANNEL_SCHEMAS = {"voice": "VoiceCall", "sms": "SmsMessage", "email": "EmailJson"}


def schema_accepts(name: str, payload: Any) -> bool:
    """Whether the document's schema ``name`` (a component) holds ``payload`` valid."""
    components = build("0.1.0")["components"]
    schema = {**components["schemas"][name], "components": components}
    return bool(jsonschema_rs.Draft202012Validator(schema).is_valid(payload))


@pytest.mark.parametrize(
    "skills",
    [{"billing": 10, "spanish_2": 0}, {"Billing": 1}, {"billing": 11}, {"billing": -1}],
)
async def test_agent_skill_schema_refuses_what_the_server_refuses(
    api: Api, skills: dict[str, int]
) -> None:
    """A skill name outside ``^[a-z][a-z0-9_]{0,63}$`` or a level outside 0..10 is refused by
    the AgentIn schema as by the server (the schema allowed any name and any level)."""
    body = {"name": "Ann", "skills": skills}
    reply = await api.call("PUT", "/v1/agents/ann", body)
    assert reply.status in (201, 422), reply
    assert schema_accepts("AgentIn", body) is (reply.status == 201), reply


VALID_BODIES: dict[tuple[str, str], Any] = {
    ("put", "/v1/agents/{id}"): {"name": "Ann", "skills": {}, "capacity": {"voice": 1}},
    ("post", "/v1/agents/{id}/state"): {"state": "away"},
    ("put", "/v1/customers/{id}"): {},
}


async def test_document_lists_the_404_of_a_bad_path_id(api: Api) -> None:
    """Every operation on an ``{id}`` lists 404 and the id's pattern, and the server answers a
    path id outside it with a 404 that says what an id may be (a PUT that creates as well);
    every operation with a body lists 422."""
    doc = build("0.1.0")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "requestBody" in op:
                assert "422" in op["responses"], path
            if "{id}" not in path:
                continue
            assert "404" in op["responses"], (method, path)
            (param,) = [p for p in op["parameters"] if p["name"] == "id"]
            assert param["schema"]["pattern"] == ID_PATTERN
            if path.endswith("/ws"):
                continue
            body = VALID_BODIES.get((method, path))  # (a bad body is refused first)
            reply = await api.call(method.upper(), path.replace("{id}", "-bad"), body)
            assert reply.status == 404, (method, path, reply)
            assert reply.body["detail"].endswith(f"ids match {ID_PATTERN}"), path


@pytest.mark.slow
def test_fuzzing_every_operation_finds_no_server_error(
    serve_child: Callable[..., Served], redis_server: EmbeddedRedis, tenant: str
) -> None:
    """Valid and invalid requests for each operation never get a 5xx, and every answer is one
    the document lists for the operation, with its content type, headers and schema."""
    served = serve_child(
        {
            "SWITCHBOARD_REDIS_URL": redis_server.url,
            "SWITCHBOARD_DEFAULT_TENANT": tenant,
            "SWITCHBOARD_ADMIN_TOKEN": ADMIN,
            "SWITCHBOARD_LOG_LEVEL": "warning",
        }
    )
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    tried: list[str] = []
    session = requests.Session()  # keep-alive: a new connection per case triples the time
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            pytest.fail(f"schemathesis cannot read an operation: {result.err()}")
        operation = result.ok()
        tried.append(f"{operation.method.upper()} {operation.path}")
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def fuzz(case: Any) -> None:
            case.call_and_validate(
                base_url=served.url,
                session=session,
                headers=headers,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                    response_headers_conformance,
                ],
                timeout=10,
            )

        fuzz()
    session.close()
    assert len(tried) == len(ROUTES + CHANNEL_ROUTES)
    assert "Traceback" not in served.output()
