"""`switchboard staff` and `switchboard simulate` through the real CLI, in a subprocess."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulations import commands
from simulations.commands import ProgressBar

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "simulations" / "scenarios"


def switchboard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def rounds_to(value: float, published: str) -> bool:
    """True when ``value`` is within half a unit of the 4th decimal of ``published`` (of its
    last decimal, when published with fewer)."""
    decimals = min(4, len(published.partition(".")[2]))
    return abs(value - float(published)) <= 0.5 * 10.0**-decimals


def staff_json(tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "staff.json"
    args = ["staff", "--per-hour", "200", "--aht", "180", "--threshold", "20", "--target", "0.8"]
    done = switchboard(*args, *extra, "--json", str(out))
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(out.read_text())
    data["stdout"] = done.stdout
    return data


def test_staff_erlang_c_reproduces_published_rows(tmp_path: Path) -> None:
    """`staff` gives the published Erlang C rows N = 11, 14, 15 to 4 decimals and picks 14."""
    data = staff_json(tmp_path)
    rows = {r["agents"]: r for r in data["rows"]}
    published = {
        11: {"p_wait": "0.6821", "occupancy": "0.909"},
        14: {"p_wait": "0.17413", "service_level": "0.88835", "asa_seconds": "7.836"},
        15: {"p_wait": "0.102", "service_level": "0.941", "occupancy": "0.667"},
    }
    published[14]["occupancy"] = "0.71429"
    for n, figures in published.items():
        for key, value in figures.items():
            assert rounds_to(rows[n][key], value), (n, key, rows[n][key], value)
    assert data["model"] == "erlang_c"
    assert data["recommended"] == 14
    assert "smallest count meeting the target: 14 agents" in data["stdout"]


def test_staff_erlang_a_reproduces_published_row(tmp_path: Path) -> None:
    """With --patience 300 the N = 14 row matches the published Erlang A figures."""
    data = staff_json(tmp_path, "--patience", "300")
    row = next(r for r in data["rows"] if r["agents"] == 14)
    published = {"p_wait": "0.14526", "abandon_rate": "0.013984", "occupancy": "0.704297"}
    published |= {"mean_wait_seconds": "4.195", "service_level": "0.916792"}
    for key, value in published.items():
        assert rounds_to(row[key], value), (key, row[key], value)
    assert data["model"] == "erlang_a"
    assert "Erlang A" in data["stdout"]


def test_staff_with_endless_patience_is_the_erlang_c_answer(tmp_path: Path) -> None:
    """--patience 1e300 (no one ever gives up) answers as Erlang C does, exit 0, instead of
    failing to sum the Erlang A chain."""
    erlang_c = staff_json(tmp_path)
    data = staff_json(tmp_path, "--patience", "1e300")
    assert data["model"] == "erlang_a"
    assert data["recommended"] == erlang_c["recommended"] == 14
    rows = {r["agents"]: r for r in data["rows"]}
    for row in erlang_c["rows"]:
        assert rows[row["agents"]] == pytest.approx(row, rel=1e-12)
    # at the load (A = 10) the queue never empties: nobody answered in time, nobody abandons
    assert rows[10]["service_level"] == 0.0
    assert rows[10]["asa_seconds"] is None
    assert rows[10]["abandon_rate"] == 0.0


def test_staff_without_load_is_a_usage_error() -> None:
    """`staff` with neither a load nor a scenario exits 2 and says what it needs."""
    done = switchboard("staff")
    assert done.returncode == 2
    assert "--per-hour" in done.stderr


def _small_scenario(tmp_path: Path, target: float = 0.8, hours: float = 6) -> Path:
    data = yaml.safe_load((SCENARIOS / "erlang_c.yaml").read_text())
    data["routing"]["service_levels"]["voice"]["target"] = target
    data["duration_hours"] = hours
    data["replications"] = 2
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_simulate_writes_json_and_report(tmp_path: Path) -> None:
    """`simulate --json --report` writes every §7 section and an HTML page with four charts."""
    scenario = _small_scenario(tmp_path, hours=3)
    out, report = tmp_path / "out.json", tmp_path / "report"
    done = switchboard(
        "simulate", str(scenario), "--seed", "3", "--replications", "2",
        "--json", str(out), "--report", str(report), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    figures = {"offered", "answered", "abandoned", "service_level", "asa_seconds"}
    figures |= {"abandon_rate", "occupancy"}
    assert figures <= data["overall"].keys()
    assert figures <= data["overall"]["half_widths"].keys()
    for group in ("by_queue", "by_segment", "by_channel"):
        assert all(figures <= e.keys() for e in data[group].values())
    assert len(data["by_interval"]) == 4  # 2 h after the warm-up, 30-minute intervals
    assert data["scenario"]["replications"] == 2
    page = (report / "index.html").read_text()
    images = page.split('src="data:image/png;base64,')[1:]
    assert len(images) == 4
    for image in images:
        assert base64.b64decode(image.split('"')[0]).startswith(b"\x89PNG")
    assert "service level" in done.stdout


def test_report_has_the_json_figures_as_csv(tmp_path: Path) -> None:
    """`--report` writes intervals.csv and summary.csv beside index.html, linked from it:
    every figure and half-width of the JSON's intervals and slices, at full precision."""
    scenario = _small_scenario(tmp_path, hours=3)
    out, report = tmp_path / "out.json", tmp_path / "report"
    done = switchboard(
        "simulate", str(scenario), "--replications", "2", "--json", str(out),
        "--report", str(report), "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    page = (report / "index.html").read_text()
    assert "href='intervals.csv'" in page
    assert "href='summary.csv'" in page

    def check(row: dict[str, str], entry: dict[str, Any]) -> int:
        checked = 0
        for key, value in entry.items():
            if key == "half_widths":
                for name, width in value.items():
                    cell = row.pop(f"{name}_half_width")
                    assert cell == ("" if width is None else repr(float(width))), (name, cell)
                    checked += 1
                continue
            cell = row.pop(key)
            assert cell == ("" if value is None else repr(float(value))), (key, cell)
            checked += 1
        return checked

    with (report / "intervals.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(data["by_interval"]) == 4  # (3 h, the first one a warm-up)
    for row, entry in zip(rows, data["by_interval"], strict=True):
        start = entry["start_seconds"]
        assert row.pop("start") == f"{int(start // 3600):02d}:{int(start % 3600 // 60):02d}"
        assert check(row, entry) > 20
        assert row == {}  # (nothing but the JSON's figures)
    with (report / "summary.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    slices = [("overall", {"all contacts": data["overall"]})]
    slices += [(k.removeprefix("by_"), data[k]) for k in ("by_queue", "by_segment", "by_channel")]
    expected = [(kind, name, e) for kind, entries in slices for name, e in entries.items()]
    assert [(r["slice"], r["name"]) for r in rows] == [(k, n) for k, n, _ in expected]
    for row, (_, _, entry) in zip(rows, expected, strict=True):
        del row["slice"], row["name"]
        assert check(row, entry) > 20
        assert row == {}


def test_simulate_rejects_a_bad_scenario(tmp_path: Path) -> None:
    """An invalid scenario exits 2 with the problem on stderr and writes nothing."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("routing: nowhere.yaml\nduration_hours: 1\narrivals: []\nagents: []\n")
    done = switchboard("simulate", str(bad), "--json", str(tmp_path / "x.json"))
    assert done.returncode == 2
    assert "arrivals" in done.stderr
    assert not (tmp_path / "x.json").exists()


OVERLOADED = """\
routing:
  queues:
    - {name: main, agents: "agent.skills.main >= 1"}
    - {name: other, agents: "agent.skills.other >= 1"}
  rules:
    - {name: chat, when: "contact.channel == 'chat'", steps: [{queue: other}]}
    - {name: default, when: "true", steps: [{queue: main}]}
duration_hours: 2
drain_hours: 0
arrivals:
  - {channel: voice, per_hour: 400, handle_time: {dist: exponential, mean_seconds: 180}}
  - {channel: chat, per_hour: 10, handle_time: 60}
agents: [{count: 14, skills: {main: 1}, capacity: {voice: 1}}]
"""


def test_simulate_says_what_the_table_cannot_show(tmp_path: Path) -> None:
    """The text output names the contacts still waiting at the end and a queue that got
    contacts but had nobody to staff it (the table alone shows only 0 answered)."""
    scenario = tmp_path / "over.yaml"
    scenario.write_text(OVERLOADED)
    done = switchboard("simulate", str(scenario), "--seed", "1", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "still waiting when the drain ended (unresolved)" in done.stdout
    assert "queue 'other' had contacts but no agent on shift ever staffed it" in done.stdout


def test_report_of_a_day_without_answers_prints_no_warning(tmp_path: Path) -> None:
    """A report with nothing answered (no arrivals) is written without a matplotlib warning
    on stderr (an empty wait chart asked for a legend with nothing in it)."""
    data = yaml.safe_load(_small_scenario(tmp_path, hours=2).read_text())
    data["arrivals"][0]["per_hour"] = 0
    scenario = tmp_path / "quiet.yaml"
    scenario.write_text(yaml.safe_dump(data))
    report = tmp_path / "report"
    done = switchboard("simulate", str(scenario), "--report", str(report), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (report / "index.html").is_file()
    # a figure there is none of is a dash, not "-%"
    overall = next(line for line in done.stdout.splitlines() if "all contacts" in line)
    assert overall.split()[2:] == ["0", "0", "0", "-", "-", "-", "0.0±0.0%"]


def test_staff_scenario_names_a_queue_no_group_can_staff(tmp_path: Path) -> None:
    """A search that fails because no group's agents are members of a queue says so, and what
    the largest trial missed (it said only that 64x the counts did not do)."""
    data = yaml.safe_load(_small_scenario(tmp_path, hours=2).read_text())
    data["agents"][0]["skills"] = {"other": 1}  # nobody is a member of `main`
    data["replications"] = 1
    scenario = tmp_path / "nobody.yaml"
    scenario.write_text(yaml.safe_dump(data))
    out = tmp_path / "staff.json"
    done = switchboard("staff", "--scenario", str(scenario), "--no-progress", "--json", str(out))
    assert done.returncode == 1, done.stderr
    assert "No staffing up to 64x the scenario's counts meets every target." in done.stdout
    assert "  at [896]: main 0.0% < 80.0%" in done.stdout
    assert "queue 'main' had contacts but no agent group can staff it." in done.stdout
    # the JSON tells a script so too (it was not written: a script read a stale file or none)
    data = json.loads(out.read_text())
    assert data["groups"] == [{"name": "agents", "scenario_count": 14, "count": None}]
    assert data["result"] is None
    assert not any(t["meets"] for t in data["trials"])
    assert data["trials"][-1]["counts"] == [896]
    assert data["trials"][-1]["misses"] == {"main": {"service_level": 0.0, "target": 0.8}}


@pytest.mark.slow
def test_staff_scenario_search_matches_erlang_c(tmp_path: Path) -> None:
    """Searching M/M/N by simulation at an 85 % target finds Erlang C's 14 agents."""
    out = tmp_path / "search.json"
    done = switchboard(
        "staff", "--scenario", str(_small_scenario(tmp_path, 0.85, 12)), "--json", str(out)
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert [g["count"] for g in data["groups"]] == [14]
    assert any(not t["meets"] and t["counts"] == [13] for t in data["trials"])
    assert "smallest" in done.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bar draws on a terminal once the run is long enough, and never elsewhere."""
    monkeypatch.setattr(commands, "_PROGRESS_AFTER_SECONDS", 0.0)
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = ProgressBar("run", True, stream)
        bar(0.5)
        bar(1.0)
        bar.close()
    assert "100%" in terminal.getvalue()
    assert terminal.getvalue().endswith("\n")
    assert pipe.getvalue() == ""
    off = _Terminal()
    ProgressBar("run", False, off)(1.0)
    assert off.getvalue() == ""


def test_simulate_runs_the_scenarios_replications_unless_told(tmp_path: Path) -> None:
    """A scenario's `replications` is what `simulate` runs (it ran 1 and showed no interval);
    --replications overrides it. `wall_seconds` is the run's elapsed time, the replications'
    own times added up are `replication_seconds`."""
    scenario = _small_scenario(tmp_path, hours=2)  # replications: 2
    done = switchboard("simulate", str(scenario), "--json", "-", "--no-progress")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["scenario"]["replications"] == data["run"]["replications"] == 2
    assert "half_widths" in data["overall"]
    run = data["run"]
    assert run["wall_seconds"] > 0
    assert run["replication_seconds"] > 0
    one = switchboard(
        "simulate", str(scenario), "--replications", "1", "--json", "-", "--no-progress"
    )
    assert json.loads(one.stdout)["run"]["replications"] == 1


@pytest.mark.parametrize("scenario", [False, True])
def test_staff_json_to_stdout_is_json_alone(tmp_path: Path, scenario: bool) -> None:
    """`staff --json -` writes only the JSON to stdout (the table went first, so it did not
    parse); the table goes to stderr for a scenario search, and is left out for a table."""
    if scenario:
        args = ["--scenario", str(_small_scenario(tmp_path, hours=2)), "--no-progress"]
    else:
        args = ["--per-hour", "200", "--aht", "180"]
    done = switchboard("staff", *args, "--json", "-")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert ("groups" if scenario else "rows") in data
