"""Independent replications of a scenario, serially or on worker processes, combined.

Replication ``r`` always runs on the ``r``-th child of ``SeedSequence(seed)``, wherever it runs,
so results do not depend on the number of workers, and a run with more replications extends a
run with fewer. Workers are spawned (not forked), which is safe whatever threads the parent
runs, and build the model from the scenario once; a ``Runner`` keeps them for many runs, as
the staffing search needs, so the start-up is paid once.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from simulations.metrics import Summary, combine, summarise
from simulations.model import Model
from simulations.scenario import LoadedScenario
from simulations.sim import Progress, run_replication

_worker_model: Model | None = None


def _start_worker(scenario: LoadedScenario) -> None:
    global _worker_model
    _worker_model = Model.build(scenario)


def _replicate(counts: tuple[int, ...], seed: np.random.SeedSequence) -> Summary:
    assert _worker_model is not None, "worker not initialised"
    model = _worker_model.with_counts(counts)
    return summarise(model, run_replication(model, seed))


def _spawnable() -> bool:
    """Spawned workers re-import the main script; a script read from stdin cannot be."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    return main is None or Path(main).is_file()


class Runner:
    """Runs replications of one scenario's model, on ``workers`` processes when above 1."""

    def __init__(self, model: Model, workers: int = 1) -> None:
        self.model = model
        self.pool: Executor | None = None
        if workers > 1 and _spawnable():
            self.pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(model.scenario,),
            )

    def __enter__(self) -> Runner:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None

    def simulate(
        self,
        seed: int,
        replications: int = 1,
        progress: Progress | None = None,
        counts: Sequence[int] | None = None,
    ) -> dict[str, Any]:
        """The combined figures of ``replications`` runs (api-v1 §7, without the metadata),
        with other agent counts per group if ``counts`` is given.

        ``run.contacts_per_second`` is per second of replication time (``replication_seconds``,
        the replications' times added up), so per core; ``run.wall_seconds`` is the elapsed
        time of the whole run.
        """
        if replications < 1:
            raise ValueError("replications must be >= 1")
        started = time.perf_counter()
        result = self._simulate(seed, replications, progress, counts)
        # elapsed, not the replications' times added up: they may run side by side
        result["run"]["wall_seconds"] = time.perf_counter() - started
        return result

    def _simulate(
        self,
        seed: int,
        replications: int,
        progress: Progress | None,
        counts: Sequence[int] | None,
    ) -> dict[str, Any]:
        model = self.model if counts is None else self.model.with_counts(counts)
        children = np.random.SeedSequence(seed).spawn(replications)
        if self.pool is None or replications == 1:
            summaries = []
            for r, child in enumerate(children):

                def step(done: float, r: int = r) -> None:
                    if progress is not None:
                        progress((r + done) / replications)

                summaries.append(summarise(model, run_replication(model, child, step)))
                step(1.0)
            return combine(summaries)
        group_counts = tuple(g.count for g in model.groups)
        futures = [self.pool.submit(_replicate, group_counts, child) for child in children]
        for done, _ in enumerate(as_completed(futures), start=1):
            if progress is not None:
                progress(done / replications)
        return combine([f.result() for f in futures])


def simulate(
    model: Model,
    seed: int,
    replications: int = 1,
    progress: Progress | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """One run of ``replications`` replications (see ``Runner.simulate``)."""
    with Runner(model, min(workers, replications)) as runner:
        return runner.simulate(seed, replications, progress)
