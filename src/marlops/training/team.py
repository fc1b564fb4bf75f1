"""The trading team as the trainers see it: actor wrappers, the centralized critic, the risk controller and
the MAPPO view of the market environment; and the trained team as a policy for evaluation.

Observations per agent (flat float32 rows, split back into network inputs by the actor wrappers):

- structure: structure matrix (48×8) ‖ regime message (64) ‖ regime-present flag;
- tactical: tactical matrix (60×7) ‖ regime message ‖ structure message ‖ two present flags.

Messages are the senders' live outputs at the last higher-bar close, computed with the current weights
and then treated as observations (no gradient flows from a consumer into its sender during training;
the networks support it, but detached messages keep each agent's PPO update its own).

The regime agent is not a PPO actor: its outputs do not move the portfolio directly, so its learning
signal is the supervised auxiliary loss on the true labels (:mod:`marlops.training.regime`); in the team
phase it is frozen. Structure's actor picks a bias level (5 actions); its size head is trained by an
auxiliary regression onto the policy's expected conviction ``Σ_k π_k |b_k|`` and its confidence head onto
``max_k π_k``, so the size the environment applies (and serving reads) is a deterministic function of
the same state. The risk agent acts every step after the team, on the team's proposal, ε-greedy from a
double DQN trained on the same rollouts (:class:`RiskController`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical

from marlops.agents.networks import RegimeNet, RiskNet, StructureNet, StructureOut, TacticalNet
from marlops.agents.types import MESSAGE_DIM, STRUCTURE_BIAS_LEVELS, RiskAction, TacticalAction
from marlops.env.market_env import MarketData, VecMarketEnv
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL
from marlops.training.dqn import DQNConfig, DQNLearner, flatten_risk_obs, risk_q_fn, risk_replay_fields
from marlops.training.mappo import VecObs, VecStep
from marlops.training.replay import PrioritizedReplay

STRUCTURE_OBS_DIM = math.prod(STRUCTURE.shape) + MESSAGE_DIM + 1
TACTICAL_OBS_DIM = math.prod(TACTICAL.shape) + 2 * MESSAGE_DIM + 2
# critic state: portfolio (8) ‖ regime probs (4) ‖ held bias, size (2) ‖ newest rows of the three
# matrices (7 + 8 + 11) ‖ episode progress (1)
STATE_DIM = 8 + 4 + 2 + TACTICAL.shape[1] + STRUCTURE.shape[1] + REGIME.shape[1] + 1
_LEVELS = torch.tensor(STRUCTURE_BIAS_LEVELS)
_ABS_LEVELS = _LEVELS.abs()


def _t(x: np.ndarray) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)


class StructureActor(nn.Module):
    """MAPPO's view of the structure agent: ``dist(obs)`` over bias levels, plus the size/confidence
    auxiliary loss."""

    def __init__(self, net: StructureNet) -> None:
        super().__init__()
        self.net = net

    def _forward(self, obs: Tensor) -> StructureOut:
        n = math.prod(STRUCTURE.shape)
        x = obs[:, :n].reshape(-1, *STRUCTURE.shape)
        msgs = obs[:, n : n + MESSAGE_DIM].reshape(-1, 1, MESSAGE_DIM)
        mask = obs[:, n + MESSAGE_DIM :] > 0.5
        return self.net(x, msgs, mask)

    def dist(self, obs: Tensor) -> Categorical:
        return Categorical(logits=self._forward(obs).logits)

    def aux_loss(self, obs: Tensor) -> Tensor:
        out = self._forward(obs)
        probs = torch.softmax(out.logits, dim=-1).detach()
        return F.mse_loss(out.size, probs @ _ABS_LEVELS) + F.mse_loss(out.confidence, probs.max(-1).values)


class TacticalActor(nn.Module):
    def __init__(self, net: TacticalNet) -> None:
        super().__init__()
        self.net = net

    def dist(self, obs: Tensor) -> Categorical:
        n = math.prod(TACTICAL.shape)
        x = obs[:, :n].reshape(-1, *TACTICAL.shape)
        msgs = obs[:, n : n + 2 * MESSAGE_DIM].reshape(-1, 2, MESSAGE_DIM)
        mask = obs[:, n + 2 * MESSAGE_DIM :] > 0.5
        return Categorical(logits=self.net(x, msgs, mask).logits)


class TeamCritic(nn.Module):
    """The centralized critic: global state → one normalized value per PPO agent (structure, tactical)."""

    def __init__(self, hidden: int = 256, n_agents: int = 2) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(STATE_DIM, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, n_agents),
        )

    def value(self, state: Tensor) -> Tensor:
        return self.mlp(state)


class RiskController:
    """The risk agent during team training: ε-greedy on a double DQN, fed with every env step.

    Transitions ``(s, a, r, s', done)`` are stored one step late (s' is the next risk observation, which
    needs the team's next proposal). An episode cut by the time limit is stored as done: the env resets
    inside its step, so the final observation is not kept (a small bias at γ = 0.99 over 576 steps).
    """

    def __init__(
        self,
        net: RiskNet,
        config: DQNConfig,
        seed: int,
        grad_hook: Callable[[list[nn.Parameter]], None] | None = None,
    ) -> None:
        self.config = config
        self.learner = DQNLearner(net, config, obs_keys=("obs",), q_fn=risk_q_fn, grad_hook=grad_hook)
        self.replay: PrioritizedReplay = config.make_replay(risk_replay_fields(), rng=seed)
        self.rng = np.random.default_rng(seed + 7)
        self.env_steps = 0  # transitions seen (all envs)
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def act(self, risk_obs: np.ndarray, explore: bool = True) -> np.ndarray:
        eps = self.config.epsilon(self.env_steps) if explore else 0.0
        return self.learner.act([risk_obs], eps, self.rng)

    def observe(self, risk_obs: np.ndarray, action: np.ndarray, reward: np.ndarray, done: np.ndarray) -> None:
        """Record this step; completes and stores the previous step's transitions."""
        if self._prev is not None:
            o, a, r, d = self._prev
            self.replay.add_batch(
                {
                    "obs": o,
                    "action": a,
                    "reward": r,
                    "next_obs": risk_obs,
                    "done": d.astype(np.float32),
                    "discount": np.full(len(a), self.config.gamma, np.float32),
                }
            )
        self._prev = (risk_obs, action, reward.astype(np.float32), done)
        self.env_steps += len(action)

    def reset_pending(self) -> None:
        self._prev = None

    def train(self, n_steps: int) -> dict[str, float]:
        """``n_steps`` gradient steps once ``learning_starts`` transitions are stored (mean metrics)."""
        if len(self.replay) < max(self.config.learning_starts, self.config.batch_size):
            return {}
        out = [self.learner.train_step(self.replay) for _ in range(n_steps)]
        return {f"risk_{k}": float(np.mean([m[k] for m in out])) for k in ("loss", "q_mean", "td_abs_mean")}


def proposal(tactical_action: np.ndarray, bias: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The risk agent's view of the team's proposal: tactical one-hot ‖ structure bias ‖ size."""
    one_hot = np.eye(len(TacticalAction), dtype=np.float32)[np.asarray(tactical_action)]
    return np.concatenate(
        [one_hot, np.asarray(bias, np.float32)[:, None], np.asarray(size, np.float32)[:, None]], 1
    )


@dataclass
class SlowContext:
    """What the slow agents said at their last decision, per env (the hub's context memory, batched)."""

    regime_msg: np.ndarray  # (n, 64)
    regime_probs: np.ndarray  # (n, 4)
    structure_msg: np.ndarray  # (n, 64)
    structure_probs: np.ndarray  # (n, 5) over the bias levels
    size: np.ndarray  # (n,) structure's size head at its last decision
    present: np.ndarray  # (n,) bool: the slow agents have spoken this episode

    @classmethod
    def empty(cls, n: int) -> SlowContext:
        return cls(
            np.zeros((n, MESSAGE_DIM), np.float32),
            np.full((n, 4), 0.25, np.float32),
            np.zeros((n, MESSAGE_DIM), np.float32),
            np.full((n, len(STRUCTURE_BIAS_LEVELS)), 1.0 / len(STRUCTURE_BIAS_LEVELS), np.float32),
            np.zeros(n, np.float32),
            np.zeros(n, bool),
        )


class TeamModels:
    """The four networks and the structure-side forward passes the environment view needs."""

    def __init__(
        self, regime: RegimeNet, structure: StructureNet, tactical: TacticalNet, risk: RiskNet
    ) -> None:
        self.regime, self.structure, self.tactical, self.risk = regime, structure, tactical, risk
        self.structure_actor = StructureActor(structure)
        self.tactical_actor = TacticalActor(tactical)
        for net in (regime, structure, tactical, risk):
            net.eval()  # no dropout in RL: rollout and update log-probs must agree

    @torch.no_grad()
    def refresh(self, ctx: SlowContext, rows: np.ndarray, obs: dict[str, np.ndarray]) -> None:
        """Run regime then structure on ``rows`` (a higher bar closed there, or the episode began)."""
        if len(rows) == 0:
            return
        reg = self.regime(_t(obs["regime"][rows]))
        ctx.regime_msg[rows] = reg.message.numpy()
        ctx.regime_probs[rows] = torch.softmax(reg.logits, -1).numpy()
        msgs = reg.message[:, None, :]
        mask = torch.ones(len(rows), 1, dtype=torch.bool)
        st = self.structure(_t(obs["structure"][rows]), msgs, mask)
        ctx.structure_msg[rows] = st.message.numpy()
        ctx.structure_probs[rows] = torch.softmax(st.logits, -1).numpy()
        ctx.size[rows] = st.size.numpy()
        ctx.present[rows] = True

    def agent_obs(self, ctx: SlowContext, obs: dict[str, np.ndarray]) -> list[np.ndarray]:
        n = len(ctx.present)
        p = ctx.present.astype(np.float32)[:, None]
        s_obs = np.concatenate([obs["structure"].reshape(n, -1), ctx.regime_msg, p], 1)
        t_obs = np.concatenate([obs["tactical"].reshape(n, -1), ctx.regime_msg, ctx.structure_msg, p, p], 1)
        return [s_obs.astype(np.float32), t_obs.astype(np.float32)]


def team_state(env: VecMarketEnv, ctx: SlowContext, obs: dict[str, np.ndarray]) -> np.ndarray:
    progress = 1.0 - (env.end - env.t) / env.cfg.episode_bars
    return np.concatenate(
        [
            obs["portfolio"],
            ctx.regime_probs,
            env.bias[:, None],
            env.size[:, None],
            obs["tactical"][:, -1],
            obs["structure"][:, -1],
            obs["regime"][:, -1],
            progress[:, None],
        ],
        1,
    ).astype(np.float32)


class TeamVecEnv:
    """The market environment as MAPPO's :class:`~marlops.training.mappo.VecEnv`: agents structure (0) and
    tactical (1); the risk agent and the frozen regime agent act inside :meth:`step`."""

    n_agents = 2

    def __init__(
        self, env: VecMarketEnv, models: TeamModels, risk: RiskController, use_risk: bool = True
    ) -> None:
        self.env, self.models, self.risk = env, models, risk
        self.n_envs = env.n
        self.use_risk = use_risk
        self.ctx = SlowContext.empty(env.n)
        self._obs: dict[str, np.ndarray] = {}
        self._fresh = np.ones(env.n, bool)  # an episode starts at the next step

    def _view(self, obs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        slow = np.asarray(obs["slow_step"], bool) | self._fresh
        self.models.refresh(self.ctx, np.flatnonzero(slow), obs)
        self._obs = obs
        acts = np.stack([slow, np.ones(self.n_envs, bool)], 1)
        return self.models.agent_obs(self.ctx, obs), team_state(self.env, self.ctx, obs), acts

    def reset(self, seed: int) -> VecObs:
        self.env.rng = np.random.default_rng(seed)
        obs = self.env.reset()
        self.ctx = SlowContext.empty(self.n_envs)
        self._fresh = np.ones(self.n_envs, bool)
        self.risk.reset_pending()
        o, s, a = self._view(obs)
        return VecObs(o, s, a)

    def step(self, actions: np.ndarray) -> VecStep:
        obs, env = self._obs, self.env
        slow = np.asarray(obs["slow_step"], bool) | self._fresh
        level = np.asarray(STRUCTURE_BIAS_LEVELS, np.float32)[actions[:, 0]]
        bias = np.where(slow, level, env.bias)
        size = np.where(slow, self.ctx.size, env.size)
        risk_obs = flatten_risk_obs(
            obs["tactical"],
            obs["structure"],
            obs["regime"],
            obs["portfolio"],
            proposal(actions[:, 1], bias, size),
        )
        if self.use_risk:
            risk_a = self.risk.act(risk_obs)
        else:
            risk_a = np.full(self.n_envs, int(RiskAction.ALLOW))
        nxt, reward, done, _ = env.step(
            {
                "structure": actions[:, 0],
                "size": self.ctx.size,
                "tactical": actions[:, 1],
                "risk": risk_a,
                "structure_now": self._fresh,
            }
        )
        if self.use_risk:
            self.risk.observe(risk_obs, risk_a, reward, done)
        self._fresh = done.copy()
        self.ctx.present[done] = False
        o, s, a = self._view(nxt)
        rewards = np.repeat(reward[:, None], 2, axis=1)
        # Episodes end by their time limit, and the critic's state carries the episode's progress, so the
        # end is a Markov terminal state: no bootstrap (and no need for the pre-reset final state).
        return VecStep(o, s, rewards, done, np.zeros(self.n_envs, bool), s, a)


@dataclass
class MarketOutputs:
    """The market-only outputs of regime, structure and tactical over one history, in batch: per higher
    bar h the slow agents' outputs (what the context memory holds after bar h closed) and per base bar t
    tactical's logits with the messages of bar ``higher_of[t]`` — exactly what the step-by-step path
    computes, since none of them reads the portfolio."""

    data_id: int
    regime_probs: np.ndarray  # (H, 4)
    structure_probs: np.ndarray  # (H, 5)
    size: np.ndarray  # (H,)
    tactical_logits: np.ndarray  # (T, 5); rows before the warm-up are zero


@torch.no_grad()
def market_outputs(models: TeamModels, data: MarketData, batch: int = 256) -> MarketOutputs:
    first = int(max(data.warm_from, 0))
    hs = np.unique(data.higher_of[first:])
    hs = hs[hs >= 0]
    n_h = len(data.regime)
    reg_p = np.full((n_h, 4), 0.25, np.float32)
    msg_r = np.zeros((n_h, MESSAGE_DIM), np.float32)
    st_p = np.full((n_h, len(STRUCTURE_BIAS_LEVELS)), 1.0 / len(STRUCTURE_BIAS_LEVELS), np.float32)
    msg_s = np.zeros((n_h, MESSAGE_DIM), np.float32)
    size = np.zeros(n_h, np.float32)
    for i in range(0, len(hs), batch):
        h = hs[i : i + batch]
        reg = models.regime(_t(data.regime[h]))
        reg_p[h], msg_r[h] = torch.softmax(reg.logits, -1).numpy(), reg.message.numpy()
        st = models.structure(
            _t(data.structure[h]), reg.message[:, None, :], torch.ones(len(h), 1, dtype=torch.bool)
        )
        st_p[h], msg_s[h], size[h] = torch.softmax(st.logits, -1).numpy(), st.message.numpy(), st.size.numpy()
    logits = np.zeros((len(data), 5), np.float32)
    ts = np.arange(first, len(data))
    for i in range(0, len(ts), batch):
        t = ts[i : i + batch]
        h = np.maximum(data.higher_of[t], 0)
        msgs = torch.as_tensor(np.stack([msg_r[h], msg_s[h]], 1))
        out = models.tactical(_t(data.tactical[t]), msgs, torch.ones(len(t), 2, dtype=torch.bool))
        logits[t] = out.logits.numpy()
    return MarketOutputs(id(data), reg_p, st_p, size, logits)


class TrainedTeam:
    """The trained agents as an evaluation policy (:class:`marlops.env.policy.TeamPolicy`), acting as
    serving does: regime → structure at higher-bar closes (bias = the most likely level, size from its
    head), tactical's most likely action, the risk agent's greedy Q-action
    (or always ``allow`` in the no-risk ablation)."""

    def __init__(self, models: TeamModels, name: str = "team", use_risk: bool = True) -> None:
        self.models, self.name, self.use_risk = models, name, use_risk
        self.reset(1)

    def without_risk(self) -> TrainedTeam:
        return TrainedTeam(self.models, f"{self.name}_no_risk", use_risk=False)

    def prepare(self, data: MarketData) -> None:
        """Run the market-only networks over ``data`` in batches (cached per history on the shared models,
        so the no-risk ablation reuses them); :meth:`act` then looks outputs up by ``obs["bar_index"]``.
        Orders of magnitude faster than batch-1 calls, and equal to them (tested)."""
        cached = getattr(self.models, "_market_outputs", None)
        if cached is None or cached.data_id != id(data):
            cached = market_outputs(self.models, data)
            self.models._market_outputs = cached  # type: ignore[attr-defined]
        self._pre: MarketOutputs | None = cached
        self._data = data

    def reset(self, n_envs: int) -> None:
        self._pre = None
        self.ctx = SlowContext.empty(n_envs)
        self.first = np.ones(n_envs, bool)
        self.bias = np.zeros(n_envs, np.float32)

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(obs["slow_step"])
        if len(self.first) != n:
            self.reset(n)
        slow = np.asarray(obs["slow_step"], bool) | self.first
        rows = np.flatnonzero(slow)
        pre = getattr(self, "_pre", None)
        if pre is not None and "bar_index" in obs:
            t = np.asarray(obs["bar_index"])
            h = self._data.higher_of[t[rows]]
            self.ctx.regime_probs[rows], self.ctx.structure_probs[rows] = (
                pre.regime_probs[h],
                pre.structure_probs[h],
            )
            self.ctx.size[rows] = pre.size[h]
            tactical = pre.tactical_logits[t].argmax(-1)
        else:
            self.models.refresh(self.ctx, rows, obs)
            _, t_obs = self.models.agent_obs(self.ctx, obs)
            tactical = self.models.tactical_actor.dist(_t(t_obs)).logits.argmax(-1).numpy()
        # the mode level, as the serving graph computes it (StructureServing)
        levels = np.asarray(STRUCTURE_BIAS_LEVELS, np.float32)
        self.bias[rows] = levels[self.ctx.structure_probs[rows].argmax(-1)]
        if self.use_risk:
            risk_obs = flatten_risk_obs(
                obs["tactical"],
                obs["structure"],
                obs["regime"],
                obs["portfolio"],
                proposal(tactical, self.bias, self.ctx.size),
            )
            risk = risk_q_fn(self.models.risk, (_t(risk_obs),)).argmax(-1).numpy()
        else:
            risk = np.full(n, int(RiskAction.ALLOW))
        out = {
            "structure": self.ctx.structure_probs.argmax(-1),
            "bias": self.bias.copy(),
            "size": self.ctx.size.copy(),
            "tactical": tactical,
            "risk": risk,
            "structure_now": self.first.copy(),
            "regime_pred": self.ctx.regime_probs.argmax(-1),
        }
        self.first[:] = False
        return out
