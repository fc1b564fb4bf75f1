"""The regime agent's supervised auxiliary objective: classify the true regime of synthetic markets.

Samples are the regime matrices (96×11) at every higher-bar close after the warm-up; the target is the
true regime of the base bar that closes it (labels exist for synthetic data only) and the realized
volatility of the next 48 base bars, scaled to one higher bar (``σ_48 × sqrt(6)``) — the volatility head
predicts forward, from the past only (inputs never see past the close, targets may).

Loss: class-weighted cross-entropy with label smoothing (weights = inverse class frequency in the
training set, because the goal is *balanced* accuracy and the stationary regime mix is uneven) plus
``volatility_loss_weight`` × MSE of log volatilities. AdamW, linear warm-up, gradient clipping — the
spec's ``training`` section (models/regime.yaml) gives every value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marlops.agents.networks import RegimeNet
from marlops.env.market_env import MarketData
from marlops.training.distributed import Dist

N_REGIMES = 4
_FORWARD_BARS = 48
_BASE_PER_HIGHER = 6


@dataclass
class RegimeSamples:
    x: np.ndarray  # (N, 96, 11) float32 view rows
    label: np.ndarray  # (N,) int64
    log_vol: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.label)


def regime_samples(data: MarketData) -> RegimeSamples:
    """Every higher-bar close after the warm-up that has a label and a forward volatility window."""
    closes = np.flatnonzero(data.slow_step)
    closes = closes[(closes >= data.warm_from) & (closes + _FORWARD_BARS < len(data))]
    label = data.regime_label[closes]
    keep = label >= 0
    closes, label = closes[keep], label[keep]
    if len(closes) == 0:
        raise ValueError("data: no labelled higher-bar closes after the warm-up (regime labels missing?)")
    vol = data.sigma[closes + _FORWARD_BARS] * np.sqrt(_BASE_PER_HIGHER)
    return RegimeSamples(
        x=data.regime[data.higher_of[closes]],
        label=label.astype(np.int64),
        log_vol=np.log(np.maximum(vol, 1e-8)).astype(np.float32),
    )


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = N_REGIMES) -> float:
    """Mean recall over the classes present in ``y_true``."""
    recalls = [float(np.mean(y_pred[y_true == c] == c)) for c in range(n_classes) if np.any(y_true == c)]
    return float(np.mean(recalls)) if recalls else float("nan")


@torch.no_grad()
def predict(net: RegimeNet, x: np.ndarray, batch: int = 512) -> np.ndarray:
    net.eval()
    out = [
        net(torch.as_tensor(np.ascontiguousarray(x[i : i + batch]))).logits.argmax(-1).numpy()
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


class RegimeTrainer:
    """Epochs of minibatch AdamW on :class:`RegimeSamples`; data-parallel over ``dist`` (each worker takes
    its shard of every epoch's permutation, gradients are averaged)."""

    def __init__(
        self,
        net: RegimeNet,
        samples: RegimeSamples,
        dist: Dist | None = None,
        seed: int = 0,
        total_steps: int | None = None,
        fresh: bool = True,
    ) -> None:
        t = net.spec.training
        self.net, self.samples, self.dist = net, samples, dist or Dist()
        self.batch_size = t.batch_size
        self.opt = torch.optim.AdamW(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        # a short run must not spend itself warming up: at most a tenth of its steps
        self.warmup = (
            t.warmup_steps if total_steps is None else min(t.warmup_steps, max(1, total_steps // 10))
        )
        self.lr = t.lr
        self.smoothing, self.vol_w, self.max_norm = (
            t.label_smoothing,
            t.volatility_loss_weight,
            t.max_grad_norm,
        )
        counts = np.bincount(samples.label, minlength=N_REGIMES).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / (counts > 0).sum(), 0.0)
        self.class_weight = torch.as_tensor(w, dtype=torch.float32)
        self.rng = np.random.default_rng(seed)
        self.steps = 0
        self.epochs_done = 0
        # Data-dependent init of the volatility head's bias: softplus(b) = the mean target volatility, so
        # the regression starts at the right scale (~1e-3, not softplus(0) = 0.69) and the classification
        # loss dominates from the first step. A resumed run loads its trained bias over this; a warm-started
        # one (``fresh=False``) keeps the head it was given.
        if fresh:
            self._init_vol_head(net, samples)
        self.dist.broadcast_module(net)

    @staticmethod
    def _init_vol_head(net: RegimeNet, samples: RegimeSamples) -> None:
        with torch.no_grad():
            mean_vol = float(np.exp(samples.log_vol).mean())
            net.vol_head.bias.fill_(float(np.log(np.expm1(max(mean_vol, 1e-6)))))
            net.vol_head.weight.mul_(0.01)

    def epoch(
        self, max_samples: int | None = None, progress: Callable[[int], None] | None = None
    ) -> dict[str, float]:
        """One pass over (at most ``max_samples`` of) the samples; returns mean loss and train accuracy."""
        self.net.train()
        order = self.rng.permutation(len(self.samples))[:max_samples]
        order = order[self.dist.rank :: self.dist.world_size]
        n_batches = max(1, len(order) // self.batch_size)  # equal on every worker (same permutation)
        losses, correct, seen = [], 0, 0
        for b in range(n_batches):
            idx = np.sort(order[b * self.batch_size : (b + 1) * self.batch_size])
            x = torch.as_tensor(np.ascontiguousarray(self.samples.x[idx]))
            y = torch.as_tensor(self.samples.label[idx])
            v = torch.as_tensor(self.samples.log_vol[idx])
            out = self.net(x)
            ce = F.cross_entropy(out.logits, y, weight=self.class_weight, label_smoothing=self.smoothing)
            vol = F.mse_loss(torch.log(out.volatility + 1e-8), v)
            loss = ce + self.vol_w * vol
            for g in self.opt.param_groups:
                g["lr"] = self.lr * min(1.0, (self.steps + 1) / max(1, self.warmup))
            self.opt.zero_grad()
            loss.backward()
            self.dist.all_reduce_grads(list(self.net.parameters()))
            nn.utils.clip_grad_norm_(self.net.parameters(), self.max_norm)
            self.opt.step()
            self.steps += 1
            losses.append(loss.item())
            correct += int((out.logits.argmax(-1) == y).sum())
            seen += len(idx)
            if progress is not None:
                progress(1)
        self.epochs_done += 1
        self.net.eval()
        return {"regime_loss": float(np.mean(losses)), "regime_train_acc": correct / max(seen, 1)}

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
