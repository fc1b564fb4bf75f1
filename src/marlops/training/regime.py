"""The regime agent's supervised auxiliary objective: classify the true regime of synthetic markets.

Samples are the regime matrices (96×11) at every higher-bar close after the warm-up; the target is the
true regime of the base bar that closes it (labels exist for synthetic data only) and the realized
volatility of the next 48 base bars, scaled to one higher bar (``σ_48 × sqrt(6)``) — the volatility head
predicts forward, from the past only (inputs never see past the close, targets may).

Loss: class-weighted cross-entropy with label smoothing (weights = inverse class frequency in the
training set, because the goal is *balanced* accuracy and the stationary regime mix is uneven) plus
``volatility_loss_weight`` × MSE of log volatilities. On the reference synthetic market a teacher is known:
the ceiling filter (:mod:`marlops.market.regime_filter`), which knows the generator's laws; its posterior
(reweighted for balanced accuracy) is a soft target carrying far more per sample than one noisy label, and
``distill`` blends it with the hard labels (knowledge distillation; docs/training.md has the figures).
AdamW, linear warm-up, gradient clipping — the
spec's ``training`` section (models/regime.yaml) gives every value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marlops.agents.networks import RegimeNet
from marlops.env.market_env import SYNTHETIC_VOLUME_UNITS, MarketData
from marlops.market.regime_filter import filter_regimes
from marlops.market.synthetic import SyntheticMarketConfig
from marlops.training.distributed import Dist
from marlops.training.supervised import EpochCheckpoint, balanced_class_weights

N_REGIMES = 4
_FORWARD_BARS = 48
_BASE_PER_HIGHER = 6


@dataclass
class RegimeSamples:
    x: np.ndarray  # (N, 96, 11) float32 view rows
    label: np.ndarray  # (N,) int64
    log_vol: np.ndarray  # (N,) float32
    teacher: np.ndarray | None = None  # (N, 4) the ceiling filter's balanced posterior, where it is known

    def __len__(self) -> int:
        return len(self.label)


def concat_samples(parts: list[RegimeSamples]) -> RegimeSamples:
    teachers = [p.teacher for p in parts]
    return RegimeSamples(
        np.concatenate([p.x for p in parts]),
        np.concatenate([p.label for p in parts]),
        np.concatenate([p.log_vol for p in parts]),
        None if any(t is None for t in teachers) else np.concatenate(teachers),  # type: ignore[arg-type]
    )


def teacher_targets(data: MarketData, closes: np.ndarray, config: SyntheticMarketConfig) -> np.ndarray:
    """The ceiling filter's posterior at ``closes`` (it knows the generator's laws), reweighted by the inverse
    regime prior and renormalized: the soft target whose argmax is the *balanced*-accuracy decision, as the
    class-weighted hard loss aims for. ``data``: a market of ``config`` (volume in instrument units)."""
    post = filter_regimes(data.close, data.end_ns, config, volume=data.volume / SYNTHETIC_VOLUME_UNITS)
    q = post.at_closes(closes) / config.stationary_fractions()
    return (q / q.sum(-1, keepdims=True)).astype(np.float32)


def regime_samples(data: MarketData, teacher: SyntheticMarketConfig | None = None) -> RegimeSamples:
    """Every higher-bar close after the warm-up that has a label and a forward volatility window; with
    ``teacher`` (the market's generator config) also the ceiling filter's soft targets."""
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
        teacher=None if teacher is None else teacher_targets(data, closes, teacher),
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


class RegimeTrainer(EpochCheckpoint):
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
        distill: float = 0.0,
        hp: Any = None,
    ) -> None:
        # the run's hyperparameters (TrainConfig.regime: models/regime.yaml with the budget); by default the
        # network's own spec's
        t = net.spec.training if hp is None else hp
        self.net, self.samples, self.dist = net, samples, dist or Dist()
        self.batch_size = t.batch_size
        self.opt = torch.optim.AdamW(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        # a short run must not spend itself warming up: at most a tenth of its steps
        self.total_steps = total_steps  # known: cosine decay to 10 % of the peak after the warm-up
        self.warmup = (
            t.warmup_steps if total_steps is None else min(t.warmup_steps, max(1, total_steps // 10))
        )
        self.lr = t.lr
        self.smoothing, self.vol_w, self.max_norm = (
            t.label_smoothing,
            t.volatility_loss_weight,
            t.max_grad_norm,
        )
        self.class_weight = balanced_class_weights(samples.label, N_REGIMES)
        # weight of the teacher's soft targets against the hard labels (0 without a teacher)
        self.distill = distill if samples.teacher is not None else 0.0
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
            if self.distill > 0:
                q = torch.as_tensor(self.samples.teacher[idx])  # type: ignore[index]
                soft = -(q * torch.log_softmax(out.logits, -1)).sum(-1).mean()
                ce = (1.0 - self.distill) * ce + self.distill * soft
            vol = F.mse_loss(torch.log(out.volatility + 1e-8), v)
            loss = ce + self.vol_w * vol
            for g in self.opt.param_groups:
                g["lr"] = self.lr * self.lr_factor(self.steps)
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

    def lr_factor(self, step: int) -> float:
        """Linear warm-up, then (with a known length) cosine decay to 10 % of the peak."""
        if step < self.warmup:
            return (step + 1) / max(1, self.warmup)
        if not self.total_steps:
            return 1.0
        frac = min(1.0, (step - self.warmup) / max(1, self.total_steps - self.warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * frac))
