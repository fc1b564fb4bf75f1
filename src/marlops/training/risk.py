"""The risk agent's training: a double DQN on prioritized replay against the trained team.

The risk agent acts after the team on every step (ε-greedy) and can allow, halve an entry, force an exit
or block an entry. It trains once the team is trained and frozen (the last stage): its exploration —
at first a random veto on every step — would otherwise corrupt the on-policy rollouts the MAPPO agents
learn from, and what it must learn is how to protect *this* team's portfolio. With the team frozen, the
team's actions over a market come from one batched pass (:class:`~marlops.training.team.TrainedTeam`),
so a step costs the environment and one small Q-network call.

Its observation is the 1,875-wide risk input (the three matrices ‖ portfolio ‖ proposal). The replay does
not store it: a transition keeps *where* it happened (market, base bar) and the 15 per-step values
(portfolio ‖ proposal), and the matrices are gathered from the market's window views when a batch is
sampled — ~150 bytes per transition instead of 15 KB, so a long buffer fits in memory.

Its reward is the environment's team reward with a heavier drawdown penalty (``RiskStageConfig``): the
risk agent is the team's drawdown control, judged by how much drawdown it removes per unit of return.

Q-learning estimates the value of each action with noise, and the greedy risk agent acts on the largest
estimate: where every action is worth the same (no entry proposed: allow = modify = block; flat: allow =
force exit) that noise alone would pick an intervention, and a spurious forced exit costs a round trip.
:func:`no_op_noise` measures that noise exactly there — on states where an action is a no-op its true
advantage over ``allow`` is zero, so the spread of its estimated advantage is estimation error — and
:mod:`.risk_calibration` chooses, on markets the agent did not learn from, by how many multiples of it an
intervention must beat ``allow``. The margin lives in the network's output bias, so the exported model,
the engine and the decision server all act on it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from marlops.agents.networks import RiskNet
from marlops.agents.types import PORTFOLIO_FEATURES, RiskAction, TacticalAction
from marlops.env.market_env import MarketData
from marlops.training.dqn import DQNConfig, DQNLearner
from marlops.training.replay import FieldSpec, PrioritizedReplay

RECORD_DIM = len(PORTFOLIO_FEATURES) + len(TacticalAction) + 2  # portfolio ‖ proposal


def proposal(tactical_action: np.ndarray, bias: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The risk agent's view of the team's proposal: tactical one-hot ‖ structure bias ‖ size."""
    one_hot = np.eye(len(TacticalAction), dtype=np.float32)[np.asarray(tactical_action)]
    return np.concatenate(
        [one_hot, np.asarray(bias, np.float32)[:, None], np.asarray(size, np.float32)[:, None]], 1
    )


class MatrixGather:
    """The risk agent's matrix inputs for ``(market, base bar)`` pairs, from the markets' window views."""

    def __init__(self, markets: Sequence[MarketData]) -> None:
        self.markets = list(markets)

    def __call__(self, where: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        w = where.cpu().numpy()
        d0 = self.markets[0]
        out = [np.empty((len(w), *a.shape[1:]), np.float32) for a in (d0.tactical, d0.structure, d0.regime)]
        for m, d in enumerate(self.markets):
            sel = w[:, 0] == m
            if not sel.any():
                continue
            t = w[sel, 1]
            h = np.maximum(d.higher_of[t], 0)
            out[0][sel], out[1][sel], out[2][sel] = d.tactical[t], d.structure[h], d.regime[h]
        return tuple(torch.from_numpy(o) for o in out)  # type: ignore[return-value]


def compact_q_fn(gather: MatrixGather) -> Callable[[nn.Module, tuple[Tensor, ...]], Tensor]:
    """``q_fn`` for :class:`DQNLearner` over compact observations ``(where, records)``."""
    n_pf = len(PORTFOLIO_FEATURES)

    def q(net: nn.Module, obs: tuple[Tensor, ...]) -> Tensor:
        where, records = obs
        tactical, structure, regime = gather(where)
        return net(tactical, structure, regime, records[:, :n_pf], records[:, n_pf:])

    return q


def compact_replay_fields() -> dict[str, FieldSpec]:
    return {
        "where": ((2,), np.int64),
        "records": ((RECORD_DIM,), np.float32),
        "action": ((), np.int64),
        "reward": ((), np.float32),
        "next_where": ((2,), np.int64),
        "next_records": ((RECORD_DIM,), np.float32),
        "done": ((), np.float32),
        "discount": ((), np.float32),
    }


class RiskController:
    """ε-greedy acting on the double DQN, fed with every env step of every environment.

    Transitions ``(s, a, r, s', done)`` are stored one step late (s' is the next observation, which needs
    the team's next proposal). An episode cut by the time limit is stored as done: the environment resets
    inside its step, so the final observation is not kept (a small bias at γ = 0.99 over 576 steps).
    """

    def __init__(
        self,
        net: RiskNet,
        config: DQNConfig,
        markets: Sequence[MarketData],
        seed: int,
        grad_hook: Callable[[list[nn.Parameter]], None] | None = None,
    ) -> None:
        if config.n_step != 1:  # every stored transition is one step, discounted by γ (observe)
            raise ValueError(f"n_step: the risk controller stores one-step transitions; got {config.n_step}")
        self.config = config
        self.learner = DQNLearner(
            net,
            config,
            obs_keys=("where", "records"),
            q_fn=compact_q_fn(MatrixGather(markets)),
            grad_hook=grad_hook,
        )
        self.replay: PrioritizedReplay = config.make_replay(compact_replay_fields(), rng=seed)
        self.rng = np.random.default_rng(seed + 7)
        self.env_steps = 0  # transitions seen (all envs)
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def act(self, where: np.ndarray, records: np.ndarray, explore: bool = True) -> np.ndarray:
        eps = self.config.epsilon(self.env_steps) if explore else 0.0
        return self.learner.act([where, records], eps, self.rng)

    def observe(
        self, where: np.ndarray, records: np.ndarray, action: np.ndarray, reward: np.ndarray, done: np.ndarray
    ) -> None:
        """Record this step; completes and stores the previous step's transitions."""
        if self._prev is not None:
            w, rec, a, r, d = self._prev
            self.replay.add_batch(
                {
                    "where": w,
                    "records": rec,
                    "action": a,
                    "reward": r,
                    "next_where": where,
                    "next_records": records,
                    "done": d.astype(np.float32),
                    "discount": np.full(len(a), self.config.gamma, np.float32),
                }
            )
        self._prev = (where, records, action, reward.astype(np.float32), done)
        self.env_steps += len(action)

    def reset_pending(self) -> None:
        self._prev = None

    def ready(self) -> bool:
        return len(self.replay) >= max(self.config.learning_starts, self.config.batch_size)

    def train(self, n_steps: int) -> dict[str, float]:
        """``n_steps`` gradient steps once ``learning_starts`` transitions are stored (mean metrics)."""
        if not self.ready():
            return {}
        out = [self.learner.train_step(self.replay) for _ in range(n_steps)]
        return {f"risk_{k}": float(np.mean([m[k] for m in out])) for k in ("loss", "q_mean", "td_abs_mean")}


def no_op_mask(records: np.ndarray) -> np.ndarray:
    """(N, 4) bool: the actions that change nothing in each state (their true advantage over allow is 0).

    ``records`` = portfolio ‖ proposal. Without a proposed entry, modify_size and block_entry act as allow;
    without a position, force_exit does (``agents.decision.decide``)."""
    n_pf = len(PORTFOLIO_FEATURES)
    position = records[:, 0]
    tactical = records[:, n_pf : n_pf + len(TacticalAction)].argmax(-1)
    entry = (tactical == TacticalAction.ENTER_LONG) | (tactical == TacticalAction.ENTER_SHORT)
    out = np.zeros((len(records), len(RiskAction)), bool)
    out[:, RiskAction.MODIFY_SIZE] = ~entry
    out[:, RiskAction.BLOCK_ENTRY] = ~entry
    out[:, RiskAction.FORCE_EXIT] = position == 0
    return out


@torch.no_grad()
def no_op_noise(
    learner: DQNLearner, replay: PrioritizedReplay, n: int = 20_000, quantile: float = 0.99, seed: int = 0
) -> float:
    """The ``quantile`` of the estimated advantage over ``allow`` of actions that change nothing (see the
    module docstring): how far above allow noise alone lifts an intervention (0 when nothing to measure)."""
    size = len(replay)
    if size == 0:
        return 0.0
    idx = np.random.default_rng(seed).choice(size, min(n, size), replace=False)
    where, records = replay.data["where"][idx], replay.data["records"][idx]
    q = np.concatenate(
        [
            learner.q_values([where[i : i + 4096], records[i : i + 4096]]).numpy()
            for i in range(0, len(idx), 4096)
        ]
    )
    noise = (q - q[:, [RiskAction.ALLOW]])[no_op_mask(records)]
    return max(float(np.quantile(noise, quantile)), 0.0) if noise.size else 0.0
