"""The HTML report of a simulation (``switchboard simulate --report DIR``).

One self-contained ``index.html``: the figures as tables and four matplotlib charts embedded as
base64 PNGs (service level and offered contacts by interval against the target, queue length,
occupancy and staffing, and the wait distribution by segment); beside it, and linked from it,
the figures as CSV for a spreadsheet. The Agg backend draws without a display, so reports can
be made on servers and in CI.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend must be chosen before pyplot loads
from matplotlib.figure import Figure

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .7em;text-align:right}
th{border-bottom:1px solid #888}td:first-child,th:first-child{text-align:left}
tr:nth-child(even){background:#f4f4f4}img{max-width:100%}.note{color:#666;font-size:.9em}
"""
#: what ``write_report`` writes into its directory
REPORT_FILES = ("index.html", "intervals.csv", "summary.csv")
_COLUMNS = [
    ("offered", "offered", "{:.0f}", 1.0),
    ("answered", "answered", "{:.0f}", 1.0),
    ("abandoned", "abandoned", "{:.0f}", 1.0),
    ("service_level", "service level %", "{:.1f}", 100.0),
    ("target", "target %", "{:.0f}", 100.0),
    ("asa_seconds", "ASA s", "{:.1f}", 1.0),
    ("abandon_rate", "abandoned %", "{:.2f}", 100.0),
    ("occupancy", "occupancy %", "{:.1f}", 100.0),
]


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="chart" src="data:image/png;base64,{data}">'


def _hours(intervals: list[dict[str, Any]]) -> list[float]:
    return [e["start_seconds"] / 3600 for e in intervals]


def _step(ax: Any, x: list[float], values: list[float], width: float, **style: Any) -> None:
    """A post-step line that also covers the last interval (``step`` stops at its start)."""
    if x:
        ax.step([*x, x[-1] + width], [*values, values[-1]], where="post", **style)


def _values(intervals: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[float]:
    return [e[key] * scale if e.get(key) is not None else float("nan") for e in intervals]


def _service_level_chart(intervals: list[dict[str, Any]], width: float) -> str:
    fig, ax = plt.subplots(figsize=(10, 4))
    x = _hours(intervals)
    offered = ax.twinx()
    offered.bar(x, _values(intervals, "offered"), width=width, align="edge", color="#ddd")
    offered.set_ylabel("contacts offered per interval (bars)")
    ax.set_zorder(offered.get_zorder() + 1)
    ax.patch.set_visible(False)
    _step(ax, x, _values(intervals, "service_level", 100), width, label="service level")
    _step(ax, x, _values(intervals, "target", 100), width, ls="--", label="target")
    ax.set_ylim(0, 105)
    ax.set_xlabel("hour")
    ax.set_ylabel("service level %")
    ax.legend(loc="lower left")
    ax.set_title("Service level and offered contacts by interval")
    return _png(fig)


def _queue_chart(intervals: list[dict[str, Any]], width: float) -> str:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    _step(ax, _hours(intervals), _values(intervals, "queue_length"), width)
    ax.set_xlabel("hour")
    ax.set_ylabel("contacts waiting")
    ax.set_title("Queue length by interval (time average)")
    return _png(fig)


def _staffing_chart(intervals: list[dict[str, Any]], width: float) -> str:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    x = _hours(intervals)
    _step(ax, x, _values(intervals, "occupancy", 100), width, color="C2")
    ax.set_ylim(0, 105)
    ax.set_ylabel("occupancy % (solid)")
    ax.set_xlabel("hour")
    staffed = ax.twinx()
    _step(staffed, x, _values(intervals, "agents_staffed"), width, color="C4", ls=":")
    staffed.set_ylim(bottom=0)
    staffed.set_ylabel("agents staffed (dotted)")
    ax.set_title("Occupancy and agents staffed by interval")
    return _png(fig)


def _wait_chart(histogram: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    edges = histogram["edges_seconds"]
    uppers = [e for e in edges[1:] if e is not None]
    for name, counts in histogram["answered"].items():
        total = sum(counts) or 1.0
        cumulative, running = [], 0.0
        for c in counts[: len(uppers)]:
            running += c
            cumulative.append(100 * running / total)
        ax.plot(uppers, cumulative, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("wait (s, log scale)")
    ax.set_ylabel("% of answered within")
    ax.set_ylim(0, 105)
    ax.set_title("Wait distribution of answered contacts by segment")
    if ax.get_lines():  # (no segment answered anything: no legend, and no matplotlib warning)
        ax.legend()
    return _png(fig)


def _table(entries: dict[str, dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _, _ in _COLUMNS)
    rows = []
    for name, e in entries.items():
        cells = []
        for key, _, fmt, scale in _COLUMNS:
            value = e.get(key)
            text = "-" if value is None else fmt.format(value * scale)
            width = (e.get("half_widths") or {}).get(key)
            if width is not None:
                text += " ± " + fmt.format(width * scale)
            cells.append(f"<td>{text}</td>")
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


# Records on <body> how many charts the browser actually decoded: the headless-browser test
# (and anyone debugging a blank report) reads it.
_LOADED_MARKER = (
    "<script>addEventListener('load',()=>{const i=[...document.images];"
    "document.body.dataset.charts=i.length;"
    "document.body.dataset.decoded=i.filter(x=>x.complete&&x.naturalWidth>0).length;});</script>"
)


def _columns(entries: list[dict[str, Any]], lead: list[str]) -> tuple[list[str], list[str]]:
    """The figures the entries carry (but the ``lead`` columns), in the JSON's order, and
    those with a half-width."""
    figures: dict[str, None] = {}
    widths: dict[str, None] = {}
    for e in entries:
        figures.update(dict.fromkeys(k for k in e if k != "half_widths" and k not in lead))
        widths.update(dict.fromkeys(e.get("half_widths") or {}))
    return list(figures), list(widths)


def _csv_value(value: Any) -> Any:
    return "" if value is None else value  # (floats at full precision, as in the JSON)


def _write_csv(path: Path, lead: list[str], rows: list[tuple[list[Any], dict[str, Any]]]) -> None:
    """One row per entry: the ``lead`` cells, then its figures, then ``<figure>_half_width``."""
    figures, widths = _columns([entry for _, entry in rows], lead)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*lead, *figures, *(f"{k}_half_width" for k in widths)])
        for cells, e in rows:
            half = e.get("half_widths") or {}
            writer.writerow(
                [*cells, *(_csv_value(e.get(k)) for k in figures)]
                + [_csv_value(half.get(k)) for k in widths]
            )


def _clock(seconds: float) -> str:
    """Hours and minutes from the start of the run ("26:30" on the second day)."""
    minutes = round(seconds / 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def write_csv(result: dict[str, Any], directory: Path) -> None:
    """``intervals.csv`` (a row per interval) and ``summary.csv`` (overall, then a row per
    queue, segment and channel): the JSON's figures, for a spreadsheet."""
    intervals = result["by_interval"]
    _write_csv(
        directory / "intervals.csv",
        ["start", "start_seconds"],
        [([_clock(e["start_seconds"]), e["start_seconds"]], e) for e in intervals],
    )
    rows: list[tuple[list[Any], dict[str, Any]]] = [
        (["overall", "all contacts"], result["overall"])
    ]
    for key, kind in (("by_queue", "queue"), ("by_segment", "segment"), ("by_channel", "channel")):
        rows += [([kind, name], e) for name, e in result[key].items()]
    _write_csv(directory / "summary.csv", ["slice", "name"], rows)


def write_report(result: dict[str, Any], directory: Path) -> Path:
    """Write ``directory/index.html`` and the CSV files for a ``simulate`` result and return
    the page's path."""
    directory.mkdir(parents=True, exist_ok=True)
    write_csv(result, directory)
    meta = result.get("scenario", {})
    intervals = result["by_interval"]
    width = meta.get("interval_minutes", 30) / 60
    name = html.escape(str(meta.get("name", "scenario")))
    run = result["run"]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Switchboard: {name}</title>",
        f"<style>{_STYLE}</style></head><body><h1>Simulation report: {name}</h1>",
        f"<p class='note'>{html.escape(str(meta.get('file', '')))} · seed {meta.get('seed')} · "
        f"{run['replications']} replication(s) of {meta.get('duration_hours')} h, warm-up "
        f"{meta.get('warmup_hours')} h excluded · {run['contacts']} contacts simulated in "
        f"{run['wall_seconds']:.1f} s. ± figures are 95 % confidence half-widths.</p>",
        "<p>The figures as CSV, for a spreadsheet: <a href='intervals.csv'>intervals.csv</a>"
        " (a row per interval) and <a href='summary.csv'>summary.csv</a> (overall, and a row"
        " per queue, segment and channel), at full precision, and with several replications"
        " a <code>&lt;figure&gt;_half_width</code> column for each figure.</p>",
        "<h2>Overall</h2>",
        _table({"all contacts": result["overall"]}),
        "<h2>By queue</h2>",
        _table(result["by_queue"]),
        "<h2>By segment</h2>",
        _table(result["by_segment"]),
        "<p class='note'>A segment's occupancy is its part of the busy time (split by its"
        " contacts' handling time) over all staffed agent time: the segments add up to the"
        " overall occupancy.</p>",
        "<h2>By channel</h2>",
        _table(result["by_channel"]),
        "<h2>Intervals</h2>",
        _service_level_chart(intervals, width),
        _queue_chart(intervals, width),
        _staffing_chart(intervals, width),
        "<h2>Waits</h2>",
        _wait_chart(result["wait_histogram"]),
        _LOADED_MARKER,
        "</body></html>",
    ]
    path = directory / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
