"""Bad input to `switchboard simulate` and `switchboard staff`: one line, exit 2, no traceback.

Each case runs the real CLI in a subprocess on a tiny scenario; bad options and unusable output
paths are refused before anything is simulated.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from router import cli
from tests.simulations.test_commands import switchboard

ROUTING = {
    "segments": [
        {"name": "gold", "when": "customer.value >= 2000.0"},
        {"name": "standard", "when": "true"},
    ],
    "queues": [{"name": "main", "agents": "agent.skills.main >= 1"}],
    "rules": [{"name": "default", "steps": [{"queue": "main"}]}],
}
ARRIVALS = {"channel": "voice", "per_hour": 20, "handle_time": 60}
AGENTS = {"count": 2, "skills": {"main": 1}, "capacity": {"voice": 1}}


def scenario(tmp_path: Path, **arrivals: object) -> Path:
    """A quarter-hour scenario with the inline routing config above."""
    data = {
        "routing": ROUTING,
        "duration_hours": 0.25,
        "arrivals": [ARRIVALS | arrivals],
        "agents": [AGENTS],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2 and a single ``switchboard: ...`` line on stderr naming the problem."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("switchboard: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_staff_scenario_with_unknown_segment(tmp_path: Path) -> None:
    """`staff --scenario` reports a segment the routing config lacks as `simulate` does."""
    bad = scenario(tmp_path, customers={"diamond": 1})
    done = switchboard("staff", "--scenario", str(bad), "--no-progress")
    assert_refused(done, "unknown segment 'diamond'")


@pytest.mark.parametrize("command", ["simulate", "staff"])
def test_negative_seed(command: str, tmp_path: Path) -> None:
    """numpy takes no negative seed: the option is refused up front."""
    path = str(scenario(tmp_path))
    args = [path] if command == "simulate" else ["--scenario", path]
    done = switchboard(command, *args, "--seed", "-1", "--no-progress")
    assert_refused(done, "--seed", "-1")
    assert done.stdout == ""


def test_seed_that_is_not_a_number(tmp_path: Path) -> None:
    """argparse's own errors are one line too, without the usage block."""
    done = switchboard("simulate", str(scenario(tmp_path)), "--seed", "abc")
    assert_refused(done, "--seed", "'abc'")


def test_large_seed_is_accepted(tmp_path: Path) -> None:
    """numpy takes any seed >= 0, however large, so the CLI does too."""
    done = switchboard("simulate", str(scenario(tmp_path)), "--seed", str(2**130), "--no-progress")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [("--per-hour", "inf"), ("--per-hour", "nan"), ("--threshold", "nan"), ("--aht", "-inf")],
)
def test_non_finite_erlang_option(option: str, value: str) -> None:
    """inf and nan are refused with the option's name, not an OverflowError or a search."""
    args = {"--per-hour": "100", "--aht": "180", "--threshold": "20"} | {option: value}
    done = switchboard("staff", *(f"{k}={v}" for k, v in args.items()))
    assert_refused(done, option, "finite")


def test_load_too_large_to_compute() -> None:
    """Finite options whose product overflows give a line, not an OverflowError."""
    done = switchboard("staff", "--per-hour", "1e308", "--aht", "1e308")
    assert_refused(done, "an offered load of inf Erlangs", "at most 100,000")


def test_a_huge_load_is_written_short() -> None:
    """A load far past the table is shown in scientific notation, not as 300 digits."""
    done = switchboard("staff", "--per-hour", "200", "--aht", "1e300")
    assert_refused(done, "an offered load of 5.56e+298 Erlangs", "at most 100,000")


@pytest.mark.parametrize("value", ["1", "1.0", "0", "1.5"])
def test_target_out_of_range_says_the_bounds(value: str) -> None:
    """A target of 1 is refused with bounds it does not meet ("a fraction between 0 and 1"
    read as if 1.0 were refused in error)."""
    done = switchboard("staff", "--per-hour", "100", "--aht", "180", "--target", value)
    assert_refused(done, "--target", f"must be above 0 and below 1, got '{value}'")


def test_load_beyond_the_table_is_refused_at_once() -> None:
    """A load needing more agents than the table computes is refused before any work (it
    used to compute for minutes)."""
    done = switchboard("staff", "--per-hour", "1e12", "--aht", "180")
    assert_refused(done, "50,000,000,000 Erlangs", "at most 100,000")


def test_staff_scenario_zero_replications(tmp_path: Path) -> None:
    """`staff --scenario --replications 0` is refused as `simulate` refuses it, not ignored."""
    done = switchboard("staff", "--scenario", str(scenario(tmp_path)), "--replications", "0")
    assert_refused(done, "--replications", "at least 1")
    assert done.stdout == ""


def test_report_path_is_a_file(tmp_path: Path) -> None:
    """`--report` naming an existing file is refused before the run, not after it."""
    afile = tmp_path / "afile"
    afile.write_text("")
    done = switchboard("simulate", str(scenario(tmp_path)), "--report", str(afile))
    assert_refused(done, "--report", f"{afile} is not a directory")
    assert done.stdout == ""


@pytest.mark.parametrize("under", ["x.json", "deeper/x.json"])
@pytest.mark.parametrize("command", ["simulate", "staff --per-hour 100 --aht 180", "staff"])
def test_json_parent_is_a_file(command: str, under: str, tmp_path: Path) -> None:
    """`--json` under an existing file (even a few levels down) is refused before the run."""
    afile = tmp_path / "afile"
    afile.write_text("")
    words = command.split()
    if words == ["simulate"]:
        words.append(str(scenario(tmp_path)))
    elif words == ["staff"]:
        words += ["--scenario", str(scenario(tmp_path))]
    out = afile / under
    done = switchboard(*words, "--json", str(out), "--no-progress")
    assert_refused(done, "--json", f"{afile} is not a directory")
    assert done.stdout == ""


PROC = Path("/proc/self")  # a file system that refuses new files whatever the permissions say


@pytest.mark.skipif(not PROC.is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    ("command", "option", "target", "failing"),
    [
        ("simulate", "--json", "/proc/sb-test.json", "/proc/sb-test.json"),
        ("simulate", "--report", "/proc/sb-test-report", "/proc/sb-test-report"),
        ("simulate", "--report", "/proc", "/proc/index.html"),
        ("staff --per-hour 100 --aht 180", "--json", "/proc/sb-test.json", "/proc/sb-test.json"),
        ("staff", "--json", "/proc/sb-test.json", "/proc/sb-test.json"),
    ],
)
def test_output_that_cannot_be_written_is_refused_before_the_run(
    command: str, option: str, target: str, failing: str, tmp_path: Path
) -> None:
    """An output that passes the permission check but cannot be written (/proc; any path for
    root on a read-only mount) stops the command before it runs, naming the file that failed;
    it used to be found only after the whole run."""
    words = command.split()
    if words == ["simulate"]:
        words.append(str(scenario(tmp_path)))
    elif words == ["staff"]:
        words += ["--scenario", str(scenario(tmp_path))]
    done = switchboard(*words, option, target, "--no-progress")
    assert_refused(done, f"cannot write {failing}: ")
    assert done.stdout == ""


@pytest.mark.parametrize("inside", ["", "index.html", "summary.csv"])
def test_json_where_the_report_writes_is_refused(inside: str, tmp_path: Path) -> None:
    """`--json` naming the report's directory or a file the report writes is refused before
    the run: the report overwrote the JSON (or failed after the run on a file standing where
    its directory goes)."""
    report = tmp_path / "out"
    out = report / inside if inside else report
    done = switchboard(
        "simulate", str(scenario(tmp_path)), "--json", str(out), "--report", str(report)
    )
    assert_refused(done, f"--json {out} is where --report {report} writes")
    assert done.stdout == ""
    assert not report.exists()


@pytest.mark.parametrize("command", ["simulate", "staff --scenario"])
def test_a_scenario_that_is_no_file_is_one_plain_line(command: str, tmp_path: Path) -> None:
    """A missing scenario, or a directory given for one, is one line naming it and the reason
    (it also repeated the path inside Python's "[Errno 2] ...: 'path'")."""
    for path, reason in [(tmp_path / "nope.yaml", "No such file or directory"),
                         (tmp_path, "Is a directory")]:  # fmt: skip
        done = switchboard(*command.split(), str(path))
        assert assert_refused(done) == f"switchboard: {path}: {reason}"


@pytest.mark.parametrize("command", ["simulate", "staff --per-hour 200 --aht 180", "staff"])
def test_a_reader_that_leaves_early_is_no_traceback(command: str, tmp_path: Path) -> None:
    """stdout whose reader has gone (`switchboard staff ... | head`) ends the command quietly
    with 141, as SIGPIPE would, instead of a BrokenPipeError traceback."""
    words = command.split()
    if words == ["simulate"]:
        words.append(str(scenario(tmp_path)))
    elif words == ["staff"]:
        words += ["--scenario", str(scenario(tmp_path))]
    read, write = os.pipe()
    os.close(read)  # every write to the pipe now fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "router.cli", *words, "--no-progress"],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


def test_trying_the_outputs_leaves_nothing_behind(tmp_path: Path) -> None:
    """Trying an output before the run creates no file when the run is refused later on, and
    keeps the contents of an existing one."""
    kept = tmp_path / "kept.json"
    kept.write_text("before")
    for out in (kept, tmp_path / "new.json"):
        done = switchboard(
            "staff", "--per-hour", "1e9", "--aht", "180", "--json", str(out)
        )  # refused after the outputs were tried: the load is too large
        assert_refused(done, "needs more agents")
    assert kept.read_text() == "before"
    assert not (tmp_path / "new.json").exists()


def test_json_path_is_a_directory(tmp_path: Path) -> None:
    """`--json` naming a directory is refused before the run."""
    done = switchboard("simulate", str(scenario(tmp_path)), "--json", str(tmp_path))
    assert_refused(done, "--json", f"{tmp_path} is a directory")


def test_json_directory_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory the user may not write to is refused (os.access faked: root writes all)."""
    real_access = os.access

    def access(path: str | Path, mode: int) -> bool:
        return Path(path) != tmp_path and real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    out = tmp_path / "x.json"
    with pytest.raises(SystemExit) as exited:
        cli.main(["simulate", str(scenario(tmp_path)), "--json", str(out), "--no-progress"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"switchboard: argument --json: cannot write {out}: {tmp_path} is not writable"
    ]
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--rate", "nan", "must be a finite number"),
        ("--rate", "-5", "must be >= 0"),
        ("--duration", "inf", "must be a finite number"),
        ("--agents", "-1", "must be at least 0"),
        ("--seed", "-2", "must be at least 0"),
        ("--customers", "0", "must be at least 1"),
        ("--drain", "-1", "must be >= 0"),
        ("--max-unrouted", "1.5", "must be a share from 0 to 1"),
    ],
)
def test_loadtest_options_are_checked(option: str, value: str, message: str) -> None:
    """loadtest refuses a non-finite or out-of-range option before it connects anywhere."""
    done = switchboard("loadtest", "--url", "http://127.0.0.1:9", "--token", "t", option, value)
    assert_refused(done, option, message)


@pytest.mark.parametrize(
    ("option", "value"), [("--accept-delay", "nan:nan"), ("--handle-time", "1:inf")]
)
def test_loadtest_spans_are_finite(option: str, value: str) -> None:
    """A LOW:HIGH span of seconds must be finite."""
    done = switchboard("loadtest", "--url", "http://127.0.0.1:9", "--token", "t", option, value)
    assert done.returncode == 2
    assert f"expected LOW:HIGH seconds, got {value!r}" in done.stderr
    assert "Traceback" not in done.stderr


def _limited_memory() -> None:
    """A subprocess that runs out of memory fails at once instead of taking the machine's."""
    limit = 3 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rate", "1e308", "--duration", "1e308"], "plans inf arrivals; a run plans at most"),
        (["--rate", "10000", "--duration", "1000"], "plans 10,000,000 arrivals"),
        (["--customers", "100000000"], "--customers is at most 1,000,000"),
        (["--agents", "100000000"], "--agents is at most 100,000"),
        (["--url", "127.0.0.1:8080"], "--url must be an http:// or https:// URL"),
        (["--ws-url", "ftp://host"], "--ws-url must be an http:// or https:// or ws://"),
    ],
)
def test_loadtest_refuses_what_it_cannot_plan(options: list[str], message: str) -> None:
    """A load test too large to plan in memory (its arrivals are built before the run), or
    aimed at no URL, is refused at once, before it connects; it used to build the plan until
    memory ran out, or to send requests to 'host/v1/...'."""
    done = subprocess.run(
        [sys.executable, "-m", "router.cli", "loadtest", "--url", "http://127.0.0.1:9",
         "--token", "t", "--no-progress", *options],
        capture_output=True, text=True, timeout=60, preexec_fn=_limited_memory, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("loadtest: ")
    assert message in lines[0]


@pytest.mark.skipif(not PROC.is_dir(), reason="needs Linux /proc")
def test_loadtest_json_that_cannot_be_written_is_refused_before_the_run() -> None:
    """loadtest's --json is tried before the run (which lasts --duration), not written after
    it with a traceback."""
    done = switchboard(
        "loadtest", "--url", "http://127.0.0.1:9", "--token", "t", "--json", "/proc/sb.json"
    )
    assert_refused(done, "cannot write /proc/sb.json: ")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--per-hour", "200"], "--per-hour"),
        (["--aht", "180", "--threshold", "30"], "--aht, --threshold"),
        (["--target", "0.9", "--patience", "300"], "--target, --patience"),
    ],
)
def test_staff_scenario_refuses_the_erlang_options(
    tmp_path: Path, options: list[str], named: str
) -> None:
    """The Erlang table's options beside `--scenario` are refused, not silently ignored: the
    scenario's own arrivals and service levels are what the search uses."""
    done = switchboard("staff", "--scenario", str(scenario(tmp_path)), *options, "--no-progress")
    assert_refused(done, named, "--scenario")
    assert done.stdout == ""


def test_replications_without_a_scenario_is_refused() -> None:
    """`--replications` belongs to the simulated search; the Erlang table would ignore it."""
    done = switchboard("staff", "--per-hour", "200", "--aht", "180", "--replications", "3")
    assert_refused(done, "--replications", "--scenario")


@pytest.mark.parametrize("command", ["simulate", "staff"])
def test_a_scenario_that_is_not_utf8_is_one_line(command: str, tmp_path: Path) -> None:
    """A scenario file of other bytes is a one-line error naming the file (a traceback)."""
    bad = tmp_path / "binary.yaml"
    bad.write_bytes(b"\xe7\x00\xff" + bytes(range(200, 256)))
    args = [command, str(bad)] if command == "simulate" else [command, "--scenario", str(bad)]
    assert_refused(switchboard(*args, "--no-progress"), "binary.yaml", "not UTF-8")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"duration_hours": 1e9}, ["duration_hours", "less than or equal to 8784"]),
        ({"arrivals": [ARRIVALS | {"per_hour": 1e12}]}, ["per_hour", "1000000"]),
        ({"agents": [AGENTS | {"count": 100_000_000}]}, ["count", "100000"]),
        (
            {"duration_hours": 8000, "arrivals": [ARRIVALS | {"per_hour": 900_000}]},
            ["expects 7,200,000,000 contacts", "at most 20,000,000"],
        ),
    ],
)
def test_a_scenario_too_large_to_run_is_refused_up_front(
    change: dict[str, object], words: list[str], tmp_path: Path
) -> None:
    """Durations, rates and head counts past what a run can hold are refused before it
    starts (each ran for minutes and took gigabytes until killed)."""
    path = scenario(tmp_path)
    data = yaml.safe_load(path.read_text()) | change
    path.write_text(yaml.safe_dump(data))
    done = switchboard("simulate", str(path), "--no-progress")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def test_replications_past_the_scenario_bound_are_refused(tmp_path: Path) -> None:
    """--replications is bounded as the scenario's field is (1..1000)."""
    done = switchboard("simulate", str(scenario(tmp_path)), "--replications", "100000")
    assert_refused(done, "--replications", "at most 1000")
