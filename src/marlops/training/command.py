"""The ``marlops train`` command line, built in one place.

The CLI hands it to torchrun's workers, and the pipeline's train step puts it into the TrainJob (or
PyTorchJob) it launches: the job trains what ``marlops train`` with these options trains locally.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


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

    def argv(self) -> list[str]:
        """``["train", "--out", …]``: the arguments after the ``marlops`` entry point."""
        argv = ["train"]
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                argv += [f"--{f.name.replace('_', '-')}", str(value)]
        return argv
