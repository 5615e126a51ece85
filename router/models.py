"""The API's request and response bodies (api-v1 §2-§5), also the source of /openapi.json."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from queues.keys import ID_PATTERN

ChannelName = Literal["voice", "chat", "email", "sms", "callback"]
CapacityName = Literal["voice", "chat", "email", "sms"]
StateName = Literal["available", "away", "offline"]
ContactStatus = Literal[
    "queued", "offered", "assigned", "wrapping", "completed", "abandoned", "cancelled"
]
Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=128)]
MAX_ATTRIBUTES_BYTES = 4096


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(orjson.dumps(value)) > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"attributes exceed {MAX_ATTRIBUTES_BYTES} bytes serialized")
    return value


class ContactIn(_In):
    """A new contact from a gateway."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    channel: ChannelName
    from_: str | None = Field(default=None, alias="from", min_length=1, max_length=320)
    customer_id: Id | None = None
    language: str | None = Field(default=None, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
    intent: str | None = Field(default=None, max_length=64)
    subject: str | None = Field(default=None, max_length=998)
    body: str | None = Field(default=None, max_length=32768)
    attributes: dict[str, Any] | None = None

    _attributes = field_validator("attributes")(_check_attributes)


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
    position: int | None = Field(description="1-based place in line while queued")
    estimated_wait_seconds: float | None = Field(
        description="null when no agent is staffed for the contact's queues"
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
    not_before: datetime | None = None


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
    skills: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")], int] = Field(
        default_factory=dict
    )
    capacity: dict[CapacityName, Annotated[int, Field(ge=0, le=100)]] = Field(
        default_factory=_one_voice
    )
    attributes: dict[str, Any] | None = None

    _attributes = field_validator("attributes")(_check_attributes)

    @field_validator("skills")
    @classmethod
    def _levels(cls, value: dict[str, int]) -> dict[str, int]:
        for name, level in value.items():
            if not 0 <= level <= 10:
                raise ValueError(f"skill {name!r} level must be 0..10")
        return value


class Agent(BaseModel):
    id: str
    name: str
    skills: dict[str, int]
    capacity: dict[str, int]
    state: StateName
    load: dict[str, int]
    queues: list[str]
    reservations: list[str]
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


class FieldError(BaseModel):
    loc: list[str]
    msg: str


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
