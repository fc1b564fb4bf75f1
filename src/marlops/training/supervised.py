"""What the supervised stages (regime, structure, tactical) share: class weights for balanced accuracy and
the checkpoint state of an epoch trainer."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse class frequencies, normalized to mean 1 over the classes present (absent classes: 0): the
    cross-entropy weights under which every class counts as much as the others (balanced accuracy)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return torch.as_tensor(w, dtype=torch.float32)


class EpochCheckpoint:
    """Checkpoint state of a trainer with ``net``, ``opt``, ``rng``, ``steps`` and ``epochs_done``: a
    resumed run continues at the next epoch with the same weights, optimizer moments and sample order."""

    net: nn.Module
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    steps: int
    epochs_done: int

    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "rng": self.rng.bit_generator.state,
            "steps": self.steps,
            "epochs_done": self.epochs_done,
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.rng.bit_generator.state = state["rng"]
        self.steps, self.epochs_done = int(state["steps"]), int(state["epochs_done"])
