"""``switchboard simulate`` and ``switchboard staff`` (api-v1 §7): argument handling and output.

``router.cli`` parses the arguments and calls ``simulate(args)`` or ``staff(args)``, which
return the process exit code: 0 done, 1 a staffing search found no answer, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from config.routing import ConfigInvalid
from simulations.erlang import format_table, staffing_table
from simulations.model import Model
from simulations.output import cannot_write, write_text
from simulations.replications import simulate as run_scenario
from simulations.scenario import LoadedScenario, ScenarioInvalid, load_scenario
from simulations.search import SearchResult, Trial, search

# The bar appears only once a run has lasted this long: short runs stay quiet.
_PROGRESS_AFTER_SECONDS = 2.0
_PROGRESS_WIDTH = 30
#: contacts one replication may expect (a run holds them all in memory)
MAX_CONTACTS = 20_000_000

# Below this many contacts in all replications, one process finishes before workers start.
_PARALLEL_FROM_CONTACTS = 50_000


class ProgressBar:
    """A one-line progress bar on stderr, shown only on a terminal and after a few seconds."""

    def __init__(self, label: str, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.label = label
        self.started = self.last = time.monotonic()
        self.drawn = False

    def __call__(self, fraction: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started < _PROGRESS_AFTER_SECONDS or (now - self.last < 0.2 and fraction < 1):
            return
        self.last = now
        filled = round(_PROGRESS_WIDTH * min(1.0, fraction))
        bar = "#" * filled + "-" * (_PROGRESS_WIDTH - filled)
        elapsed = now - self.started
        self.stream.write(f"\r{self.label} [{bar}] {fraction:4.0%} {elapsed:6.1f} s")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _workers(model: Model, replications: int) -> int:
    """Replications run in parallel on every core this process may use, when there is enough
    work to repay starting the worker processes (about a second each)."""
    if model.expected_contacts * replications < _PARALLEL_FROM_CONTACTS:
        return 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _load(path: str) -> LoadedScenario | None:
    try:
        return load_scenario(path)
    except (ScenarioInvalid, ConfigInvalid) as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return None


def _build(loaded: LoadedScenario) -> Model | None:
    """The model of a loaded scenario; building it runs the routing engine on the scenario's
    customers, so this is where a scenario and its routing config are checked together."""
    try:
        model = Model.build(loaded)
    except (ScenarioInvalid, ConfigInvalid, ValueError) as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return None
    expected = model.expected_contacts
    if expected > MAX_CONTACTS:
        print(
            f"switchboard: {loaded.name} expects {expected:,.0f} contacts per replication; a "
            f"run holds at most {MAX_CONTACTS:,} (shorten it or lower the rates)",
            file=sys.stderr,
        )
        return None
    return model


def _cannot_write(path: str, exc: OSError) -> None:
    cannot_write(path, exc)


def _try_file(path: Path) -> None:
    """Open ``path`` for appending, as writing it will, and leave no file behind that was not
    there before. Raises OSError."""
    existed = os.path.lexists(path)
    with path.open("a", encoding="utf-8"):
        pass
    if not existed:
        path.unlink()


def outputs_writable(json_out: str | None, report: str | None = None) -> bool:
    """Whether the outputs can be written, tried before a run rather than after it: router.cli
    checks permissions, which say nothing to root or of a file system such as /proc. False,
    with the reason on stderr, if not."""
    if report is not None:
        from simulations.report import REPORT_FILES  # (matplotlib: only with a report)

        if json_out is not None and json_out != "-":
            into = Path(report).resolve()
            if Path(json_out).resolve() in (into, *(into / name for name in REPORT_FILES)):
                # (the report would overwrite the JSON, or the JSON stand where the report goes)
                print(
                    f"switchboard: --json {json_out} is where --report {report} writes",
                    file=sys.stderr,
                )
                return False
    path = json_out
    try:
        if json_out is not None and json_out != "-":
            Path(json_out).parent.mkdir(parents=True, exist_ok=True)
            _try_file(Path(json_out))
        if report is not None:
            path = report
            Path(report).mkdir(parents=True, exist_ok=True)
            for name in REPORT_FILES:
                _try_file(Path(report) / name)
    except OSError as exc:
        _cannot_write(str(path), exc)
        return False
    return True


def _write_json(path: str, data: Any) -> bool:
    """Write ``data`` to ``path`` (``-``: stdout); False, with the reason on stderr, if not."""
    return write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def _meta(loaded: LoadedScenario, seed: int, replications: int) -> dict[str, Any]:
    spec = loaded.spec
    return {
        "name": loaded.name,
        "file": loaded.source,
        "routing": spec.routing if isinstance(spec.routing, str) else "inline",
        "seed": seed,
        "replications": replications,
        "duration_hours": spec.duration_hours,
        "warmup_hours": spec.warmup_hours,
        "interval_minutes": spec.interval_minutes,
    }


def _cell(entry: dict[str, Any], key: str, fmt: str, scale: float = 1.0) -> str:
    value = entry.get(key)
    if value is None:
        return "-"
    text = format(value * scale, fmt)
    width = (entry.get("half_widths") or {}).get(key)
    return text if width is None else f"{text}±{format(width * scale, fmt)}"


def _percent(entry: dict[str, Any], key: str) -> str:
    text = _cell(entry, key, ".1f", 100)
    return text if entry.get(key) is None else f"{text}%"  # "-", not "-%", when there is none


def render(result: dict[str, Any]) -> str:
    """The overall and per queue/segment/channel figures as a plain-text table."""
    head = (
        f"{'':<22}{'offered':>10}{'answered':>10}{'abandoned':>10}  {'service level':>15}"
        f"{'ASA s':>14}{'abandon':>14}{'occupancy':>14}"
    )
    lines = [head]
    sections = [("overall", {"all contacts": result["overall"]})]
    sections += [(k, result[k]) for k in ("by_queue", "by_segment", "by_channel")]
    for title, entries in sections:
        if title != "overall":
            lines.append(title.replace("_", " ") + ":")
        for name, e in entries.items():
            lines.append(
                f"  {name:<20}{e['offered']:>10.0f}{e['answered']:>10.0f}"
                f"{e['abandoned']:>10.0f}  {_percent(e, 'service_level'):>15}"
                f"{_cell(e, 'asa_seconds', '.1f'):>14}{_percent(e, 'abandon_rate'):>14}"
                f"{_percent(e, 'occupancy'):>14}"
            )
    unresolved = result["overall"].get("unresolved") or 0
    if unresolved:
        lines.append(
            f"\n{unresolved:,.0f} contacts were still waiting when the drain ended (unresolved):"
            " counted as offered and not answered in time."
        )
    for name, e in result["by_queue"].items():
        if e["offered"] and e.get("occupancy") is None:
            lines.append(f"queue {name!r} had contacts but no agent on shift ever staffed it.")
    run = result["run"]
    lines.append(
        f"\n{run['contacts']} contacts in {run['wall_seconds']:.1f} s "
        f"({run['contacts_per_second'] or 0:,.0f} contacts/s), {run['replications']} replication(s)"
    )
    return "\n".join(lines) + "\n"


def simulate(args: argparse.Namespace) -> int:
    """``switchboard simulate SCENARIO [--seed N] [--replications R] [--json F] [--report D]``."""
    # router.cli has checked the options (--replications >= 1, --seed >= 0, writable outputs).
    loaded = _load(args.scenario)
    model = None if loaded is None else _build(loaded)
    if loaded is None or model is None or not outputs_writable(args.json_out, args.report):
        return 2
    replications = args.replications or loaded.spec.replications
    bar = ProgressBar(f"simulating {loaded.name}", not args.no_progress)
    try:
        result = run_scenario(
            model, args.seed, replications, bar, workers=_workers(model, replications)
        )
    finally:
        bar.close()
    result = {"scenario": _meta(loaded, args.seed, replications), **result}
    if args.json_out != "-":  # stdout carries the JSON itself
        sys.stdout.write(render(result))
    if args.json_out and not _write_json(args.json_out, result):
        return 2
    if args.report:
        from simulations.report import write_report  # matplotlib only when asked for

        try:
            path = write_report(result, Path(args.report))
        except OSError as exc:
            _cannot_write(args.report, exc)
            return 2
        print(f"report: {path}", file=sys.stderr if args.json_out == "-" else sys.stdout)
    return 0


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def staff(args: argparse.Namespace) -> int:
    """``switchboard staff``: an Erlang C/A table, or a simulated search over a scenario."""
    table_only = [
        "--" + name.replace("_", "-")
        for name in ("per_hour", "aht", "threshold", "target", "patience")
        if getattr(args, name, None) is not None
    ]
    if args.scenario:
        if table_only:  # (the scenario has its own arrivals, handle times and service levels)
            print(
                f"switchboard: {', '.join(table_only)} make an Erlang table; --scenario takes "
                "the arrivals, handle times and service levels of the scenario",
                file=sys.stderr,
            )
            return 2
        return _staff_scenario(args)
    if getattr(args, "replications", None) is not None:
        print("switchboard: --replications is for --scenario", file=sys.stderr)
        return 2
    if args.per_hour is None or args.aht is None:
        print("switchboard: staff needs --per-hour and --aht, or --scenario", file=sys.stderr)
        return 2
    if not outputs_writable(args.json_out):
        return 2
    threshold = 20.0 if args.threshold is None else args.threshold
    target = 0.8 if args.target is None else args.target
    try:
        table = staffing_table(args.per_hour, args.aht, threshold, target, args.patience)
    except ValueError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    if args.json_out != "-":  # stdout carries the JSON itself
        sys.stdout.write(format_table(table))
    if args.json_out:
        data = {
            "model": "erlang_c" if args.patience is None else "erlang_a",
            "per_hour": table.per_hour,
            "aht_seconds": table.aht_seconds,
            "threshold_seconds": table.threshold_seconds,
            "target": table.target,
            "patience_seconds": table.patience_seconds,
            "recommended": table.recommended,
            "rows": [{k: _finite(v) for k, v in asdict(r).items()} for r in table.rows],
        }
        if not _write_json(args.json_out, data):
            return 2
    return 0 if table.recommended is not None else 1


def _staff_scenario(args: argparse.Namespace) -> int:
    loaded = _load(args.scenario)
    model = None if loaded is None else _build(loaded)
    if loaded is None or model is None or not outputs_writable(args.json_out):
        return 2
    replications = getattr(args, "replications", None)
    if replications is None:  # router.cli refuses a given count below 1
        replications = loaded.spec.replications
    verbose = not getattr(args, "no_progress", False) and sys.stderr.isatty()

    def show(trial: Trial) -> None:
        if verbose:
            verdict = (
                "meets every target"
                if trial.meets
                else "misses "
                + ", ".join(f"{q} {sl:.1%}<{t:.1%}" for q, (sl, t) in trial.misses.items())
            )
            print(f"  trial {list(trial.counts)}: {verdict}", file=sys.stderr)

    result = search(model, args.seed, replications, show, workers=_workers(model, replications))
    # with --json -, stdout carries the JSON alone and the table goes to stderr
    out = sys.stderr if args.json_out == "-" else sys.stdout
    print(
        f"Staffing search for {loaded.name}: {len(result.trials)} trials, "
        f"{replications} replication(s) each",
        file=out,
    )
    if result.best is None:
        print("No staffing up to 64x the scenario's counts meets every target.", file=out)
        # what the largest trial missed, and the queues that more of the same agents cannot
        # help: no group's agents are members, so their contacts wait for ever
        last = result.trials[-1]
        for name, (sl, target) in last.misses.items():
            print(f"  at {list(last.counts)}: {name} {sl:.1%} < {target:.1%}", file=out)
        for name, q in last.result["by_queue"].items():
            if q["offered"] and q.get("occupancy") is None:
                print(f"queue {name!r} had contacts but no agent group can staff it.", file=out)
        # (the JSON is written all the same, so that a script reads the failure, not a stale
        # file: no count per group and no result, and the trials with what the last missed)
        if args.json_out and not _write_json(
            args.json_out, _search_json(loaded, args.seed, replications, result)
        ):
            return 2
        return 1
    best = result.best
    print(f"\n{'group':<24}{'scenario':>10}{'smallest':>10}", file=out)
    for name, before, after in zip(result.groups, result.initial, best.counts, strict=True):
        print(f"{name:<24}{before:>10}{after:>10}", file=out)
    print(f"{'total':<24}{sum(result.initial):>10}{sum(best.counts):>10}", file=out)
    print(f"\n{'queue':<24}{'service level':>14}{'target':>10}", file=out)
    for name, q in best.result["by_queue"].items():
        print(f"{name:<24}{q['service_level']:>14.1%}{q['target']:>10.1%}", file=out)
    if args.json_out and not _write_json(
        args.json_out, _search_json(loaded, args.seed, replications, result)
    ):
        return 2
    return 0


def _search_json(
    loaded: LoadedScenario, seed: int, replications: int, result: SearchResult
) -> dict[str, Any]:
    """A search's JSON; without an answer, each group's ``count`` and the ``result`` are null
    and the last trial carries what it missed."""
    best = result.best
    counts = best.counts if best is not None else (None,) * len(result.groups)
    trials: list[dict[str, Any]] = [
        {"counts": list(t.counts), "meets": t.meets} for t in result.trials
    ]
    if best is None and result.trials:
        last = result.trials[-1]
        trials[-1]["misses"] = {
            name: {"service_level": sl, "target": target}
            for name, (sl, target) in last.misses.items()
        }
    return {
        "scenario": _meta(loaded, seed, replications),
        "groups": [
            {"name": n, "scenario_count": a, "count": b}
            for n, a, b in zip(result.groups, result.initial, counts, strict=True)
        ],
        "trials": trials,
        "result": None if best is None else best.result,
    }
