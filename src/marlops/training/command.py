"""The ``marlops train`` command line, built in one place, and what the command does with it.

The CLI hands it to torchrun's workers, and the pipeline's train step puts it into the TrainJob (or
PyTorchJob) it launches: the job trains what ``marlops train`` with these options trains locally.
:func:`run_training` is the command itself: check the options, clear the folder on ``--fresh``, then
launch torchrun workers or train in this process.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from marlops.training.config import TrainConfig
    from marlops.training.market import TrainSummary

ENTRY_MODULE = "marlops.cli"  # what torchrun's workers run: ``python -m marlops.cli train …``


@dataclass(frozen=True)
class TrainArgs:
    """``marlops train``'s options; None leaves an option out (the budget's value applies)."""

    out: str
    budget: str = "default"
    updates: int | None = None
    days: int | None = None
    dataset: str | None = None
    from_feast: str | None = None
    instrument: str | None = None
    regime_targets: str | None = None
    labels: str | None = None
    holdout_fraction: float | None = None
    seed: int | None = None
    init_from: str | None = None
    checkpoint_every: int | None = None
    threads: int | None = None
    # ``--set NAME=VALUE``: any setting by its dotted name (``team.lr``) over the budget; the options above
    # win over a setting they also set. E.g. the best values of ``marlops tune``
    settings: dict[str, Any] | None = None

    def argv(self) -> list[str]:
        """``["train", "--out", …]``: the arguments after the ``marlops`` entry point."""
        from marlops.training.config import settings_argv

        argv = ["train"]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "settings":
                argv += settings_argv(value or {})
            elif value is not None:
                argv += [f"--{f.name.replace('_', '-')}", str(value)]
        return argv

    def config(self) -> TrainConfig:
        """The training configuration these options give (paths made absolute); ValueError names the
        option that is wrong."""
        from marlops.training.config import budget_config

        if self.dataset is not None and not (Path(self.dataset) / "meta.json").exists():
            raise ValueError(f"dataset: {self.dataset} is not a dataset folder (no meta.json)")
        if self.labels is not None and not Path(self.labels).exists():
            raise ValueError(f"labels: {self.labels}: file not found")
        if self.instrument is not None and self.from_feast is None:
            raise ValueError("instrument: names the dataset in a Feast store; give --from-feast too")
        options = dict(
            updates=self.updates,
            days=self.days,
            seed=self.seed,
            init_from=self.init_from,
            checkpoint_every=self.checkpoint_every,
            threads=self.threads,
            dataset=_absolute(self.dataset),
            feast_dir=_absolute(self.from_feast),
            instrument=self.instrument,
            regime_targets=self.regime_targets,
            labels=_absolute(self.labels),
            holdout_fraction=self.holdout_fraction,
        )
        return budget_config(self.budget, **{**(self.settings or {}), **options})


def _absolute(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path is not None else None


@dataclass(frozen=True)
class TrainOutcome:
    """What :func:`run_training` did: ``launched`` torchrun (its argv; the workers trained and wrote
    summary.json), else trained here (``summary``)."""

    out: Path
    config: TrainConfig
    launched: list[str] | None = None
    summary: TrainSummary | None = None


def run_training(
    args: TrainArgs,
    nproc: int = 1,
    fresh: bool = False,
    on_launch: Callable[[list[str]], None] | None = None,
) -> TrainOutcome:
    """``marlops train``: check ``args`` (ValueError), discard the run folder's checkpoints and metrics on
    ``fresh``, then launch ``nproc`` local torchrun workers (or the ``PET_*`` configuration's; ``on_launch``
    is told torchrun's argv first) or train in this process (also as a torchrun worker)."""
    from marlops.training.distributed import torchrun_args

    cfg = args.config()
    out = Path(args.out)
    launch = torchrun_args(nproc, ENTRY_MODULE, args.argv())
    if fresh:  # workers never get --fresh: only the launcher (or the single process) clears the folder
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        (out / "metrics.jsonl").unlink(missing_ok=True)
    if launch is not None:
        from torch.distributed.run import main as torchrun

        if on_launch is not None:
            on_launch(launch)
        torchrun(launch)
        return TrainOutcome(out, cfg, launched=launch)
    from marlops.training import market  # torch: only when this process trains

    return TrainOutcome(out, cfg, summary=market.train_team(cfg, out))


def is_rank_zero() -> bool:
    """Whether this process reports: the single process, or torchrun's rank-0 worker."""
    return os.environ.get("RANK", "0") == "0"
