"""Process settings: defaults, the SWITCHBOARD_ environment, validation and token parsing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from config.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without SWITCHBOARD_* variables from the shell that runs it."""
    for name in os.environ:
        if name.upper().startswith("SWITCHBOARD_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    """With nothing set: local bind on 8080, the demo config, an embedded Redis, no tokens."""
    s = Settings()
    assert (s.host, s.port, s.config, s.redis_url) == ("127.0.0.1", 8080, "", "")
    assert s.data_dir == Path("var")
    assert s.redis_fsync == "always"
    assert s.contact_retention_days == 90
    assert s.default_tenant == "default"
    assert s.static_tokens() == {}
    assert s.tenants() == ["default"]


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SWITCHBOARD_* variables are read (JSON for mappings); unprefixed ones are not."""
    monkeypatch.setenv("SWITCHBOARD_PORT", "9090")
    monkeypatch.setenv("SWITCHBOARD_TOKENS", '{"gw-1": "gateway:acme"}')
    monkeypatch.setenv("SWITCHBOARD_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("HOST", "0.0.0.0")
    s = Settings()
    assert s.port == 9090
    assert s.host == "127.0.0.1"
    assert s.tokens == {"gw-1": "gateway:acme"}
    assert s.admin_token is not None
    assert s.admin_token.get_secret_value() == "s3cret"


def test_secrets_do_not_leak_into_repr() -> None:
    """The admin token and secret key are masked in the settings' repr."""
    s = Settings(admin_token=SecretStr("s3cret"), secret_key=SecretStr("k3y"))
    assert "s3cret" not in repr(s)
    assert "k3y" not in repr(s)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", 70000),
        ("port", -1),
        ("redis_fsync", "never"),
        ("log_format", "xml"),
        ("timer_batch", 0),
        ("heartbeat_interval_seconds", 0),
        ("contact_retention_days", -1),
        ("contact_retention_days", 36501),
        ("contact_retention_days", "ninety"),
    ],
)
def test_invalid_values_are_rejected(field: str, value: object) -> None:
    """Out-of-range or unknown values fail validation, naming the field."""
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({field: value})
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


def test_contacts_are_kept_as_long_as_a_replay_may_ask_for_them() -> None:
    """A retention shorter than the idempotency TTL is refused (a replay answers with the
    contact first created); 0 keeps contacts for good, so any TTL goes with it."""
    with pytest.raises(ValidationError) as caught:
        Settings(contact_retention_days=1, idempotency_ttl_seconds=2 * 86_400)
    [error] = caught.value.errors()
    assert error["loc"] == ("contact_retention_days",)
    assert "SWITCHBOARD_IDEMPOTENCY_TTL_SECONDS" in error["msg"]
    Settings(contact_retention_days=2, idempotency_ttl_seconds=2 * 86_400)
    Settings(contact_retention_days=0, idempotency_ttl_seconds=400 * 86_400)


def test_static_tokens_roles_and_tenants() -> None:
    """Tokens map to (role, tenant); a missing tenant is the default; the admin token is added."""
    s = Settings(
        tokens={"gw-1": "gateway:acme", "ad-2": "admin", "gw-3": "gateway:"},
        admin_token=SecretStr("boot"),
        default_tenant="main",
    )
    assert s.static_tokens() == {
        "gw-1": ("gateway", "acme"),
        "ad-2": ("admin", "main"),
        "gw-3": ("gateway", "main"),
        "boot": ("admin", "main"),
    }
    assert s.tenants() == ["acme", "main"]


def test_empty_admin_token_is_not_a_token() -> None:
    """An empty admin token grants nothing (it is not registered as the token '')."""
    assert Settings(admin_token=SecretStr("")).static_tokens() == {}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tokens", {"t": "agent:acme"}, "role admin or gateway, not 'agent:acme'"),
        ("tokens", {"t": "gateway:a{b}"}, "tenant 'a{b}' in 'gateway:a{b}'"),
        ("tokens", {"t": "gateway:a:b"}, "tenant 'a:b'"),
        ("default_tenant", "x y", "String should match pattern"),
        ("default_tenant", "", "String should match pattern"),
    ],
)
def test_bad_tokens_and_tenants_are_rejected(field: str, value: object, message: str) -> None:
    """A token's role must be admin or gateway, and a tenant name must fit in a key's hash tag:
    both fail when the settings are read, naming the field (not later, in a request)."""
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({field: value})
    (error,) = caught.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]
