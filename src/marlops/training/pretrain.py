"""Pretraining of the structure and tactical agents on what the market reveals (supervised, no exploration).

On-policy RL from scratch needs millions of decisions before a policy stops being noise, and every decision
of these networks costs ~0.1 GFLOP on a CPU. Both agents' inputs are market data only, so their first job
can be learned from the market's own record instead:

- **structure** (every higher-bar close) is trained as a full-information contextual bandit: for every
  sample the utility of every bias level is known from the forward return (:func:`.targets.level_utility`),
  and the loss is the negative expected utility under the policy minus an entropy bonus. Its minimizer puts
  the policy's mass on the level of highest *expected* utility given what the agent sees, so no action
  sampling noise enters the gradient. The size / confidence heads follow the policy (conviction
  ``Σ π |b|`` and ``max π``) as in the team stage.
- **tactical** (every base bar) is trained to carry out structure's decision: enter in the direction of
  structure's most likely level, exit when that level is flat (the executor). It reads structure's
  decision only through the hub's message, so this also teaches it to read the message. The team stage
  then fine-tunes the timing with MAPPO.

Both trainers run data-parallel over :class:`~marlops.training.distributed.Dist` (each worker takes its
shard of every epoch's permutation; gradients are averaged) and checkpoint through ``state_dict``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marlops.agents.networks import StructureNet, TacticalNet
from marlops.agents.types import MESSAGE_DIM, STRUCTURE_BIAS_LEVELS, TacticalAction
from marlops.env.market_env import MarketData
from marlops.training.distributed import Dist
from marlops.training.encodings import structure_outputs
from marlops.training.supervised import EpochCheckpoint, balanced_class_weights
from marlops.training.targets import base_decision_bars, forward_z, level_utility, slow_decision_bars

_LEVELS = torch.tensor(STRUCTURE_BIAS_LEVELS)


@dataclass(frozen=True, kw_only=True)
class PretrainConfig:
    """One agent's pretraining: epochs of minibatch AdamW over (at most ``max_samples`` of) its samples.
    The values: the agent's models/<agent>.yaml ``training`` (marlops.training.config builds it)."""

    epochs: int
    max_samples: int | None  # per epoch
    batch_size: int
    lr: float
    weight_decay: float
    max_grad_norm: float


@dataclass(frozen=True, kw_only=True)
class StructurePretrainConfig(PretrainConfig):
    """Structure's pretraining: its utility's horizon and costs, and the policy's entropy bonus."""

    horizon_bars: int  # forward return horizon, base bars (3 h on 5-minute bars)
    cost: float  # utility cost per unit |bias| (in units of the horizon's σ)
    risk_aversion: float  # ½·λ·b² utility penalty
    entropy_coef: float


def _t(x: np.ndarray) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)


class _EpochTrainer(EpochCheckpoint, ABC):
    """Minibatch epochs of one AdamW over ``net`` and ``n`` samples; ``step(idx)`` returns the loss and
    metrics of one minibatch (indices sorted, so gathers from the markets' window views stay sequential)."""

    def __init__(self, net: nn.Module, n: int, cfg: PretrainConfig, dist: Dist | None, seed: int) -> None:
        self.net, self.params, self.n, self.cfg = net, list(net.parameters()), n, cfg
        self.dist = dist or Dist()
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.rng = np.random.default_rng(seed)
        self.steps = 0
        self.epochs_done = 0
        self.dist.broadcast_module(net)

    def batches_per_epoch(self) -> int:
        n = min(self.n, self.cfg.max_samples or self.n)
        return max(1, n // self.dist.world_size // self.cfg.batch_size)

    @abstractmethod
    def step(self, idx: np.ndarray) -> tuple[Tensor, dict[str, float]]: ...

    def train_mode(self, on: bool) -> None:
        self.net.train(on)

    def epoch(self, progress: Callable[[int], None] | None = None) -> dict[str, float]:
        self.train_mode(True)
        order = self.rng.permutation(self.n)[: self.cfg.max_samples]
        order = order[self.dist.rank :: self.dist.world_size]
        b = self.cfg.batch_size
        sums: dict[str, float] = {}
        n_batches = self.batches_per_epoch()
        for k in range(n_batches):
            loss, metrics = self.step(np.sort(order[k * b : (k + 1) * b]))
            self.opt.zero_grad()
            loss.backward()
            self.dist.all_reduce_grads(self.params)
            nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
            self.opt.step()
            self.steps += 1
            for key, v in metrics.items():
                sums[key] = sums.get(key, 0.0) + v
            if progress is not None:
                progress(1)
        self.epochs_done += 1
        self.train_mode(False)
        return {key: v / n_batches for key, v in sums.items()}


# ------------------------------------------------------------------------------------------------ structure


@dataclass
class StructureSamples:
    """Structure's decisions over the training markets: its matrix, the regime message it read, and the
    utility of every bias level (from the forward return)."""

    x: np.ndarray  # (N, 48, 8)
    regime_msg: np.ndarray  # (N, 64)
    utility: np.ndarray  # (N, 5)

    def __len__(self) -> int:
        return len(self.utility)


def structure_samples(
    markets: Sequence[tuple[MarketData, np.ndarray]], cfg: StructurePretrainConfig
) -> StructureSamples:
    """``markets``: (data, the regime agent's message per higher bar (H, 64)) pairs."""
    xs, msgs, us = [], [], []
    for data, regime_message in markets:
        at = slow_decision_bars(data, cfg.horizon_bars)
        h = data.higher_of[at]
        xs.append(data.structure[h])
        msgs.append(regime_message[h])
        us.append(level_utility(forward_z(data, at, cfg.horizon_bars), cfg.cost, cfg.risk_aversion))
    if not xs or sum(len(u) for u in us) == 0:
        raise ValueError("data: no higher-bar close after the warm-up leaves room for the forward horizon")
    return StructureSamples(np.concatenate(xs), np.concatenate(msgs), np.concatenate(us))


class StructurePretrainer(_EpochTrainer):
    """Expected utility of the bias levels (see the module docstring) + the size/confidence heads."""

    def __init__(
        self,
        net: StructureNet,
        samples: StructureSamples,
        cfg: StructurePretrainConfig,
        dist: Dist | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(net, len(samples), cfg, dist, seed)
        self.cfg: StructurePretrainConfig = cfg
        self.samples = samples

    def step(self, idx: np.ndarray) -> tuple[Tensor, dict[str, float]]:
        s = self.samples
        n = len(idx)
        out = self.net(
            _t(s.x[idx]), _t(s.regime_msg[idx]).reshape(n, 1, MESSAGE_DIM), torch.ones(n, 1, dtype=torch.bool)
        )
        logp = torch.log_softmax(out.logits, -1)
        pi = logp.exp()
        utility = (pi * _t(s.utility[idx])).sum(-1).mean()
        entropy = -(pi * logp).sum(-1).mean()
        probs = pi.detach()
        aux = F.mse_loss(out.size, probs @ _LEVELS.abs()) + F.mse_loss(out.confidence, probs.max(-1).values)
        loss = -utility - self.cfg.entropy_coef * entropy + aux
        flat = float((probs.argmax(-1) == STRUCTURE_BIAS_LEVELS.index(0.0)).float().mean())
        return loss, {
            "structure_utility": utility.item(),
            "structure_entropy": entropy.item(),
            "structure_aux": aux.item(),
            "structure_flat_share": flat,
        }


# ------------------------------------------------------------------------------------------------- tactical


def executor_actions(structure_probs: np.ndarray) -> np.ndarray:
    """Tactical's target per higher bar: enter on the side of structure's likeliest level, exit when flat."""
    level = np.asarray(STRUCTURE_BIAS_LEVELS)[np.asarray(structure_probs).argmax(-1)]
    return np.where(
        level > 0,
        int(TacticalAction.ENTER_LONG),
        np.where(level < 0, int(TacticalAction.ENTER_SHORT), int(TacticalAction.EXIT_POSITION)),
    ).astype(np.int64)


@dataclass
class TacticalSamples:
    """Tactical's decisions: which market and bar (its matrix is gathered per batch: 60×7 floats for every
    base bar of a year would be ~170 MB), the two messages it read and its target action."""

    market: np.ndarray  # (N,) index into ``datas``
    t: np.ndarray  # (N,) base bar
    msgs: np.ndarray  # (N, 2, 64): regime, structure
    target: np.ndarray  # (N,) TacticalAction
    datas: list[MarketData]

    def __len__(self) -> int:
        return len(self.t)

    def matrices(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *self.datas[0].tactical.shape[1:]), np.float32)
        for m, d in enumerate(self.datas):
            sel = self.market[idx] == m
            if sel.any():
                out[sel] = d.tactical[self.t[idx][sel]]
        return out


def tactical_samples(
    markets: Sequence[tuple[MarketData, np.ndarray, np.ndarray]], structure: StructureNet
) -> TacticalSamples:
    """Every base bar after the warm-up, with the messages of its latest higher close and the executor's
    action for structure's decision there. ``markets``: (data, the regime agent's message per higher bar,
    structure's encoding per higher bar) — structure is frozen and its head runs on the encodings."""
    mk, ts, msgs, targets = [], [], [], []
    for m, (data, regime_message, structure_h) in enumerate(markets):
        st = structure_outputs(structure, structure_h, regime_message)
        t = base_decision_bars(data)
        h = np.maximum(data.higher_of[t], 0)
        mk.append(np.full(len(t), m, np.int64))
        ts.append(t)
        msgs.append(np.stack([regime_message[h], st.message[h]], 1))
        targets.append(executor_actions(st.probs)[h])
    return TacticalSamples(
        np.concatenate(mk),
        np.concatenate(ts),
        np.concatenate(msgs),
        np.concatenate(targets),
        [d for d, *_ in markets],
    )


class TacticalPretrainer(_EpochTrainer):
    """Cross-entropy to the executor's action (see :func:`executor_actions`)."""

    def __init__(
        self,
        net: TacticalNet,
        samples: TacticalSamples,
        cfg: PretrainConfig,
        dist: Dist | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(net, len(samples), cfg, dist, seed)
        self.samples = samples
        # balanced: entries are rarer than exits when structure is mostly flat, and missing one costs a trade
        self.class_weight = balanced_class_weights(samples.target, len(TacticalAction))

    def step(self, idx: np.ndarray) -> tuple[Tensor, dict[str, float]]:
        s = self.samples
        y = torch.as_tensor(s.target[idx])
        out = self.net(_t(s.matrices(idx)), _t(s.msgs[idx]), torch.ones(len(idx), 2, dtype=torch.bool))
        loss = F.cross_entropy(out.logits, y, weight=self.class_weight)
        acc = float((out.logits.argmax(-1) == y).float().mean())
        return loss, {"tactical_loss": loss.item(), "tactical_acc": acc}
