"""``marlops tune --jobs N``: N worker processes on one study storage, each with its own sampler seed, and
the parent drawing their trials from the storage while they run (:class:`_TrialWatch`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from marlops.training.config import budget_config
from marlops.tuning.space import SearchSpace, load_space
from marlops.tuning.study import TrialEvents, TuneOptions, optimize

if TYPE_CHECKING:
    import optuna


def worker_main(options: str) -> None:
    """One worker of a ``--jobs N`` study (a subprocess: ``python -c``, so no main module is re-imported)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opts, space = worker_config(options)
    optimize(opts, load_space(space))


def worker_options(opts: TuneOptions, space: SearchSpace) -> list[str]:
    """What each of the ``jobs`` workers is started with (JSON): the study's options, its storage made
    explicit, the search space's file and the worker's number (its own sampler seed: :func:`sampler_seed`)."""
    data = {**opts.__dict__, "out_root": str(opts.out_root), "storage": opts.storage_url()}
    return [json.dumps({**data, "space": space.source, "worker": w}) for w in range(opts.jobs)]


def worker_config(options: str) -> tuple[TuneOptions, str]:
    """A worker's options (one process: ``jobs`` 1) and its search-space file, from :func:`worker_options`."""
    data = json.loads(options)
    space = data.pop("space")
    return TuneOptions(**{**data, "jobs": 1, "out_root": Path(data["out_root"])}), space


def run_workers(opts: TuneOptions, space: SearchSpace, study: optuna.Study, events: TrialEvents) -> None:
    """``jobs`` worker processes on the same storage; each runs trials until the study holds n_trials
    finished ones (a worker may finish one more that it had started). Meanwhile the storage is read every
    few seconds and the workers' trials are told to ``events`` (the CLI's progress bars)."""
    import subprocess
    import sys

    procs = []
    for options in worker_options(opts, space):
        code = f"from marlops.tuning.workers import worker_main; worker_main({json.dumps(options)})"
        procs.append(subprocess.Popen([sys.executable, "-c", code]))
    watch = _TrialWatch(study, events, budget_config(opts.budget).team.updates)
    while any(p.poll() is None for p in procs):
        watch.poll()
        time.sleep(_POLL_S)
    watch.poll()
    bad = [p.returncode for p in procs if p.returncode]
    if bad:
        raise RuntimeError(f"{len(bad)} tuning worker(s) failed (exit codes {bad})")


_POLL_S = 3.0


class _TrialWatch:
    """The trials other processes run, as :class:`TrialEvents`: read from the shared storage."""

    def __init__(self, study: optuna.Study, events: TrialEvents, updates: int) -> None:
        self.study, self.events, self.updates = study, events, updates
        self.seen: dict[int, tuple[str, int]] = {}  # trial number -> (state, intermediate values told)
        self.before = {t.number for t in study.get_trials(deepcopy=False)}  # a resumed study's own

    def poll(self) -> None:
        for t in self.study.get_trials(deepcopy=False):
            if t.number in self.before:
                continue
            state, told = self.seen.get(t.number, ("", -1))
            if told < 0:
                self.events.start(t.number, dict(t.params), self.updates)
                told = 0
            steps = sorted(t.intermediate_values.items())
            if len(steps) > told:
                self.events.update(t.number, *steps[-1])
                told = len(steps)
            if t.state.is_finished() and not state:
                wall = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_start else 0.0
                value = t.value if t.state.name == "COMPLETE" else None
                self.events.end(t.number, t.state.name, value, wall)
                state = t.state.name
            self.seen[t.number] = (state, told)
