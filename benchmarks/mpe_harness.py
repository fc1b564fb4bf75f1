"""The MAPPO correctness check on ``simple_spread_v3`` from PyPI ``mpe2`` (Farama's maintained MPE), a
dev-only harness (``mpe2`` is a ``dev`` extra): ``python -m benchmarks mappo_mpe`` and tests/test_mappo.py
use it; the package never imports it.

- :class:`MPEVecEnv` — ``n_envs`` mpe2 environments stepped in lockstep behind the trainer's
  :class:`~marlops.training.mappo.VecEnv` contract (auto-reset; the global state is the concatenation
  of the agents' observations, which is what mpe2's own ``state()`` returns);
  :class:`SubprocMPEVecEnv` — the same split over worker processes;
- :class:`MLPActor` / :class:`MLPCritic` — small MLPs, one actor shared by the identical agents;
- the baselines: :func:`greedy_landmark_policy` (each agent heads for a distinct landmark assigned
  greedily by distance, taking the discrete action that brings it closest) and :class:`RandomPolicy`;
- :func:`evaluate` — mean per-agent episode return of any policy on a fixed list of seeded episodes,
  so every policy is scored on exactly the same starting positions.

simple_spread (N agents, N landmarks): each agent's reward per step is
``(1 - local_ratio) · (-Σ_landmarks min_agent distance) + local_ratio · (-1 per collision it is in)``;
an episode is ``max_cycles`` steps and ends by truncation.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np
import torch
from mpe2 import simple_spread_v3
from torch import Tensor, nn
from torch.distributions import Categorical

from marlops.training.mappo import MAPPOConfig, TrainResult, VecObs, VecStep, seed_everything, train

N_ACTIONS = 5  # no-op, left, right, down, up
# mpe2's discrete action → unit force direction (simple_env._set_action).
ACTION_DIRECTIONS = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], np.float64)
# World physics (mpe2 core.World / Agent defaults): dt, damping, and the force of a move (accel 5, mass 1).
DT, DAMPING, ACCEL = 0.1, 0.25, 5.0

Policy = Callable[[np.ndarray], np.ndarray]  # (n_agents, obs_dim) observations -> (n_agents,) actions


def make_env(n_agents: int = 3, local_ratio: float = 0.5, max_cycles: int = 25) -> Any:
    return simple_spread_v3.parallel_env(
        N=n_agents, local_ratio=local_ratio, max_cycles=max_cycles, continuous_actions=False
    )


# --------------------------------------------------------------------------------------------------
# The vectorized adapter
# --------------------------------------------------------------------------------------------------


class MPEVecEnv:
    """``n_envs`` simple_spread_v3 envs in lockstep (a Python loop over the few envs).

    Each env is mpe2's ``raw_env`` driven through its AEC API (``step`` once per agent in turn; the last
    agent's step advances the world), without the parallel-API and order-enforcing wrappers that
    ``parallel_env`` adds around the same object: those wrappers cost as much time as the simulation
    itself and change nothing in the dynamics, rewards or observations (tested step for step against
    ``parallel_env``). Evaluation (:func:`evaluate`) uses the public ``parallel_env``.

    ``agent_ids`` appends a one-hot agent index to each actor observation. ``time_state`` appends the
    elapsed fraction of the episode (t / max_cycles) to the critic's state and reports the time limit as
    a termination (no bootstrap): the finite-horizon view of the task, which the critic can only take if
    it sees the time. The default (False) is the time-unaware critic bootstrapping at truncation."""

    def __init__(self, n_envs: int = 8, n_agents: int = 3, local_ratio: float = 0.5, max_cycles: int = 25,
                 agent_ids: bool = False, time_state: bool = False) -> None:  # fmt: skip
        self.envs = [
            simple_spread_v3.raw_env(
                N=n_agents, local_ratio=local_ratio, max_cycles=max_cycles, continuous_actions=False
            )
            for _ in range(n_envs)
        ]
        self.n_envs = n_envs
        self.agents: list[str] = list(self.envs[0].possible_agents)
        self.n_agents = len(self.agents)
        self.agent_ids = agent_ids
        raw_dim = int(self.envs[0].observation_space(self.agents[0]).shape[0])
        self.obs_dim = raw_dim + (self.n_agents if agent_ids else 0)
        self.time_state = time_state
        self.max_cycles = max_cycles
        self.t = np.zeros(n_envs, np.int64)  # steps taken in each env's current episode
        self.state_dim = self.n_agents * raw_dim + (1 if time_state else 0)
        self.n_actions = N_ACTIONS

    def _observe(self, env: Any) -> np.ndarray:
        return np.stack([env.observe(a) for a in self.agents])  # (n_agents, raw_dim) float32

    def _split(self, raw: np.ndarray, t: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """(n_envs, n_agents, raw_dim) -> per-agent actor observations and the global state."""
        obs = [raw[:, i] for i in range(self.n_agents)]
        if self.agent_ids:
            ids = np.eye(self.n_agents, dtype=np.float32)
            obs = [np.concatenate([o, np.broadcast_to(ids[i], (len(o), self.n_agents))], 1)
                   for i, o in enumerate(obs)]  # fmt: skip
        state = raw.reshape(len(raw), -1)
        if self.time_state:
            state = np.concatenate([state, (t / self.max_cycles).astype(np.float32)[:, None]], 1)
        return obs, state

    def reset(self, seed: int) -> VecObs:
        # Env k is seeded once with seed + k; its later auto-resets continue its own generator.
        for k, env in enumerate(self.envs):
            env.reset(seed=seed + k)
        self.t[:] = 0
        obs, state = self._split(np.stack([self._observe(env) for env in self.envs]), self.t)
        return VecObs(obs=obs, state=state)

    def step(self, actions: np.ndarray) -> VecStep:
        rewards = np.zeros((self.n_envs, self.n_agents), np.float32)
        terminated = np.zeros(self.n_envs, bool)
        truncated = np.zeros(self.n_envs, bool)
        final = np.zeros((self.n_envs, self.n_agents, self.state_dim // self.n_agents), np.float32)
        nxt = np.zeros_like(final)
        for k, env in enumerate(self.envs):
            for i in range(self.n_agents):  # AEC: agents in turn; the last one steps the world
                env.step(int(actions[k, i]))
            rewards[k] = [env.rewards[a] for a in self.agents]
            terminated[k] = any(env.terminations[a] for a in self.agents)
            truncated[k] = any(env.truncations[a] for a in self.agents) and not terminated[k]
            if self.time_state and truncated[k]:  # a finite-horizon task: the time limit is terminal
                terminated[k], truncated[k] = True, False
            final[k] = self._observe(env)
            if terminated[k] or truncated[k]:
                env.reset()
                nxt[k] = self._observe(env)
            else:
                nxt[k] = final[k]
        done = terminated | truncated
        _, final_state = self._split(final, self.t + 1)
        self.t = np.where(done, 0, self.t + 1)
        obs, state = self._split(nxt, self.t)
        return VecStep(
            obs=obs,
            state=state,
            rewards=rewards,
            terminated=terminated,
            truncated=truncated,
            final_state=final_state,
        )


def _worker(conn: Connection, n_envs: int, kwargs: dict[str, Any]) -> None:
    env = MPEVecEnv(n_envs, **kwargs)
    while True:
        cmd, arg = conn.recv()
        if cmd == "reset":
            conn.send(env.reset(arg))
        elif cmd == "step":
            conn.send(env.step(arg))
        else:
            conn.close()
            return


class SubprocMPEVecEnv:
    """The same envs split over worker processes: stepping mpe2 is pure Python (~0.5 ms a step) and
    dominates training time, so two workers on two cores nearly halve it. Env k gets the same seed as
    in :class:`MPEVecEnv`, so a run is identical whatever the number of workers."""

    def __init__(self, n_envs: int = 8, workers: int = 2, **kwargs: Any) -> None:
        self.n_envs = n_envs
        probe = MPEVecEnv(1, **kwargs)
        self.n_agents = probe.n_agents
        self.obs_dim, self.state_dim, self.n_actions = probe.obs_dim, probe.state_dim, probe.n_actions
        self.splits = [len(s) for s in np.array_split(np.arange(n_envs), workers) if len(s)]
        self.offsets = np.cumsum([0, *self.splits[:-1]]).tolist()
        # fork: no re-import of the caller's __main__ (spawn needs a main guard); the workers use only
        # numpy and mpe2, never torch, so forking a process that has torch loaded is safe.
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for n in self.splits:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, n, kwargs), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def reset(self, seed: int) -> VecObs:
        for conn, off in zip(self.conns, self.offsets, strict=True):
            conn.send(("reset", seed + off))
        parts: list[VecObs] = [conn.recv() for conn in self.conns]
        obs = [np.concatenate([p.obs[i] for p in parts]) for i in range(self.n_agents)]
        return VecObs(obs=obs, state=np.concatenate([p.state for p in parts]))

    def step(self, actions: np.ndarray) -> VecStep:
        for conn, off, n in zip(self.conns, self.offsets, self.splits, strict=True):
            conn.send(("step", actions[off : off + n]))
        parts: list[VecStep] = [conn.recv() for conn in self.conns]
        return VecStep(
            obs=[np.concatenate([p.obs[i] for p in parts]) for i in range(self.n_agents)],
            state=np.concatenate([p.state for p in parts]),
            rewards=np.concatenate([p.rewards for p in parts]),
            terminated=np.concatenate([p.terminated for p in parts]),
            truncated=np.concatenate([p.truncated for p in parts]),
            final_state=np.concatenate([p.final_state for p in parts]),
        )

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs, strict=True):
            conn.send(("close", None))
            proc.join(timeout=5)
        self.conns, self.procs = [], []


# --------------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------------


ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _mlp(n_in: int, n_out: int, hidden: int, out_gain: float, activation: str = "tanh", layers: int = 2,
         input_norm: bool = False) -> nn.Sequential:  # fmt: skip
    """``layers`` hidden layers of ``hidden`` units; ``input_norm``: a LayerNorm on the input (the
    reference MAPPO's "feature normalization")."""
    act = ACTIVATIONS[activation]
    mods: list[nn.Module] = [nn.LayerNorm(n_in)] if input_norm else []
    width = n_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), act()]
        width = hidden
    mods.append(nn.Linear(width, n_out))
    net = nn.Sequential(*mods)
    # CleanRL's init: orthogonal √2 for hidden layers; a small policy head starts near-uniform.
    for layer in net:
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, out_gain if layer is mods[-1] else np.sqrt(2))
            nn.init.zeros_(layer.bias)
    return net


class MLPActor(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int = N_ACTIONS, hidden: int = 64, activation: str = "tanh",
                 layers: int = 2, input_norm: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.net = _mlp(obs_dim, n_actions, hidden, 0.01, activation, layers, input_norm)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)

    def dist(self, obs: Tensor) -> Categorical:
        return Categorical(logits=self.net(obs), validate_args=False)  # the checks cost ~5% of an update


class MLPCritic(nn.Module):
    """Global state -> one normalized value per agent."""

    def __init__(self, state_dim: int, n_agents: int, hidden: int = 128, activation: str = "tanh",
                 layers: int = 2, input_norm: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.net = _mlp(state_dim, n_agents, hidden, 1.0, activation, layers, input_norm)

    def value(self, state: Tensor) -> Tensor:
        return self.net(state)


# --------------------------------------------------------------------------------------------------
# Baselines and evaluation
# --------------------------------------------------------------------------------------------------


def greedy_assignment(dist: np.ndarray) -> np.ndarray:
    """Agent -> landmark, repeatedly taking the closest remaining (agent, landmark) pair."""
    d = dist.astype(np.float64).copy()
    out = np.zeros(d.shape[0], np.int64)
    for _ in range(d.shape[0]):
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        out[i] = j
        d[i, :] = np.inf
        d[:, j] = np.inf
    return out


def greedy_landmark_policy(obs: np.ndarray, use_velocity: bool = True) -> np.ndarray:
    """The heuristic baseline: distinct landmarks by greedy assignment, then the best discrete move.

    Observation layout (simple_spread): ``[vel(2), pos(2), landmark rel pos (2N), other agents (2N-2),
    comm]``. An action only moves the agent from the step after next (position integrates the old
    velocity first), so "the action that reduces the distance most" is judged on the position two
    steps ahead: ``p + v·dt + (v(1 - damping) + a·accel·dt)·dt`` — which also brakes in time.
    ``use_velocity=False`` is the literal reading that ignores momentum (it overshoots and orbits the
    landmark); it is kept for comparison only.
    """
    n = obs.shape[0]
    vel = obs[:, 0:2].astype(np.float64)
    rel = obs[:, 4 : 4 + 2 * n].reshape(n, n, 2).astype(np.float64)  # (agent, landmark, xy)
    target = rel[np.arange(n), greedy_assignment(np.linalg.norm(rel, axis=-1))]  # (n, 2)
    drift = vel * DT + vel * (1 - DAMPING) * DT if use_velocity else np.zeros_like(vel)
    moved = drift[:, None, :] + ACTION_DIRECTIONS[None, :, :] * ACCEL * DT * DT  # (n, 5, 2)
    return np.argmin(np.linalg.norm(target[:, None, :] - moved, axis=-1), axis=1)


class RandomPolicy:
    """Uniform random actions from a seeded generator."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.integers(N_ACTIONS, size=obs.shape[0])


class ActorPolicy:
    """Trained actors as a :data:`Policy`: argmax (``deterministic``) or sampled from a seeded generator.

    ``actors``: one shared actor, or one per agent; ``agent_ids`` appends the one-hot agent index the
    actors were trained with (:class:`MPEVecEnv` ``agent_ids=True``)."""

    def __init__(self, actors: MLPActor | Sequence[MLPActor], deterministic: bool = True, seed: int = 0,
                 agent_ids: bool = False) -> None:  # fmt: skip
        self.actors = actors
        self.deterministic = deterministic
        self.agent_ids = agent_ids
        self.gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        n = obs.shape[0]
        if self.agent_ids:
            obs = np.concatenate([obs, np.eye(n, dtype=obs.dtype)], axis=1)
        x = torch.as_tensor(obs, dtype=torch.float32)
        if isinstance(self.actors, nn.Module):
            logits = self.actors(x)
        else:
            logits = torch.cat([self.actors[i](x[i : i + 1]) for i in range(n)])
        if self.deterministic:
            return logits.argmax(-1).numpy()
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=self.gen)[:, 0].numpy()


@dataclass
class EvalResult:
    mean: float  # mean over episodes of the per-agent episode return (mean over agents of Σ_t r)
    sem: float  # standard error of that mean
    returns: np.ndarray  # (episodes,)


def evaluate(policy: Policy, episodes: int = 1000, seed: int = 10_000, n_agents: int = 3,
             local_ratio: float = 0.5, max_cycles: int = 25) -> EvalResult:  # fmt: skip
    """Run ``episodes`` episodes, episode j reset with ``seed + j`` (the same for every policy)."""
    env = make_env(n_agents, local_ratio, max_cycles)
    agents = list(env.possible_agents)
    out = np.zeros(episodes)
    for j in range(episodes):
        obs, _ = env.reset(seed=seed + j)
        total = np.zeros(len(agents))
        while env.agents:
            actions = policy(np.stack([obs[a] for a in agents]))
            obs, rew, _, _, _ = env.step({a: int(actions[i]) for i, a in enumerate(agents)})
            total += [rew[a] for a in agents]
        out[j] = total.mean()
    return EvalResult(float(out.mean()), float(out.std(ddof=1) / np.sqrt(episodes)), out)


# --------------------------------------------------------------------------------------------------
# Training on simple_spread
# --------------------------------------------------------------------------------------------------

# The default budget of the check (see docs/mappo.md for the learning curve and the wall time).
SPREAD_CONFIG = MAPPOConfig(
    total_steps=2_400_000,  # the heuristic is beaten between 2.3M and 2.4M steps (docs/mappo.md)
    rollout_steps=100,  # 64 envs × 100 steps = 6,400 steps (19,200 agent decisions) per update
    gamma=0.95,  # learned faster than 0.99 here (the task's horizon is 25 steps)
    gae_lambda=0.95,
    lr_actor=1e-3,
    lr_critic=1e-3,
    update_epochs=10,
    n_minibatches=8,
    ent_coef=0.01,
)
SPREAD_ENVS = 64  # more envs per update: steadier gradients (−9.12 at 1.2M with 64 vs −9.68 at 0.8M with 32)
SPREAD_WORKERS = 1  # 64 envs in one process ran at ~1,240 steps/s here, faster than 2 workers


@dataclass
class SpreadRun:
    actors: list[MLPActor]  # one per agent (the same object three times when shared)
    critic: MLPCritic
    result: TrainResult
    agent_ids: bool

    def policy(self, deterministic: bool = True, seed: int = 0) -> ActorPolicy:
        return ActorPolicy(self.actors, deterministic, seed, self.agent_ids)


def train_spread(
    config: MAPPOConfig = SPREAD_CONFIG,
    n_envs: int = SPREAD_ENVS,
    workers: int = SPREAD_WORKERS,
    callback: Callable[[dict[str, float]], None] | None = None,
    actor_hidden: int = 64,
    critic_hidden: int = 128,
    share: bool = True,
    agent_ids: bool = False,
    time_state: bool = False,
) -> SpreadRun:
    """MAPPO on simple_spread_v3 (N=3): actors (one shared by the three agents unless ``share=False``)
    and a centralized critic on the concatenated observations.

    ``workers > 1`` steps the envs in that many processes (same seeds, so the same run).
    ``time_state``: the critic also sees the episode's elapsed fraction and the time limit is terminal
    (:class:`MPEVecEnv`) — the finite-horizon alternative to bootstrapping at truncation."""
    kwargs: dict[str, Any] = {"agent_ids": agent_ids, "time_state": time_state}
    env: MPEVecEnv | SubprocMPEVecEnv = (
        SubprocMPEVecEnv(n_envs, workers, **kwargs) if workers > 1 else MPEVecEnv(n_envs, **kwargs)
    )
    seed_everything(config.seed)  # network initialization is part of the seeded run
    n_actors = 1 if share else env.n_agents
    made = [MLPActor(env.obs_dim, env.n_actions, actor_hidden) for _ in range(n_actors)]
    actors = made * env.n_agents if share else made
    critic = MLPCritic(env.state_dim, env.n_agents, critic_hidden)
    try:
        result = train(env, actors, critic, config, callback)
    finally:
        if isinstance(env, SubprocMPEVecEnv):
            env.close()
    return SpreadRun(actors, critic, result, agent_ids)
