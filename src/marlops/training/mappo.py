"""MAPPO: multi-agent PPO with decentralized actors and a centralized critic, in one readable file.

Laid out like CleanRL's single-file PPO, top to bottom:

1. the contracts — what the trainer needs from actors, the critic and a vectorized environment;
2. :class:`MAPPOConfig`, every hyperparameter in one dataclass;
3. :func:`compute_gae`, GAE(λ) as a pure function, with semi-MDP clocks;
4. the losses (:func:`ppo_policy_loss`, :func:`value_loss`), pure functions too;
5. :class:`MAPPO` — rollout collection into a :class:`RolloutBuffer`, the update, and the training loop;
   :func:`train` is the one-call entry point.

Design (Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games"):
- **Actors** are per agent; pass the same module for several agents to share its parameters (the
  agents sharing a module form a *group*, batched through it together and trained on their pooled
  decisions). Heterogeneous agents (different observation widths, action counts) get separate modules.
- **One centralized critic** reads the global state and outputs one value per agent, ``(B, n_agents)``:
  agents may have different rewards (local penalties) and different clocks, so "the" value of a state
  differs per agent. It predicts *normalized* values (:mod:`marlops.training.normalization`).
- **Semi-MDP clocks.** An agent decides only at some steps (``act_every[i]``, or an ``acts`` mask from
  the environment); between decisions its last action is held. Its transition spans from one of its
  decisions to the next, τ steps later: reward ``Σ_{k<τ} γ^k r_{t+k}``, bootstrap ``γ^τ V(s_{t+τ})``,
  GAE trace ``(γ^τ λ) A_next``. The critic is trained on every step (the λ-return from a step inside an
  interval is the value of that state with the action committed), which also makes the bootstrap at a
  rollout boundary that falls inside an interval a trained value.
- Time-limit truncation bootstraps from the critic's value of the final (pre-reset) state; termination
  does not bootstrap. Every agent lives for the whole episode (the agent set is fixed).

Everything inside the trainer is batched over environments (arrays shaped ``(T, n_envs, n_agents)``);
the only Python loops are over time steps, agent groups, epochs and minibatches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical
from tqdm.auto import tqdm

from marlops.training.distributed import Dist
from marlops.training.normalization import IdentityNormalizer, RunningMeanStd

# --------------------------------------------------------------------------------------------------
# 1. Contracts
# --------------------------------------------------------------------------------------------------


class Actor(Protocol):
    """A decentralized policy over discrete actions (any ``nn.Module`` with a ``dist`` method).

    An actor may also define ``aux_loss(obs) -> Tensor``: a differentiable auxiliary loss on the same
    observations (e.g. heads that are not the policy), added to the actor loss in every minibatch."""

    def dist(self, obs: Tensor) -> Categorical:
        """``obs (B, obs_dim)`` -> the action distribution, batch shape ``(B,)``."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


class Critic(Protocol):
    """The centralized critic (any ``nn.Module`` with a ``value`` method)."""

    def value(self, state: Tensor) -> Tensor:
        """``state (B, state_dim)`` -> normalized values ``(B, n_agents)``, one per agent."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


@dataclass
class VecObs:
    """What a reset returns: the first observations of ``n_envs`` environments."""

    obs: list[np.ndarray]  # one per agent: (n_envs, obs_dim_i), float32
    state: np.ndarray  # (n_envs, state_dim): the critic's input
    acts: np.ndarray | None = None  # (n_envs, n_agents) bool: who decides at the next step; None = clock


@dataclass
class VecStep:
    """What a step returns. Environments auto-reset: where an episode ended, ``obs``/``state`` are
    the first of the next episode and ``final_state`` is the state the episode ended in."""

    obs: list[np.ndarray]
    state: np.ndarray
    rewards: np.ndarray  # (n_envs, n_agents)
    terminated: np.ndarray  # (n_envs,) bool: reached a terminal state (no bootstrap)
    truncated: np.ndarray  # (n_envs,) bool: cut by a time limit (bootstrap from final_state)
    final_state: np.ndarray  # (n_envs, state_dim)
    acts: np.ndarray | None = None


class VecEnv(Protocol):
    """``n_envs`` copies of a multi-agent environment stepping in lockstep, discrete actions."""

    n_envs: int
    n_agents: int

    def reset(self, seed: int) -> VecObs: ...

    def step(self, actions: np.ndarray) -> VecStep:
        """``actions (n_envs, n_agents)`` int64 -> the next step (held actions are already filled in)."""
        ...


# --------------------------------------------------------------------------------------------------
# 2. Configuration
# --------------------------------------------------------------------------------------------------


@dataclass
class MAPPOConfig:
    total_steps: int = 500_000  # environment steps (one step moves every agent of one env)
    rollout_steps: int = 100  # T: steps per env per update; batch = T * n_envs
    gamma: float = 0.99
    gae_lambda: float = 0.95
    lr_actor: float = 7e-4
    lr_critic: float = 7e-4
    anneal_lr: bool = False  # linear decay to 0 over training (CleanRL's default is on)
    update_epochs: int = 10
    n_minibatches: int = 1
    clip_coef: float = 0.2
    value_clip: float | None = None  # PPO value clipping, in normalized units; None = plain MSE
    vf_coef: float = 1.0
    ent_coef: float = 0.01
    max_grad_norm: float = 10.0  # global-norm clip, applied to the actors and to the critic separately
    norm_adv: bool = True  # per group, over the whole batch (as the reference MAPPO does)
    value_norm: bool = True
    value_norm_decay: float | None = None  # None = exact running stats; e.g. 0.99999 = reference EMA
    target_kl: float | None = None  # stop the epochs early when the mean approx KL exceeds this
    act_every: tuple[int, ...] | None = None  # per-agent decision period in steps (None = every step)
    seed: int = 0
    progress: bool = True


# --------------------------------------------------------------------------------------------------
# 3. GAE with semi-MDP clocks
# --------------------------------------------------------------------------------------------------


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lam: float,
    acts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE(λ) advantages and λ-returns, per step and agent; shapes ``(T, n_envs, n_agents)``.

    ``values[t]`` is V(s_t); ``next_values[t]`` is V of the state step t reached — the pre-reset final
    state where an episode ended there, V(s_T) at the last step. ``terminated``/``truncated`` are
    ``(T, n_envs)``. ``acts[t, e, i]`` says agent i decided at step t (default: every step).

    The recursion runs on λ-returns G_t, from the end of the rollout backwards:

    - the next step is inside the agent's current interval (same episode, it does not decide there):
      ``G_t = r_t + γ G_{t+1}`` — rewards accumulate with γ^k, no bootstrap in between;
    - the next step is the agent's next decision: ``G_t = r_t + γ [next_V_t + λ (G_{t+1} - V_{t+1})]``;
    - the episode ended at t (or t is the rollout's last step): ``G_t = r_t + γ (1 - term_t) next_V_t``.

    At a decision step this is ``A_j = δ_j + γ^τ λ A_{j+1}`` with ``δ_j = R_j + γ^τ V_{j+1} - V_j`` and
    ``R_j = Σ_{k<τ} γ^k r``, τ the steps to the agent's next decision; with every agent deciding every
    step it is exactly the usual GAE. Advantages are meaningful at decision steps only (the trainer
    uses those for the actors); returns at every step are the critic's targets.
    """
    n_steps = rewards.shape[0]
    if acts is None:
        acts = np.ones(rewards.shape, bool)
    returns = np.zeros(rewards.shape, np.float64)
    g_next = np.zeros(rewards.shape[1:], np.float64)  # G_{t+1}
    a_next = np.zeros(rewards.shape[1:], np.float64)  # A_{t+1} = G_{t+1} - V_{t+1}
    for t in reversed(range(n_steps)):
        last = t == n_steps - 1
        # the same episode goes on into step t+1, inside this rollout
        cont = ~(terminated[t] | truncated[t])[:, None] & (not last)
        inside = cont & ~acts[min(t + 1, n_steps - 1)]  # ... and t+1 is inside the agent's interval
        bootstrap = (~terminated[t])[:, None] * next_values[t] + cont * lam * a_next
        returns[t] = rewards[t] + gamma * np.where(inside, g_next, bootstrap)
        g_next = returns[t]
        a_next = returns[t] - values[t]
    advantages = returns - values
    return advantages.astype(np.float32), returns.astype(np.float32)


def decision_mask(episode_step: np.ndarray, act_every: np.ndarray, env_acts: np.ndarray | None) -> np.ndarray:
    """Who decides now: the environment's mask if it gives one, else ``step % act_every == 0``.

    Everyone decides at the first step of an episode, so there is always an action to hold.
    """
    first = episode_step[:, None] == 0
    if env_acts is not None:
        return np.asarray(env_acts, bool) | first
    return (episode_step[:, None] % act_every[None, :]) == 0


# --------------------------------------------------------------------------------------------------
# 4. Losses
# --------------------------------------------------------------------------------------------------


def ppo_policy_loss(
    new_logp: Tensor, old_logp: Tensor, advantages: Tensor, clip_coef: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Clipped surrogate ``E[max(-A ρ, -A clip(ρ, 1-ε, 1+ε))]``; also approx KL and clip fraction.

    Approx KL is Schulman's low-variance estimator ``E[(ρ - 1) - log ρ]`` (as in CleanRL).
    """
    logratio = new_logp - old_logp
    ratio = logratio.exp()
    loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1).abs() > clip_coef).float().mean()
    return loss, approx_kl, clipfrac


def value_loss(pred: Tensor, old_pred: Tensor, target: Tensor, clip: float | None) -> Tensor:
    """``0.5 E[(V - G)²]``, or PPO's pessimistic clipped version around the rollout's predictions."""
    loss = (pred - target) ** 2
    if clip is not None:
        clipped = old_pred + (pred - old_pred).clamp(-clip, clip)
        loss = torch.max(loss, (clipped - target) ** 2)
    return 0.5 * loss.mean()


def explained_variance(pred: np.ndarray, target: np.ndarray) -> float:
    """``1 - Var[G - V] / Var[G]``: 1 is a perfect critic, 0 is predicting the mean, < 0 worse."""
    var = float(np.var(target))
    return float("nan") if var == 0 else 1.0 - float(np.var(target - pred)) / var


# --------------------------------------------------------------------------------------------------
# 5. The trainer
# --------------------------------------------------------------------------------------------------


@dataclass
class RolloutBuffer:
    """One rollout of ``T`` steps of ``n_envs`` envs; per-agent arrays are ``(T, n_envs, n_agents)``."""

    obs: list[np.ndarray]  # per agent: (T, n_envs, obs_dim_i)
    state: np.ndarray  # (T, n_envs, state_dim)
    actions: np.ndarray  # int64; the action in force (held between decisions)
    logprobs: np.ndarray  # log π(a|o) at decision steps
    values: np.ndarray  # V(s_t), denormalized
    next_values: np.ndarray  # V of the state reached by step t (see compute_gae), denormalized
    rewards: np.ndarray
    terminated: np.ndarray  # (T, n_envs)
    truncated: np.ndarray  # (T, n_envs)
    acts: np.ndarray  # bool: decision steps
    advantages: np.ndarray | None = None
    returns: np.ndarray | None = None


@dataclass
class TrainResult:
    history: list[dict[str, float]]  # one metrics dict per update
    env_steps: int
    wall_s: float


@dataclass
class _Cursor:
    """Where the vectorized env is between rollouts."""

    obs: list[np.ndarray]
    state: np.ndarray
    env_acts: np.ndarray | None
    prev_actions: np.ndarray  # (n_envs, n_agents) the actions being held
    episode_step: np.ndarray  # (n_envs,)
    episode_return: np.ndarray  # (n_envs, n_agents)


@dataclass
class _EpisodeLog:
    returns: list[float] = field(default_factory=list)  # mean over agents, one per finished episode
    lengths: list[int] = field(default_factory=list)


def _t(x: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype)


class MAPPO:
    """Trainer state: actor groups, critic, optimizer, value normalizer, env cursor.

    ``actors[i]`` is agent i's actor; the same object for several agents shares its parameters.
    """

    def __init__(
        self, actors: Sequence[Actor], critic: Critic, config: MAPPOConfig, dist: Dist | None = None
    ) -> None:
        self.cfg = config
        self.dist = dist or Dist()
        self.n_agents = len(actors)
        self.critic = critic
        # Group agents by actor identity: one forward pass per group, shared parameters trained on the
        # pooled decisions of its members.
        self.groups: list[tuple[Actor, list[int]]] = []
        for i, actor in enumerate(actors):
            for a, members in self.groups:
                if a is actor:
                    members.append(i)
                    break
            else:
                self.groups.append((actor, [i]))
        self.actor_params = [p for a, _ in self.groups for p in a.parameters()]
        self.critic_params = list(critic.parameters())
        self.optimizer = torch.optim.Adam(
            [
                {"params": self.actor_params, "lr": config.lr_actor},
                {"params": self.critic_params, "lr": config.lr_critic},
            ],
            eps=1e-5,
        )
        norm_cls = RunningMeanStd if config.value_norm else IdentityNormalizer
        self.value_norm = norm_cls((self.n_agents,), decay=config.value_norm_decay)
        every = config.act_every or (1,) * self.n_agents
        if len(every) != self.n_agents or min(every) < 1:
            raise ValueError(f"act_every needs one period >= 1 per agent, got {every}")
        self.act_every = np.asarray(every, np.int64)
        self.rng = np.random.default_rng(config.seed)
        self.cursor: _Cursor | None = None
        self.updates_done = 0
        for m in {id(x): x for x in [*(a for a, _ in self.groups), critic]}.values():
            self.dist.broadcast_module(m)  # type: ignore[arg-type]

    def state_dict(self) -> dict:
        """Everything an interrupted run needs to go on (the env cursor is not kept: a resumed run starts
        fresh episodes)."""
        return {
            "actors": [a.state_dict() for a, _ in self.groups],  # type: ignore[attr-defined]
            "critic": self.critic.state_dict(),  # type: ignore[attr-defined]
            "optimizer": self.optimizer.state_dict(),
            "value_norm": self.value_norm.state_dict(),
            "rng": self.rng.bit_generator.state,
            "updates_done": self.updates_done,
        }

    def load_state_dict(self, state: dict) -> None:
        for (a, _), sd in zip(self.groups, state["actors"], strict=True):
            a.load_state_dict(sd)  # type: ignore[attr-defined]
        self.critic.load_state_dict(state["critic"])  # type: ignore[attr-defined]
        self.optimizer.load_state_dict(state["optimizer"])
        self.value_norm.load_state_dict(state["value_norm"])
        self.rng.bit_generator.state = state["rng"]
        self.updates_done = int(state["updates_done"])

    # ---- acting -------------------------------------------------------------------------------

    @torch.no_grad()
    def _values(self, state: np.ndarray) -> np.ndarray:
        return self.value_norm.denormalize(self.critic.value(_t(state)).numpy())

    @torch.no_grad()
    def _sample(self, obs: list[np.ndarray], acts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Sample the actions of the agents that decide now (``acts``, default all): (n_envs, n_agents)
        actions and log-probs, zero elsewhere. Only the deciding envs go through a group's actor — a slow
        agent's network runs on its own clock, not every step."""
        n_envs = obs[0].shape[0]
        actions = np.zeros((n_envs, self.n_agents), np.int64)
        logp = np.zeros((n_envs, self.n_agents), np.float32)
        for actor, members in self.groups:
            rows = np.arange(n_envs) if acts is None else np.flatnonzero(acts[:, members].any(axis=1))
            if len(rows) == 0:
                continue
            x = _t(np.stack([obs[i][rows] for i in members], axis=1))  # (E', m, d)
            dist = actor.dist(x.reshape(len(rows) * len(members), -1))
            a = dist.sample()
            actions[np.ix_(rows, members)] = a.reshape(len(rows), len(members)).numpy()
            logp[np.ix_(rows, members)] = dist.log_prob(a).reshape(len(rows), len(members)).numpy()
        return actions, logp

    def reset(self, env: VecEnv, seed: int) -> None:
        first = env.reset(seed)
        self.cursor = _Cursor(
            obs=first.obs,
            state=first.state,
            env_acts=first.acts,
            prev_actions=np.zeros((env.n_envs, self.n_agents), np.int64),
            episode_step=np.zeros(env.n_envs, np.int64),
            episode_return=np.zeros((env.n_envs, self.n_agents), np.float64),
        )

    def collect(self, env: VecEnv, n_steps: int, log: _EpisodeLog | None = None) -> RolloutBuffer:
        """Step all envs ``n_steps`` times with the current policies."""
        if self.cursor is None:
            self.reset(env, self.cfg.seed)
        c = self.cursor
        assert c is not None
        n_envs, n_agents = env.n_envs, self.n_agents
        shape = (n_steps, n_envs, n_agents)
        obs = [np.zeros((n_steps, *o.shape), np.float32) for o in c.obs]
        states = np.zeros((n_steps, *c.state.shape), np.float32)
        actions, acts = np.zeros(shape, np.int64), np.zeros(shape, bool)
        logprobs, values, rewards = (np.zeros(shape, np.float32) for _ in range(3))
        final_values = np.zeros(shape, np.float32)
        terminated, truncated = np.zeros((n_steps, n_envs), bool), np.zeros((n_steps, n_envs), bool)
        for t in range(n_steps):
            for i, o in enumerate(c.obs):
                obs[i][t] = o
            states[t] = c.state
            acts[t] = decision_mask(c.episode_step, self.act_every, c.env_acts)
            values[t] = self._values(c.state)
            sampled, logp = self._sample(c.obs, acts[t])
            actions[t] = np.where(acts[t], sampled, c.prev_actions)  # hold between decisions
            logprobs[t] = np.where(acts[t], logp, 0.0)
            step = env.step(actions[t])
            rewards[t], terminated[t], truncated[t] = step.rewards, step.terminated, step.truncated
            if step.truncated.any():  # bootstrap a time-limited episode from its final state
                idx = np.flatnonzero(step.truncated)
                final_values[t, idx] = self._values(step.final_state[idx])
            # advance the cursor; finished envs start their next episode
            done = step.terminated | step.truncated
            c.episode_return += step.rewards
            if log is not None and done.any():
                log.returns.extend(c.episode_return[done].mean(axis=1).tolist())
                log.lengths.extend((c.episode_step[done] + 1).tolist())
            c.episode_return[done] = 0.0
            c.episode_step = np.where(done, 0, c.episode_step + 1)
            c.obs, c.state, c.env_acts, c.prev_actions = step.obs, step.state, step.acts, actions[t]
        next_values = np.concatenate([values[1:], self._values(c.state)[None]], axis=0)
        next_values = np.where(truncated[:, :, None], final_values, next_values)
        return RolloutBuffer(
            obs, states, actions, logprobs, values, next_values, rewards, terminated, truncated, acts
        )

    # ---- learning -----------------------------------------------------------------------------

    def update(self, buf: RolloutBuffer) -> dict[str, float]:
        """GAE, then ``update_epochs`` passes of minibatch PPO over the rollout."""
        cfg = self.cfg
        buf.advantages, buf.returns = compute_gae(
            buf.rewards,
            buf.values,
            buf.next_values,
            buf.terminated,
            buf.truncated,
            cfg.gamma,
            cfg.gae_lambda,
            buf.acts,
        )
        n_agents = self.n_agents
        # Critic samples: every (t, env), all agent heads at once. Stats first, so the targets are
        # normalized with the statistics that include them.
        # every worker updates the statistics with every worker's returns, so they stay identical
        self.value_norm.update(self.dist.all_gather_rows(buf.returns.reshape(-1, n_agents)))
        states = _t(buf.state.reshape(-1, buf.state.shape[-1]))
        v_target = _t(self.value_norm.normalize(buf.returns.reshape(-1, n_agents)))
        v_old = _t(self.value_norm.normalize(buf.values.reshape(-1, n_agents)))
        # Actor samples: each group's decision steps, pooled over its members.
        samples = []
        for _, members in self.groups:
            mask = buf.acts[:, :, members]
            obs = np.stack([buf.obs[i] for i in members], axis=2)[mask]
            adv = buf.advantages[:, :, members][mask]
            if cfg.norm_adv and adv.size > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            samples.append(
                (
                    _t(obs),
                    _t(buf.actions[:, :, members][mask], torch.int64),
                    _t(buf.logprobs[:, :, members][mask]),
                    _t(adv),
                )
            )

        stats: dict[str, list[float]] = {
            k: []
            for k in (
                "policy_loss",
                "value_loss",
                "entropy",
                "approx_kl",
                "clipfrac",
                "grad_norm_actor",
                "grad_norm_critic",
            )
        }
        for _epoch in range(cfg.update_epochs):
            critic_mbs = np.array_split(self.rng.permutation(len(states)), cfg.n_minibatches)
            group_mbs = [np.array_split(self.rng.permutation(len(s[0])), cfg.n_minibatches) for s in samples]
            epoch_kl = []
            for k in range(cfg.n_minibatches):
                loss = torch.zeros(())
                for (actor, _), (obs, act, old_logp, adv), mbs in zip(
                    self.groups, samples, group_mbs, strict=True
                ):
                    mb = torch.as_tensor(mbs[k])
                    if len(mb) == 0:  # a slow agent may not have decided in this rollout
                        continue
                    dist = actor.dist(obs[mb])
                    pg_loss, approx_kl, clipfrac = ppo_policy_loss(
                        dist.log_prob(act[mb]), old_logp[mb], adv[mb], cfg.clip_coef
                    )
                    entropy = dist.entropy().mean()
                    loss = loss + pg_loss - cfg.ent_coef * entropy
                    aux = getattr(actor, "aux_loss", None)
                    if aux is not None:
                        aux_loss = aux(obs[mb])
                        loss = loss + aux_loss
                        stats.setdefault("aux_loss", []).append(aux_loss.item())
                    stats["policy_loss"].append(pg_loss.item())
                    stats["entropy"].append(entropy.item())
                    stats["approx_kl"].append(approx_kl.item())
                    stats["clipfrac"].append(clipfrac.item())
                    epoch_kl.append(approx_kl.item())
                mb = torch.as_tensor(critic_mbs[k])
                v_loss = value_loss(self.critic.value(states[mb]), v_old[mb], v_target[mb], cfg.value_clip)
                loss = loss + cfg.vf_coef * v_loss
                stats["value_loss"].append(v_loss.item())

                self.optimizer.zero_grad()
                loss.backward()
                self.dist.all_reduce_grads(self.actor_params + self.critic_params)
                stats["grad_norm_actor"].append(
                    float(nn.utils.clip_grad_norm_(self.actor_params, cfg.max_grad_norm))
                )
                stats["grad_norm_critic"].append(
                    float(nn.utils.clip_grad_norm_(self.critic_params, cfg.max_grad_norm))
                )
                self.optimizer.step()
            if cfg.target_kl is not None and epoch_kl and float(np.mean(epoch_kl)) > cfg.target_kl:
                break

        metrics = {k: float(np.mean(v)) if v else float("nan") for k, v in stats.items()}
        metrics["explained_variance"] = explained_variance(buf.values, buf.returns)
        metrics["value_mean"] = float(buf.values.mean())
        metrics["return_target_mean"] = float(buf.returns.mean())
        return metrics

    # ---- the loop -----------------------------------------------------------------------------

    def train(self, env: VecEnv, callback: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
        """Collect, update, repeat until ``total_steps``; one metrics dict per update."""
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.reset(env, cfg.seed)
        batch = cfg.rollout_steps * env.n_envs
        n_updates = max(1, cfg.total_steps // batch)
        history: list[dict[str, float]] = []
        start = time.perf_counter()
        bar = tqdm(range(n_updates), desc="MAPPO", disable=not cfg.progress, unit="upd")
        for update in bar:
            if cfg.anneal_lr:
                frac = 1.0 - update / n_updates
                self.optimizer.param_groups[0]["lr"] = frac * cfg.lr_actor
                self.optimizer.param_groups[1]["lr"] = frac * cfg.lr_critic
            log = _EpisodeLog()
            buf = self.collect(env, cfg.rollout_steps, log)
            metrics = self.update(buf)
            metrics.update(
                update=float(update + 1),
                env_steps=float((update + 1) * batch),
                episode_return=float(np.mean(log.returns)) if log.returns else float("nan"),
                episode_length=float(np.mean(log.lengths)) if log.lengths else float("nan"),
                episodes=float(len(log.returns)),
                lr_actor=float(self.optimizer.param_groups[0]["lr"]),
                wall_s=time.perf_counter() - start,
            )
            history.append(metrics)
            if callback is not None:
                callback(metrics)
            if not math.isnan(metrics["episode_return"]):
                bar.set_postfix(
                    ret=f"{metrics['episode_return']:.2f}",
                    kl=f"{metrics['approx_kl']:.4f}",
                    ev=f"{metrics['explained_variance']:.2f}",
                )
        bar.close()
        return TrainResult(history, n_updates * batch, time.perf_counter() - start)


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's global generators (envs are seeded through ``reset(seed)``)."""
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 — some environments draw noise from the global generator


def train(
    env: VecEnv,
    actors: Sequence[Actor],
    critic: Critic,
    config: MAPPOConfig | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``actors`` and ``critic`` in place on ``env``; returns the per-update metrics."""
    return MAPPO(actors, critic, config or MAPPOConfig()).train(env, callback)
