"""``logs.info``: the per-contact decision line, built without structlog's machinery.

It must write what ``logger.info`` writes (same keys, context and redaction), skip scrubbing
only for the fields it is told never hold personal data, and step aside whenever structlog is
configured otherwise.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from router import logs
from router.service import _DECISION_PLAIN
from tests.support import json_logs

KEY = b"test-log-hash-key-0123456789abcdef"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    with json_logs(KEY) as out:
        yield out


def _fields() -> dict[str, Any]:
    return {
        "contact_id": "c0123456789abcdef",
        "channel": "voice",
        "segment": "gold",
        "priority": 45.0,
        "agent_id": "+14155550100",
        "candidates": {"agents": ["ana@example.com"], "queues": {"billing": "longest_idle"}},
        "why": "+14155550100 had been idle longest among the free agents of billing",
        "position": None,
    }


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_direct_line_equals_the_structlog_line(stream: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(request_id="r-1")
    log = structlog.get_logger("test")
    log.info("routing.decision", **_fields())
    logs.info(log, "routing.decision", _fields(), _DECISION_PLAIN)
    slow, fast = _lines(stream)
    assert slow.pop("timestamp")[:10] == fast.pop("timestamp")[:10]
    assert fast == slow
    assert list(fast) == list(slow)
    assert "4155550100" not in stream.getvalue()
    assert "ana@example.com" not in stream.getvalue()
    assert str(fast["agent_id"]).startswith("h:")


def test_plain_fields_are_written_as_they_are(stream: io.StringIO) -> None:
    log = structlog.get_logger("test")
    logs.info(log, "e", {"note": "call 4155550100", "id": "call 4155550100"}, frozenset({"id"}))
    (line,) = _lines(stream)
    assert line["id"] == "call 4155550100"
    assert "4155550100" not in str(line["note"])


def test_level_and_reconfiguration_are_respected() -> None:
    quiet = io.StringIO()
    logs.configure(KEY, "json", "warning", stream=quiet)
    try:
        logs.info(structlog.get_logger("t"), "e", _fields(), _DECISION_PLAIN)
        assert quiet.getvalue() == ""
        other = io.StringIO()
        structlog.configure(
            processors=[structlog.processors.JSONRenderer()],
            logger_factory=structlog.PrintLoggerFactory(other),
            wrapper_class=structlog.make_filtering_bound_logger(0),
        )
        logs.info(structlog.get_logger("t"), "e", {"a": 1}, frozenset())
        assert json.loads(other.getvalue()) == {"a": 1, "event": "e"}
        assert quiet.getvalue() == ""
    finally:
        structlog.reset_defaults()
