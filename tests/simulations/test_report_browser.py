"""The simulation report is a page: open it in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = """
name: browser-check
routing:
  queues:
    - {name: main, agents: "agent.skills.main >= 1"}
  rules:
    - {name: default, steps: [{queue: main}]}
duration_hours: 2
warmup_hours: 0.5
replications: 2
arrivals:
  - channel: voice
    per_hour: 120
    handle_time: {dist: exponential, mean_seconds: 180}
    patience: {dist: exponential, mean_seconds: 120}
agents:
  - {name: agents, count: 6, skills: {main: 1}, capacity: {voice: 1}}
"""


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("SWITCHBOARD_CI") == "1":
        pytest.fail("chromium is not installed (CI must install it)")
    pytest.skip("no headless browser (chromium) installed")


def test_report_renders_every_chart_in_a_browser(tmp_path: Path) -> None:
    """`simulate --report` writes a page whose tables and every chart render in chromium."""
    browser = _browser()
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    report = tmp_path / "report"
    run = subprocess.run(
        [sys.executable, "-m", "router.cli", "simulate", str(scenario), "--report", str(report),
         "--no-progress"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    page = report / "index.html"
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    charts = re.search(r'data-charts="(\d+)"', dom.stdout)
    decoded = re.search(r'data-decoded="(\d+)"', dom.stdout)
    assert charts is not None, dom.stdout[:2000]
    assert decoded is not None, dom.stdout[:2000]
    assert int(charts.group(1)) >= 4
    assert decoded.group(1) == charts.group(1)
    assert "Simulation report: browser-check" in dom.stdout
    assert "<h2>By queue</h2>" in dom.stdout
    # the page links its CSV files, which lie beside it
    links = re.findall(r'<a href="([^"]+)">', dom.stdout)
    assert links == ["intervals.csv", "summary.csv"]
    for link in links:
        assert (report / link).read_text().startswith("start," if "interval" in link else "slice,")
