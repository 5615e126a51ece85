"""The shipped Prometheus files pass promtool: config, rules, and unit tests for every alert."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.ops.conftest import PROMETHEUS_DIR, tool

RULES = PROMETHEUS_DIR / "switchboard-rules.yml"
ALERTS = PROMETHEUS_DIR / "switchboard-alerts.yml"
TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *map(str, args)],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_promtool_check_rules() -> None:
    """promtool check rules accepts the recording rules and the alerts."""
    result = _promtool("check", "rules", RULES, ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_config() -> None:
    """The example prometheus.yml is valid and loads both rule files."""
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


def test_promtool_test_rules() -> None:
    """The promtool unit tests of the recording rules and alerts pass."""
    assert TESTS, "no promtool unit tests"
    result = _promtool("test", "rules", *TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_unit_test() -> None:
    """Each alert in the shipped file is expected to fire in some promtool unit test."""
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert len(alerts) == 7
    fired: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text()).get("tests", []):
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    assert alerts <= fired, alerts - fired
