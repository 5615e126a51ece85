"""Duration distributions for scenarios: the YAML shapes and fast seeded samplers.

A scenario writes a duration as ``{dist: exponential, mean_seconds: 180}`` (or lognormal,
gamma, constant, empirical) or as a bare number of seconds (a constant). ``Sampler`` draws
integer milliseconds from a seeded numpy generator in blocks: one numpy call per few thousand
draws costs far less than one call per draw, and the simulator draws several per contact.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# Draws per numpy call: large enough to amortise the call, small enough not to waste time on
# streams that only ever need a few values.
BLOCK = 2048
# A duration is at most a (leap) year, as long as a scenario may run: the longest that can mean
# anything in a run, and far inside the integer milliseconds the simulator counts in (a larger
# figure overflowed them, and a handle time of 1e308 s ended at once).
MAX_SECONDS = 366 * 24 * 3600.0
# The spread of a lognormal or gamma, sd / mean, is at most this: past it the shapes are
# degenerate (a gamma shape that underflows to 0, a lognormal sigma that overflows).
MAX_SPREAD = 1000.0

Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Exponential(_Dist):
    dist: Literal["exponential"]
    mean_seconds: float = Field(gt=0, le=MAX_SECONDS)


class _Spread(_Dist):
    mean_seconds: float = Field(gt=0, le=MAX_SECONDS)
    sd_seconds: float = Field(gt=0, le=MAX_SECONDS)

    @model_validator(mode="after")
    def _spread(self) -> _Spread:
        if self.sd_seconds > MAX_SPREAD * self.mean_seconds:
            raise ValueError(f"sd_seconds may be at most {MAX_SPREAD:g} times mean_seconds")
        return self


class Lognormal(_Spread):
    """Parameterised by the mean and standard deviation of the duration itself, as planners
    read them off reports, not by the underlying normal's mu and sigma."""

    dist: Literal["lognormal"]


class Gamma(_Spread):
    """Mean and standard deviation (shape = (mean/sd)^2); a shape of 1 is the exponential."""

    dist: Literal["gamma"]


class Constant(_Dist):
    dist: Literal["constant"]
    seconds: Seconds


class Empirical(_Dist):
    """Resampled (with replacement) from observed durations in seconds.

    Either ``values`` inline or ``file``: a CSV relative to the scenario file, where ``column``
    names a column under a header row; without it the first column is read and a non-numeric
    first row is taken as a header. ``load_empirical`` reads the file into ``values``.
    """

    dist: Literal["empirical"]
    file: str | None = None
    column: str | None = None
    values: tuple[float, ...] = ()

    @model_validator(mode="after")
    def _one_source(self) -> Empirical:
        if self.file is None and not self.values:
            raise ValueError("an empirical distribution needs `file` or `values`")
        if any(not 0 <= v <= MAX_SECONDS for v in self.values):  # (NaN too)
            raise ValueError(f"durations must be from 0 to {MAX_SECONDS:,.0f} seconds")
        return self


Distribution = Annotated[
    Exponential | Lognormal | Gamma | Constant | Empirical, Field(discriminator="dist")
]


def coerce(value: Any) -> Any:
    """A bare number of seconds is a constant distribution; so is a number YAML reads as text
    (``3e2``: YAML 1.1 wants a dot in a float), as pydantic takes ``mean_seconds: 3e2``."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"dist": "constant", "seconds": float(value)}
    return value


def load_empirical(dist: Empirical, base: Path) -> Empirical:
    """Read the CSV an empirical distribution names (relative to ``base``)."""
    if dist.file is None:
        return dist
    path = (base / dist.file).resolve()
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            # each row with the file's line it ends on, so a problem names the line an editor
            # shows (blank lines and the header are counted)
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except OSError as exc:
        raise ValueError(f"cannot read durations from {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not rows:
        raise ValueError(f"{path}: no durations")
    index = 0
    if dist.column is not None:
        header = [cell.strip() for cell in rows[0][1]]
        if dist.column not in header:
            raise ValueError(f"{path}: no column {dist.column!r} (columns: {', '.join(header)})")
        index, rows = header.index(dist.column), rows[1:]
    elif not _is_number(rows[0][1][0]):
        rows = rows[1:]
    values: list[float] = []
    for line, row in rows:
        cell = row[index].strip() if index < len(row) else ""
        if not _is_number(cell) or not 0 <= float(cell) <= MAX_SECONDS:
            raise ValueError(
                f"{path}: row {line}: {cell!r} is not a duration in seconds (0 to"
                f" {MAX_SECONDS:,.0f})"
            )
        values.append(float(cell))
    if not values:
        raise ValueError(f"{path}: no durations")
    return Empirical(dist="empirical", file=dist.file, column=dist.column, values=tuple(values))


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


class Sampler:
    """Integer milliseconds from one distribution and one seeded generator, drawn in blocks."""

    __slots__ = ("_buffer", "_dist", "_rng", "_values", "constant")

    def __init__(self, dist: Distribution, rng: np.random.Generator) -> None:
        self._dist = dist
        self._rng = rng
        # a constant draws no random numbers: callers may read it instead of calling
        self.constant = round(dist.seconds * 1000.0) if isinstance(dist, Constant) else None
        self._buffer: list[int] = []
        self._values = np.asarray(dist.values, dtype=float) if isinstance(dist, Empirical) else None

    def __call__(self) -> int:
        buffer = self._buffer
        if not buffer:
            buffer.extend(self._block())
        return buffer.pop()

    def _block(self) -> list[int]:
        d, rng = self._dist, self._rng
        if isinstance(d, Exponential):
            seconds = rng.exponential(d.mean_seconds, BLOCK)
        elif isinstance(d, Lognormal):
            sigma2 = math.log1p((d.sd_seconds / d.mean_seconds) ** 2)
            mu = math.log(d.mean_seconds) - sigma2 / 2
            seconds = rng.lognormal(mu, math.sqrt(sigma2), BLOCK)
        elif isinstance(d, Gamma):
            shape = (d.mean_seconds / d.sd_seconds) ** 2
            seconds = rng.gamma(shape, d.mean_seconds / shape, BLOCK)
        elif isinstance(d, Constant):
            seconds = np.full(BLOCK, d.seconds)
        else:
            assert self._values is not None
            seconds = rng.choice(self._values, BLOCK)
        # (a lognormal's or gamma's far tail may pass any bound: cut at the longest duration)
        seconds = np.minimum(seconds, MAX_SECONDS)
        out: list[int] = np.rint(seconds * 1000.0).astype(np.int64).tolist()
        return out


class Draws:
    """Uniform [0, 1) or standard exponential floats in blocks (segment choice, arrival gaps)."""

    __slots__ = ("_buffer", "_exponential", "_rng")

    def __init__(self, rng: np.random.Generator, kind: Literal["uniform", "exponential"]) -> None:
        self._rng = rng
        self._exponential = kind == "exponential"
        self._buffer: list[float] = []

    def __call__(self) -> float:
        buffer = self._buffer
        if not buffer:
            rng = self._rng
            block = rng.standard_exponential(BLOCK) if self._exponential else rng.random(BLOCK)
            buffer.extend(block.tolist())
        return buffer.pop()
