"""The risk agent's learner: double DQN on prioritized replay (van Hasselt et al. 2016; Schaul et al. 2016).

Generic over the network: a batch holds the observation under ``obs_keys`` and the next observation
under ``"next_" + key``; ``q_fn(net, obs_tuple) -> Q (B, A)`` turns one into Q-values (default
``net(*obs)``, which is exactly :class:`~marlops.agents.networks.RiskNet` when the five matrices and
records are stored as separate fields; :func:`risk_q_fn` reads one flat 1,875-wide observation instead).

Target for a transition ``(s, a, r, s', done, discount)``::

    y = r + discount · (1 - done) · Q_target(s', argmax_a' Q_online(s', a'))

where ``discount`` is γ^k for a k-step or semi-MDP transition (γ^n_step when the batch has no
``discount`` field). The loss is the Huber loss of ``Q_online(s, a) - y`` weighted by the importance
weights; the TD errors go back to the replay as new priorities.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marlops.agents.specs import AgentSpec, DQNTraining
from marlops.agents.types import PORTFOLIO_FEATURES, PROPOSAL_DIM
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL
from marlops.training.replay import FieldSpec, PrioritizedReplay

QFn = Callable[[nn.Module, tuple[Tensor, ...]], Tensor]
BatchLike = Mapping[str, np.ndarray | Tensor]

# The flat risk observation: tactical ‖ structure ‖ regime (row-major) ‖ portfolio ‖ proposal.
_RISK_PARTS: tuple[tuple[int, ...], ...] = (
    TACTICAL.shape,
    STRUCTURE.shape,
    REGIME.shape,
    (len(PORTFOLIO_FEATURES),),
    (PROPOSAL_DIM,),
)
RISK_OBS_DIM = sum(math.prod(s) for s in _RISK_PARTS)  # 1,875


def split_risk_obs(flat: Tensor) -> tuple[Tensor, ...]:
    """(B, 1875) → the five :meth:`RiskNet.forward` inputs (views, no copy)."""
    if flat.shape[-1] != RISK_OBS_DIM:
        raise ValueError(f"flat risk observation must be {RISK_OBS_DIM} wide, got {flat.shape[-1]}")
    parts = torch.split(flat, [math.prod(s) for s in _RISK_PARTS], dim=-1)
    return tuple(p.reshape(*flat.shape[:-1], *s) for p, s in zip(parts, _RISK_PARTS, strict=True))


def flatten_risk_obs(
    tactical: np.ndarray,
    structure: np.ndarray,
    regime: np.ndarray,
    portfolio: np.ndarray,
    proposal: np.ndarray,
) -> np.ndarray:
    """The inverse of :func:`split_risk_obs` on numpy batches: (B, ...) x5 → (B, 1875) float32."""
    parts = (tactical, structure, regime, portfolio, proposal)
    b = np.shape(tactical)[0]
    return np.concatenate([np.asarray(p, dtype=np.float32).reshape(b, -1) for p in parts], axis=1)


def risk_q_fn(net: nn.Module, obs: tuple[Tensor, ...]) -> Tensor:
    """``q_fn`` for a RiskNet on the flat observation (one field), or on the five inputs as they are."""
    return net(*split_risk_obs(obs[0])) if len(obs) == 1 else net(*obs)


def risk_replay_fields(obs_key: str = "obs") -> dict[str, FieldSpec]:
    """Replay fields for the risk agent with one flat float32 observation (≈15 KB per transition)."""
    return {
        obs_key: ((RISK_OBS_DIM,), np.float32),
        "action": ((), np.int64),
        "reward": ((), np.float32),
        "next_" + obs_key: ((RISK_OBS_DIM,), np.float32),
        "done": ((), np.float32),
        "discount": ((), np.float32),
    }


def _default_q_fn(net: nn.Module, obs: tuple[Tensor, ...]) -> Tensor:
    return net(*obs)


@dataclass(frozen=True, slots=True, kw_only=True)
class DQNConfig:
    """DQN hyperparameters, no defaults: their one source is ``models/risk.yaml``'s ``training``
    (:meth:`from_spec`; ``marlops train`` builds it through ``TrainConfig.risk``, budgets overlaid).

    The learner uses the optimisation, target and PER fields; ``buffer_size``, ``learning_starts``,
    ``train_every`` and the ε schedule are carried for the collection loop that drives it.
    ``target_tau`` (not in the spec: the trainer keeps the hard copy) switches the hard copy every
    ``target_update`` steps to a Polyak update ``θ' ← τθ + (1-τ)θ'`` after every step.
    """

    lr: float
    gamma: float
    n_step: int
    buffer_size: int
    batch_size: int
    learning_starts: int
    train_every: int
    target_update: int
    target_tau: float | None = None
    double_dqn: bool
    huber_delta: float
    max_grad_norm: float
    per_alpha: float
    per_beta_start: float
    per_beta_end: float
    per_beta_steps: int
    per_eps: float
    epsilon_start: float
    epsilon_end: float
    epsilon_decay_steps: int

    def __post_init__(self) -> None:
        if self.target_tau is not None and not 0.0 < self.target_tau <= 1.0:
            raise ValueError(f"target_tau must be in (0, 1], got {self.target_tau}")
        for name in ("lr", "n_step", "batch_size", "target_update", "per_beta_steps", "epsilon_decay_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_spec(cls, spec: AgentSpec | DQNTraining, **overrides: Any) -> DQNConfig:
        """From a risk spec (or its ``training`` section) with ``overrides``; a field the spec adds later
        (e.g. ``target_tau``) is picked up by name."""
        training = spec if isinstance(spec, DQNTraining) else spec.training
        if getattr(training, "objective", None) != "dqn":
            raise ValueError(
                f"spec's training objective is {getattr(training, 'objective', None)!r}, not 'dqn'"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = overrides.keys() - names
        if unknown:
            raise TypeError(f"unknown DQNConfig fields: {sorted(unknown)}")
        values = {n: getattr(training, n) for n in names if hasattr(training, n)}
        return cls(**{**values, **overrides})

    def beta(self, step: int) -> float:
        """Importance-sampling exponent after ``step`` gradient steps (linear anneal, then constant)."""
        frac = min(1.0, step / self.per_beta_steps)
        return (1.0 - frac) * self.per_beta_start + frac * self.per_beta_end  # exact at both ends

    def epsilon(self, env_step: int) -> float:
        """ε-greedy exploration rate after ``env_step`` environment steps (linear anneal)."""
        frac = min(1.0, env_step / self.epsilon_decay_steps)
        return (1.0 - frac) * self.epsilon_start + frac * self.epsilon_end

    def make_replay(
        self, fields: Mapping[str, FieldSpec], rng: np.random.Generator | int | None = None
    ) -> PrioritizedReplay:
        return PrioritizedReplay(self.buffer_size, fields, alpha=self.per_alpha, eps=self.per_eps, rng=rng)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    td_errors: np.ndarray  # (B,) float32, y - Q(s, a): the new priorities' input
    metrics: dict[str, float]


class DQNLearner:
    """Online and target Q-networks, Adam, and the double-DQN update.

    ``net`` becomes the online network (trained in place); the target is a frozen deep copy. Module
    modes are left as given (the risk net has no dropout); the target is kept in eval mode.
    """

    def __init__(
        self,
        net: nn.Module,
        config: DQNConfig,
        obs_keys: Sequence[str] = ("obs",),
        q_fn: QFn | None = None,
        device: torch.device | str | None = None,
        grad_hook: Callable[[list[nn.Parameter]], None] | None = None,
    ) -> None:
        self.config = config
        self.grad_hook = grad_hook  # e.g. the data-parallel all-reduce, between backward and the step
        self.device = torch.device(device) if device is not None else next(net.parameters()).device
        self.online = net.to(self.device)
        self.target = copy.deepcopy(self.online).eval().requires_grad_(False)
        self.obs_keys = tuple(obs_keys)
        self.next_obs_keys = tuple("next_" + k for k in self.obs_keys)
        self.q_fn: QFn = q_fn or _default_q_fn
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=config.lr)
        self.steps = 0  # gradient steps taken

    @property
    def beta(self) -> float:
        return self.config.beta(self.steps)

    # ------------------------------------------------------------------------------------- acting

    @torch.no_grad()
    def q_values(self, obs: Sequence[np.ndarray | Tensor]) -> Tensor:
        """Online Q-values (B, A) for a batch of observations (one array per ``obs_keys`` entry)."""
        return self.q_fn(self.online, tuple(self._tensor(o) for o in obs))

    def act(self, obs: Sequence[np.ndarray | Tensor], epsilon: float, rng: np.random.Generator) -> np.ndarray:
        """ε-greedy actions (B,) int64 for a vectorised environment's batch of observations."""
        q = self.q_values(obs)
        greedy = q.argmax(dim=1).cpu().numpy()
        b, n_actions = q.shape
        explore = rng.random(b) < epsilon
        return np.where(explore, rng.integers(0, n_actions, size=b), greedy).astype(np.int64)

    # ----------------------------------------------------------------------------------- learning

    @torch.no_grad()
    def td_targets(self, batch: BatchLike) -> Tensor:
        """``y = r + discount·(1-done)·Q_target(s', a*)``, ``a*`` from the online net (double DQN)
        or from the target net itself (vanilla DQN); shape (B,)."""
        next_obs = tuple(self._tensor(batch[k]) for k in self.next_obs_keys)
        q_next_target = self.q_fn(self.target, next_obs)
        if self.config.double_dqn:
            # Decoupling selection from evaluation removes vanilla DQN's max-operator overestimation.
            best = self.q_fn(self.online, next_obs).argmax(dim=1, keepdim=True)
        else:
            best = q_next_target.argmax(dim=1, keepdim=True)
        next_v = q_next_target.gather(1, best).squeeze(1)
        reward = self._tensor(batch["reward"]).float()
        if "discount" in batch:
            discount = self._tensor(batch["discount"]).float()
        else:
            discount = torch.full_like(reward, self.config.gamma**self.config.n_step)
        not_done = 1.0 - self._tensor(batch["done"]).float() if "done" in batch else 1.0
        return reward + discount * not_done * next_v

    def update(self, batch: BatchLike, weights: np.ndarray | Tensor | None = None) -> UpdateResult:
        """One gradient step on ``batch`` with importance ``weights`` (uniform when None)."""
        beta = self.beta  # the β this batch was (presumably) sampled with, before the step counter moves
        y = self.td_targets(batch)
        obs = tuple(self._tensor(batch[k]) for k in self.obs_keys)
        actions = self._tensor(batch["action"]).long()
        q_all = self.q_fn(self.online, obs)
        q_sa = q_all.gather(1, actions[:, None]).squeeze(1)
        w = torch.ones_like(q_sa) if weights is None else self._tensor(weights).float()
        loss = (w * F.huber_loss(q_sa, y, reduction="none", delta=self.config.huber_delta)).mean()

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_hook is not None:
            self.grad_hook(list(self.online.parameters()))
        grad_norm = nn.utils.clip_grad_norm_(self.online.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.steps += 1
        self._update_target()

        td = (y - q_sa).detach()
        metrics = {
            "loss": float(loss.detach()),
            "td_abs_mean": float(td.abs().mean()),
            "q_mean": float(q_sa.detach().mean()),
            "q_max_mean": float(q_all.detach().max(dim=1).values.mean()),
            "target_mean": float(y.mean()),
            "grad_norm": float(grad_norm),
            "beta": beta,
            "step": float(self.steps),
        }
        return UpdateResult(td.cpu().numpy().astype(np.float32), metrics)

    def train_step(self, replay: PrioritizedReplay, batch_size: int | None = None) -> dict[str, float]:
        """Sample at the current β, update, write the new priorities back; returns the metrics."""
        batch, indices, weights = replay.sample(batch_size or self.config.batch_size, self.beta)
        result = self.update(batch, weights)
        replay.update_priorities(indices, result.td_errors)
        return result.metrics

    def sync_target(self) -> None:
        """Hard copy of the online weights into the target network."""
        self.target.load_state_dict(self.online.state_dict())

    def _update_target(self) -> None:
        tau = self.config.target_tau
        if tau is None:
            if self.steps % self.config.target_update == 0:
                self.sync_target()
            return
        with torch.no_grad():
            for tp, op in zip(self.target.parameters(), self.online.parameters(), strict=True):
                tp.lerp_(op, tau)
            for tb, ob in zip(self.target.buffers(), self.online.buffers(), strict=True):
                tb.copy_(ob)  # running statistics, if any, are copied, not averaged

    # -------------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        # Deep copy: Optimizer.load_state_dict keeps the given moment tensors, which an in-memory state
        # would then share with (and be mutated by) the learner it came from.
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.steps = int(state["steps"])

    def _tensor(self, x: np.ndarray | Tensor) -> Tensor:
        return torch.as_tensor(x, device=self.device)
