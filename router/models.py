"""The API's request and response bodies (api-v1 §2-§5), also the source of /openapi.json."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from channels import classify
from channels.classify import LANGUAGE_TAG
from queues.keys import ID_PATTERN

ChannelName = Literal["voice", "chat", "email", "sms", "callback"]
CapacityName = Literal["voice", "chat", "email", "sms"]
StateName = Literal["available", "away", "offline"]
ContactStatus = Literal[
    "queued", "offered", "assigned", "wrapping", "completed", "abandoned", "cancelled"
]
Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=128)]
MAX_ATTRIBUTES_BYTES = 4096


MAX_ATTRIBUTES_DEPTH = 16


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests objects and arrays (0 for a scalar), without recursion; it
    stops counting past ``MAX_ATTRIBUTES_DEPTH``."""
    deepest, todo = 0, [(value, 1)]
    while todo and deepest <= MAX_ATTRIBUTES_DEPTH:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            todo += [(v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def _check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return value
    # (first: a serializer gives up on deep nesting with an error of its own)
    if _depth(value) > MAX_ATTRIBUTES_DEPTH:
        raise ValueError(f"attributes nest deeper than {MAX_ATTRIBUTES_DEPTH} levels")
    if len(orjson.dumps(value)) > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"attributes exceed {MAX_ATTRIBUTES_BYTES} bytes serialized")
    return value


class ContactIn(_In):
    """A new contact from a gateway."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    channel: ChannelName
    from_: str | None = Field(default=None, alias="from", min_length=1, max_length=320)
    customer_id: Id | None = None
    language: str | None = Field(default=None, pattern=LANGUAGE_TAG, max_length=64)
    intent: str | None = Field(default=None, max_length=64)
    subject: str | None = Field(default=None, max_length=998)
    body: str | None = Field(default=None, max_length=32768)
    attributes: dict[str, Any] | None = None

    _attributes = field_validator("attributes")(_check_attributes)

    @field_validator("language")
    @classmethod
    def _language_case(cls, value: str | None) -> str | None:
        # one spelling per tag whichever channel brought it ("ES-mx" and "es-MX" alike)
        return None if value is None else classify.language_tag(value)


class CustomerBrief(BaseModel):
    id: str | None
    segment: str
    value: float


class Contact(BaseModel):
    id: str
    channel: ChannelName
    status: ContactStatus
    queue: str
    priority: float = Field(description="seconds of wait credit")
    position: int | None = Field(
        description="1-based place in line while queued: the best of its places when it waits "
        "in several lines (queues, named agents)"
    )
    estimated_wait_seconds: float | None = Field(
        description="the shortest of its lines' estimates; null when no agent is staffed for "
        "the contact's queues"
    )
    created_at: datetime
    customer: CustomerBrief
    agent_id: str | None
    reservation_id: str | None
    rule: str
    language: str | None = None
    intent: str | None = None
    disposition: str | None = None


class CallbackIn(_In):
    number: str | None = Field(default=None, min_length=3, max_length=32)
    #: RFC 3339, with an offset; at most MAX_CALLBACK_DAYS ahead (checked against the clock
    #: by the service)
    not_before: AwareDatetime | None = None

    @field_validator("not_before", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        # (pydantic would read a number as Unix seconds: the contract's times are strings)
        if value is not None and not isinstance(value, str):
            raise ValueError("expected an RFC 3339 time, e.g. 2026-11-23T18:00:00Z")
        return value


class CompleteIn(_In):
    disposition: str | None = Field(default=None, max_length=64)
    notes: str | None = Field(default=None, max_length=4000)
    wrap_up_seconds: float | None = Field(default=None, ge=0, le=3600)


class AcceptIn(_In):
    """Accept takes no fields; an empty object or no body."""


class RejectIn(_In):
    reason: str | None = Field(default=None, max_length=200)


def _one_voice() -> dict[CapacityName, int]:
    return {"voice": 1}


class AgentIn(_In):
    name: str = Field(min_length=1, max_length=200)
    # (strict: "5" or true is not a level or a capacity; /openapi.json says that a name outside
    # the pattern is refused, which patternProperties alone would not)
    skills: dict[
        Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")],
        Annotated[int, Field(strict=True, ge=0, le=10)],
    ] = Field(default_factory=dict, json_schema_extra={"additionalProperties": False})
    capacity: dict[CapacityName, Annotated[int, Field(ge=0, le=100, strict=True)]] = Field(
        default_factory=_one_voice
    )
    attributes: dict[str, Any] | None = None

    _attributes = field_validator("attributes")(_check_attributes)


class Agent(BaseModel):
    id: str
    name: str
    skills: dict[str, int]
    capacity: dict[str, int]
    state: StateName
    load: dict[str, int]
    queues: list[str]
    reservations: list[str]
    contacts: list[str] = Field(
        description="the contacts the agent holds (accepted: assigned, or wrapping up), in the "
        "order accepted"
    )
    attributes: dict[str, Any] | None = None


class AgentStateIn(_In):
    state: StateName


class Token(BaseModel):
    token: str
    expires_at: datetime


class AcceptedOut(BaseModel):
    reservation_id: str
    contact: Contact


class RejectedOut(BaseModel):
    reservation_id: str
    status: Literal["rejected"] = "rejected"


class QueueOut(BaseModel):
    name: str
    waiting: int
    scheduled_callbacks: int = Field(
        description="callbacks scheduled for later (not_before): out of line, not in `waiting`, "
        "until their time"
    )
    oldest_wait_seconds: float | None
    agents_staffed: int
    agents_available: int
    service_level: float | None = Field(
        description="today (UTC): answered within threshold "
        "/ (answered + abandoned); null before any contact"
    )
    estimated_wait_seconds: float | None


class QueueList(BaseModel):
    queues: list[QueueOut]


class ReloadOut(BaseModel):
    status: Literal["applied"] = "applied"
    queues: int
    rules: int
    agents_recomputed: int
    #: other instances on the same Redis told to reload their config file
    instances_notified: int = 0
    #: removed queue -> contacts that still depend on it once the config is in force here:
    #: routed, offered or moved on by the old config between the check and the apply (None:
    #: that second check could not read the store)
    stranded: dict[str, int] | None = {}


class FieldError(BaseModel):
    loc: list[str]
    msg: str


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class CustomerIn(_In):
    name: str | None = Field(default=None, max_length=200)
    phones: list[Annotated[str, Field(min_length=3, max_length=32)]] = Field(
        default_factory=list, max_length=20
    )
    emails: list[Annotated[str, Field(min_length=3, max_length=320)]] = Field(
        default_factory=list, max_length=20
    )
    chat_handles: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=20
    )
    value: float | None = Field(default=None, ge=0)
    churn_risk: float | None = Field(default=None, ge=0, le=1)
    products: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=100
    )
    attributes: dict[str, Any] | None = None

    _attributes = field_validator("attributes")(_check_attributes)


class HistoryItem(BaseModel):
    contact_id: str
    channel: str
    created_at: datetime
    queue: str
    agent_id: str | None
    status: str
    disposition: str | None


class Customer(BaseModel):
    id: str
    name: str | None = None
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    chat_handles: list[str] = Field(default_factory=list)
    value: float = 0.0
    churn_risk: float = 0.0
    products: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] | None = None
    segment: str = Field(description="derived by the routing config's segment rules")
    history: list[HistoryItem] = Field(description="last contacts on every channel, newest first")


class _Webhook(BaseModel):
    """A gateway's native payload as /openapi.json describes it. The adapters in ``channels/``
    read the payload themselves; these models only say what they take: no other key (a
    misspelt one would route as if unset), the same lengths, '' as good as absent for an
    optional text."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class IvrChoice(_Webhook):
    language: str | None = Field(default=None, max_length=64, description="a BCP 47 tag")
    intent: str | None = Field(default=None, max_length=64)
    digits: str | None = Field(default=None, max_length=32)


class VoiceCall(_Webhook):
    """Telephony webhook body."""

    call_id: str = Field(min_length=1, max_length=128)
    from_: str | None = Field(
        default=None,
        alias="from",
        max_length=64,
        description="none or `anonymous` etc.: the number was withheld",
    )
    to: str | None = Field(default=None, max_length=64)
    ivr: IvrChoice | None = None


class SmsMessage(_Webhook):
    message_id: str = Field(min_length=1, max_length=128)
    from_: str = Field(alias="from", min_length=1, max_length=64)
    to: str | None = Field(default=None, max_length=64)
    text: str = Field(max_length=1600, description="may be empty")


class EmailJson(_Webhook):
    message_id: str = Field(min_length=1, max_length=250)
    from_: str = Field(alias="from", min_length=1, max_length=320)
    to: str | None = None
    subject: str | None = Field(default=None, max_length=998)
    body: str | None = Field(default=None, max_length=32768)
    in_reply_to: str | None = Field(default=None, max_length=250)
    references: list[str] | str | None = Field(
        default=None, description="message ids: a list, or one string as in a References header"
    )
