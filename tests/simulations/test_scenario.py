"""Scenario files: schema, routing by path or inline, customer segments and distributions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from config.routing import demo_config_path
from simulations.distributions import MAX_SECONDS, Constant, Empirical, Sampler, load_empirical
from simulations.model import Model
from simulations.scenario import ScenarioInvalid, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "simulations" / "scenarios"


def minimal(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "routing": str(demo_config_path()),
        "duration_hours": 2,
        "arrivals": [
            {
                "channel": "voice",
                "intent": "billing",
                "per_hour": 100,
                "customers": {"platinum": 0.1, "gold": 0.3, "standard": 0.6},
                "handle_time": {"dist": "exponential", "mean_seconds": 180},
            }
        ],
        "agents": [{"count": 3, "skills": {"billing": 5}, "capacity": {"voice": 1}}],
    }
    data.update(overrides)
    return data


SHIPPED = sorted(p for p in SCENARIOS.glob("*.yaml") if not p.stem.endswith("_routing"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_scenario_builds(path: Path) -> None:
    """Each shipped scenario (and the routing it names) validates and compiles."""
    model = Model.build(load_scenario(path))
    assert model.streams
    assert sum(g.count for g in model.groups) > 0


def test_large_scenario_has_the_advertised_size() -> None:
    """large.yaml: 1,000 agents, 50 queues and about 300,000 expected contacts in 24 h."""
    model = Model.build(load_scenario(SCENARIOS / "large.yaml"))
    assert sum(g.count for g in model.groups) == 1000
    assert len(model.queues) == 50
    assert 290_000 < model.expected_contacts < 310_000


def test_routing_relative_to_the_scenario_file(tmp_path: Path) -> None:
    """A routing path is read relative to the scenario file, not the working directory."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "r.yaml").write_text(demo_config_path().read_text())
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(minimal(routing="conf/r.yaml")))
    loaded = load_scenario(scenario)
    assert loaded.routing.queues[0].name == "billing"
    assert loaded.name == "s"


def test_inline_routing() -> None:
    """A routing mapping inline in the scenario is validated like a file."""
    routing: dict[str, Any] = {
        "queues": [{"name": "q", "agents": "true"}],
        "rules": [{"name": "r", "steps": [{"queue": "q"}]}],
    }
    data = minimal(routing=routing)
    data["arrivals"][0]["customers"] = {}
    assert load_scenario(data).routing.queues[0].name == "q"
    routing["rules"] = [{"name": "r", "steps": [{"queue": "missing"}]}]
    with pytest.raises(ValueError, match="unknown queue"):
        load_scenario(minimal(routing=routing))


def test_customer_mix_lands_in_each_segment() -> None:
    """Shorthand shares get customer values the demo config's expressions put in that segment."""
    model = Model.build(load_scenario(minimal()))
    views = model.streams[0].views
    engine = model.engine
    assert [v.segment for v in views] == ["platinum", "gold", "standard"]
    for view in views:
        assert engine.decide(view.contact, view.customer, 0).segment == view.segment
    assert [round(v.share, 2) for v in views] == [0.1, 0.3, 0.6]
    assert views[0].customer["churn_risk"] == 0.0  # no churn rule fires unless asked for


def test_explicit_customer_fields_are_checked() -> None:
    """Explicit values are used as given, and refused when they land in another segment."""
    data = minimal()
    data["arrivals"][0]["customers"] = {"gold": {"share": 1, "value": 5000, "churn_risk": 0.9}}
    model = Model.build(load_scenario(data))
    view = model.streams[0].views[0]
    assert model.engine.decide(view.contact, view.customer, 0).rule == "valuable-at-risk"
    data["arrivals"][0]["customers"] = {"gold": {"share": 1, "value": 50}}
    with pytest.raises(ScenarioInvalid, match="segment 'gold'"):
        Model.build(load_scenario(data))


def test_a_streams_country_reaches_the_rules() -> None:
    """A stream's ``country`` is the ``contact.country`` its contacts' rules read, as a live
    call's is its number's region; it must be an ISO 3166 code."""
    routing: dict[str, Any] = {
        "queues": [{"name": "q", "agents": "true"}, {"name": "mx", "agents": "true"}],
        "rules": [
            {"name": "mexico", "when": "contact.country == 'MX'", "steps": [{"queue": "mx"}]},
            {"name": "r", "when": "true", "steps": [{"queue": "q"}]},
        ],
    }
    data = minimal(routing=routing)
    data["arrivals"][0]["customers"] = {}
    data["arrivals"].append({**data["arrivals"][0], "country": "MX"})
    model = Model.build(load_scenario(data))
    rules = [
        model.engine.decide(s.views[0].contact, s.views[0].customer, 0).rule for s in model.streams
    ]
    assert rules == ["r", "mexico"]
    data["arrivals"][1]["country"] = "Mexico"
    with pytest.raises(ScenarioInvalid, match="country"):
        load_scenario(data)


@pytest.mark.parametrize(
    ("shifts", "message"),
    [
        ([{"start_hour": 0, "end_hour": 2}, {"start_hour": 1, "end_hour": 3}], "shifts overlap"),
        ([{"start_hour": 0, "end_hour": 1}, {"start_hour": 6, "end_hour": 8}], "after the run"),
    ],
)
def test_shifts_that_cannot_be_worked_are_refused(
    shifts: list[dict[str, float]], message: str
) -> None:
    """Overlapping shifts in one group (the agent would leave at the end of the first) and a
    shift starting after the run are errors, not a silently different day."""
    data = minimal()
    data["agents"][0]["shifts"] = shifts
    with pytest.raises(ScenarioInvalid, match=message):
        load_scenario(data)
    data["agents"][0]["shifts"] = [
        {"start_hour": 0, "end_hour": 1},
        {"start_hour": 1, "end_hour": 2},
    ]
    assert load_scenario(data).spec.agents[0].shifts[1].start_hour == 1


def test_unknown_segment_is_refused() -> None:
    """A segment the routing config does not define is an error naming the known ones."""
    data = minimal()
    data["arrivals"][0]["customers"] = {"diamond": 1.0}
    with pytest.raises(ScenarioInvalid, match=r"unknown segment 'diamond'.*platinum"):
        Model.build(load_scenario(data))


def test_a_missing_routing_file_is_a_problem_of_the_scenario(tmp_path: Path) -> None:
    """A routing path that names no file is reported as the scenario's `routing`, with the
    scenario's name, as it is beside field errors (it was a bare "invalid routing config")."""
    path = tmp_path / "day.yaml"
    path.write_text(yaml.safe_dump(minimal(routing="cfg/nope.yaml")), encoding="utf-8")
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"invalid scenario {path}:"
    assert lines[1].startswith(f"  routing: {tmp_path / 'cfg' / 'nope.yaml'}: (top): ")
    assert "No such file" in lines[1]


def test_a_given_customer_in_another_segment_says_where_it_lands(tmp_path: Path) -> None:
    """A customer the planner gave for a segment that the config puts elsewhere is named with
    the segment it lands in and the file, not told to give the fields it gave."""
    data = minimal()
    data["arrivals"][0]["customers"] = {"platinum": {"share": 1.0, "value": 5}}
    path = tmp_path / "day.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ScenarioInvalid) as caught:
        Model.build(load_scenario(path))
    assert str(caught.value) == (
        f"{path}: arrivals[0]: the customer given for segment 'platinum' (value 5.0) lands in"
        " segment 'standard'"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"interval_minutes": 45}, "15 or 30"),
        ({"warmup_hours": 2}, "warmup_hours"),
        ({"arrivals": []}, "at least 1"),
        ({"speed": 2}, "Extra inputs"),
        ({"duration_hours": float("inf")}, "duration_hours: Input should be a finite number"),
        ({"accept_delay": {"dist": "constant", "seconds": float("nan")}}, "finite number"),
        (
            {"agents": [{"count": 1, "skills": {"billing": 99}, "capacity": {"voice": 1}}]},
            r"agents\[0\]\.skills\.billing: Input should be less than or equal to 10",
        ),
    ],
)
def test_invalid_scenarios_list_the_problem(change: dict[str, Any], message: str) -> None:
    """Schema problems raise ScenarioInvalid with the field and the reason."""
    with pytest.raises(ScenarioInvalid, match=message):
        load_scenario(minimal(**change))


def test_every_problem_of_a_scenario_is_listed_at_once() -> None:
    """A field error does not hide the scenario's consistency checks, nor its routing config's
    problems: all are in one ScenarioInvalid."""
    data = minimal(warmup_hours=3, duration_hours=2, interval_minutes=20)
    data["arrivals"][0]["handle_time"] = {"dist": "constant", "seconds": -1}
    data["routing"] = {
        "queues": [{"name": "q", "agents": "true"}],
        "rules": [{"name": "r", "steps": [{"queue": "nope"}]}],
    }
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(data)
    lines = str(caught.value).splitlines()[1:]
    assert lines == [
        "  arrivals[0].handle_time.seconds: Input should be greater than or equal to 0",
        "  (top): interval_minutes must be 15 or 30",
        "  (top): warmup_hours must be shorter than duration_hours",
        "  routing.rules[0].steps[0].queue: unknown queue 'nope'",
    ]


def test_field_errors_name_the_place_as_the_file_spells_it() -> None:
    """A field error's place is a YAML path a planner can find in the file: list items as
    `[i]`, and no pydantic member tag (`exponential`, `lognormal`) that is no key of the file."""
    data = minimal()
    data["arrivals"][0]["handle_time"] = {"dist": "exponential", "mean_second": 180}
    data["arrivals"][0]["patience"] = {"dist": "lognormal", "mean_seconds": 300}
    data["agents"][0]["count"] = -1
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(data)
    assert str(caught.value).splitlines()[1:] == [
        "  arrivals[0].handle_time.mean_seconds: Field required",
        "  arrivals[0].handle_time.mean_second: Extra inputs are not permitted",
        "  arrivals[0].patience.sd_seconds: Field required",
        "  agents[0].count: Input should be greater than or equal to 0",
    ]


def test_infinite_patience_is_refused() -> None:
    """A distribution's numbers are finite (an infinite patience used to crash the run)."""
    data = minimal()
    data["arrivals"][0]["patience"] = {"dist": "constant", "seconds": float("inf")}
    with pytest.raises(ScenarioInvalid, match="finite number"):
        load_scenario(data)


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    """A scenario file with a key twice is an error (YAML would keep the last silently)."""
    path = tmp_path / "twice.yaml"
    path.write_text("duration_hours: 1\nduration_hours: 2\n", encoding="utf-8")
    with pytest.raises(ScenarioInvalid, match="found the key 'duration_hours' twice"):
        load_scenario(path)


def test_a_stream_needs_exactly_one_rate() -> None:
    """per_hour and profile are alternatives: neither or both is an error."""
    data = minimal()
    data["arrivals"][0]["profile"] = {"interval_minutes": 30, "per_hour": [10, 20]}
    with pytest.raises(ScenarioInvalid, match="either `per_hour` or `profile`"):
        load_scenario(data)
    del data["arrivals"][0]["per_hour"]
    assert load_scenario(data).spec.arrivals[0].profile is not None


def test_bare_number_is_a_constant_duration() -> None:
    """`accept_delay: 4` means a constant 4 s."""
    spec = load_scenario(minimal(accept_delay=4)).spec
    assert spec.accept_delay == Constant(dist="constant", seconds=4.0)


def test_empirical_durations_from_csv(tmp_path: Path) -> None:
    """An empirical distribution reads a CSV (header or not, named column) next to the file."""
    (tmp_path / "plain.csv").write_text("seconds\n10\n20\n30\n")
    (tmp_path / "cols.csv").write_text("id,handle\na,100\nb,200\n")
    plain = load_empirical(Empirical(dist="empirical", file="plain.csv"), tmp_path)
    cols = load_empirical(Empirical(dist="empirical", file="cols.csv", column="handle"), tmp_path)
    assert plain.values == (10.0, 20.0, 30.0)
    assert cols.values == (100.0, 200.0)
    sampler = Sampler(plain, np.random.default_rng(1))
    draws = {sampler() for _ in range(200)}
    assert draws == {10_000, 20_000, 30_000}
    (tmp_path / "bad.csv").write_text("10\nten\n")
    with pytest.raises(ValueError, match="row 2"):
        load_empirical(Empirical(dist="empirical", file="bad.csv"), tmp_path)


def test_scenario_reads_empirical_files(tmp_path: Path) -> None:
    """A scenario's empirical handle time is loaded relative to the scenario file."""
    (tmp_path / "aht.csv").write_text("120\n240\n")
    data = minimal()
    data["arrivals"][0]["handle_time"] = {"dist": "empirical", "file": "aht.csv"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    spec = load_scenario(tmp_path / "s.yaml").spec
    assert spec.arrivals[0].handle_time == Empirical(
        dist="empirical", file="aht.csv", values=(120.0, 240.0)
    )


@pytest.mark.parametrize(
    "dist",
    [
        {"dist": "exponential", "mean_seconds": 180},
        {"dist": "lognormal", "mean_seconds": 240, "sd_seconds": 180},
        {"dist": "gamma", "mean_seconds": 300, "sd_seconds": 100},
    ],
    ids=lambda d: d["dist"],
)
def test_samplers_have_the_stated_mean_and_spread(dist: dict[str, Any]) -> None:
    """Samples in ms match the mean and standard deviation written in seconds."""
    spec = load_scenario(minimal(accept_delay=dist)).spec.accept_delay
    sampler = Sampler(spec, np.random.default_rng(11))
    x = np.array([sampler() for _ in range(40_000)]) / 1000
    sd = dist.get("sd_seconds", dist["mean_seconds"])
    assert x.mean() == pytest.approx(dist["mean_seconds"], rel=0.02)
    assert x.std() == pytest.approx(sd, rel=0.05)
    assert x.min() >= 0


def test_a_syntax_error_names_the_file(tmp_path: Path) -> None:
    """A scenario's YAML syntax error names the file where the parser points."""
    path = tmp_path / "day.yaml"
    path.write_text("duration_hours: 1\n arrivals: [\n", encoding="utf-8")
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(path)
    assert f'in "{path}", line 2' in str(caught.value)
    assert "<unicode string>" not in str(caught.value)


def test_field_errors_and_group_problems_are_listed_together() -> None:
    """A field error does not hide the groups' problems: a shift after the run and two groups
    of one name are reported with it, in one report."""
    data = minimal(duration_hours=2, interval_minutes="half an hour")
    group = {"name": "day", "count": 2, "skills": {"billing": 5}, "capacity": {"voice": 1}}
    data["agents"] = [group, {**group, "shifts": [{"start_hour": 3, "end_hour": 4}]}]
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(data)
    report = str(caught.value)
    assert "interval_minutes" in report
    assert "agent group 'day': the shift from 3 h starts after the run (2 h)" in report
    assert "agent group names must be unique" in report


def test_segment_and_file_problems_are_listed_together(tmp_path: Path) -> None:
    """Unknown segments in two streams and two missing empirical files are one report, each
    line naming where it is."""
    data = minimal()
    second = {**data["arrivals"][0], "customers": {"bronze": 1.0}}
    data["arrivals"][0] = {**data["arrivals"][0], "customers": {"diamond": 1.0}}
    second["handle_time"] = {"dist": "empirical", "file": "nowhere.csv"}
    second["patience"] = {"dist": "empirical", "file": "neither.csv"}
    data["arrivals"].append(second)
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(data, base=tmp_path)
    lines = str(caught.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "arrivals[0]",
        "arrivals[1]",
        "arrivals[1].handle_time",
        "arrivals[1].patience",
    ]
    assert "unknown segment 'diamond'" in lines[0]
    assert "unknown segment 'bronze'" in lines[1]
    assert "nowhere.csv" in lines[2]
    assert "neither.csv" in lines[3]


def test_field_errors_do_not_hide_segments_files_or_customers(tmp_path: Path) -> None:
    """A field error in one stream does not hide that stream's unknown segment and missing
    file, a group's missing file, nor another stream's customer landing in the wrong segment:
    all are one report (each used to show only once the problems before it were fixed)."""
    data = minimal()
    first = {**data["arrivals"][0], "per_hour": -5, "customers": {"diamond": 1.0}}
    first["handle_time"] = {"dist": "empirical", "file": "nowhere.csv"}
    second = {**data["arrivals"][0], "customers": {"platinum": {"share": 1.0, "value": 5}}}
    data["arrivals"] = [first, second]
    data["agents"][0]["accept_delay"] = {"dist": "empirical", "file": "neither.csv"}
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(data, base=tmp_path)
    lines = str(caught.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "arrivals[0].per_hour",
        "arrivals[0]",
        "arrivals[0].handle_time",
        "agents[0].accept_delay",
        "arrivals[1]",
    ]
    assert "unknown segment 'diamond'" in lines[1]
    assert "nowhere.csv" in lines[2]
    assert "neither.csv" in lines[3]
    assert "segment 'platinum' (value 5.0) lands in segment 'standard'" in lines[4]


def test_every_customer_in_the_wrong_segment_is_listed(tmp_path: Path) -> None:
    """Customers that land in another segment are listed together, every stream's and every
    segment's, by load_scenario (Model.build used to stop at the first)."""
    data = minimal()
    stream = data["arrivals"][0]
    data["arrivals"] = [
        {**stream, "customers": {"platinum": {"share": 1, "value": 5}, "gold": {"share": 1}}},
        {**stream, "customers": {"gold": {"share": 1, "value": 50000}}},
    ]
    path = tmp_path / "day.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(path)
    assert str(caught.value).splitlines() == [
        f"invalid scenario {path}:",
        "  arrivals[0]: the customer given for segment 'platinum' (value 5.0) lands in segment"
        " 'standard'",
        "  arrivals[1]: the customer given for segment 'gold' (value 50000.0) lands in segment"
        " 'platinum'",
    ]


def test_a_streams_own_checks_show_beside_its_field_errors() -> None:
    """A stream with both `per_hour` and `profile` (or shares adding to 0) says so beside a
    field error of the same stream; pydantic skips those checks until every field is valid."""
    data = minimal()
    data["arrivals"][0] |= {
        "profile": {"interval_minutes": 30, "per_hour": [1]},
        "customers": {"gold": 0},
        "handle_time": {"dist": "exponential"},
    }
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(data)
    assert str(caught.value).splitlines()[1:] == [
        "  arrivals[0].handle_time.mean_seconds: Field required",
        "  arrivals[0]: give either `per_hour` or `profile`",
        "  arrivals[0]: customer shares must add up to more than 0",
    ]


def test_a_null_rate_beside_a_profile_is_no_problem() -> None:
    """`per_hour: null` beside a `profile` is no rate given twice, beside a field error too."""
    data = minimal(duration_hours=-1)
    data["arrivals"][0] |= {
        "per_hour": None,
        "profile": {"interval_minutes": 30, "per_hour": [1]},
    }
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(data)
    assert "give either" not in str(caught.value)


def test_a_streams_own_check_is_listed_once() -> None:
    """When the stream's fields are valid, pydantic's own line for the check is not repeated."""
    data = minimal(duration_hours=-1)
    data["arrivals"][0]["profile"] = {"interval_minutes": 30, "per_hour": [1]}
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(data)
    report = str(caught.value)
    assert report.count("give either `per_hour` or `profile`") == 1
    assert "duration_hours" in report


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        ({"dist": "lognormal", "mean_seconds": 1e308, "sd_seconds": 1e308}, "less than or equal"),
        ({"dist": "exponential", "mean_seconds": 1e12}, "less than or equal"),
        ({"dist": "constant", "seconds": 1e300}, "less than or equal"),
        (1e300, "less than or equal"),
        ({"dist": "empirical", "values": [60, 1e300]}, "durations must be from 0 to"),
        ({"dist": "gamma", "mean_seconds": 1e-300, "sd_seconds": 1e5}, "at most 1000 times"),
        ({"dist": "lognormal", "mean_seconds": 1e-3, "sd_seconds": 1e5}, "at most 1000 times"),
    ],
)
def test_durations_past_what_a_run_can_hold_are_refused(duration: Any, message: str) -> None:
    """A duration longer than a year, or a spread so wide the shape degenerates, is a problem
    of the scenario: a handle time of 1e308 s overflowed the milliseconds and ended at once,
    and a gamma of sd 1e5 on mean 1e-300 divided by zero in the middle of the run."""
    with pytest.raises(ScenarioInvalid, match=message):
        load_scenario(minimal(accept_delay=duration))


def test_draws_are_cut_at_the_longest_duration() -> None:
    """A lognormal's far tail is cut at a year rather than running past any horizon."""
    spread = {"dist": "lognormal", "mean_seconds": 1e5, "sd_seconds": 3e7}
    sampler = Sampler(load_scenario(minimal(accept_delay=spread)).spec.accept_delay,
                      np.random.default_rng(3))  # fmt: skip
    draws = [sampler() for _ in range(20_000)]
    assert max(draws) == round(MAX_SECONDS * 1000)
    assert min(draws) >= 0


def test_a_number_yaml_reads_as_text_is_a_constant_duration(tmp_path: Path) -> None:
    """`handle_time: 3e2` (YAML 1.1 reads it as text: a float wants a dot) is 300 s, as
    `mean_seconds: 3e2` is; it was refused as 'a valid dictionary'."""
    data = minimal()
    data["arrivals"][0]["handle_time"] = "3e2"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data).replace("'3e2'", "3e2"))
    assert "handle_time: 3e2\n" in path.read_text()
    spec = load_scenario(path).spec
    assert spec.arrivals[0].handle_time == Constant(dist="constant", seconds=300.0)


def test_an_empirical_files_bad_row_is_named_by_its_line(tmp_path: Path) -> None:
    """The row named in an empirical file's problem is the file's line, header and blank
    lines counted (it was counted among the values only)."""
    (tmp_path / "aht.csv").write_text("seconds\n10\n\n-5\n")
    with pytest.raises(ValueError, match=r"row 4: '-5' is not a duration"):
        load_empirical(Empirical(dist="empirical", file="aht.csv"), tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"agents": [{"count": 1, "capacity": {"voice": 1},
                         "shifts": [{"start_hour": 0, "end_hour": 1e308}]}]},
            r"agents\[0\]\.shifts\[0\]\.end_hour: Input should be less than or equal to 17568",
        ),
        ({"missed_offer_away_seconds": 1e308}, "missed_offer_away_seconds: Input should be less"),
    ],
)  # fmt: skip
def test_times_too_large_for_the_milliseconds_are_refused(
    change: dict[str, Any], message: str
) -> None:
    """A shift end or an away time past what a run holds is a problem of the scenario; it
    failed building the model with an OverflowError traceback."""
    with pytest.raises(ScenarioInvalid, match=message):
        Model.build(load_scenario(minimal(**change)))


@pytest.mark.timeout(20)
def test_a_profile_interval_below_a_minute_is_refused() -> None:
    """A profile's intervals are a minute at least: 1e-9 minutes made the run step through
    billions of intervals before the first arrival (it hung)."""
    data = minimal()
    del data["arrivals"][0]["per_hour"]
    data["arrivals"][0]["profile"] = {"interval_minutes": 1e-9, "per_hour": [100]}
    with pytest.raises(ScenarioInvalid, match="interval_minutes: Input should be greater than"):
        Model.build(load_scenario(data))


def test_an_empirical_file_that_cannot_be_read_is_one_plain_line(tmp_path: Path) -> None:
    """A missing file, a directory and a file that is not UTF-8 each give one plain reason,
    naming the file (the codec's message named no file; the OS's repeated the path)."""
    (tmp_path / "latin1.csv").write_bytes("dur\u00e9e\n10\n".encode("latin-1"))
    (tmp_path / "adir").mkdir()
    expected = {
        "nope.csv": f"cannot read durations from {tmp_path / 'nope.csv'}: No such file or"
        " directory",
        "adir": f"cannot read durations from {tmp_path / 'adir'}: Is a directory",
        "latin1.csv": f"{tmp_path / 'latin1.csv'}: not UTF-8 text (byte 3)",
    }
    for name, message in expected.items():
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            load_empirical(Empirical(dist="empirical", file=name), tmp_path)
