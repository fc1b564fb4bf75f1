"""MAPPO: GAE (plain and semi-MDP) against hand-computed values, value normalization against numpy, the
clipped loss against its formula, seeding, a quick learning check, and (slow) the simple_spread check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from marlops.training.mappo import (
    MAPPO,
    MAPPOConfig,
    VecObs,
    VecStep,
    compute_gae,
    ppo_policy_loss,
    seed_everything,
    train,
    value_loss,
)
from marlops.training.normalization import RunningMeanStd

# --------------------------------------------------------------------------------------------------
# GAE
# --------------------------------------------------------------------------------------------------


def _col(*xs: float) -> np.ndarray:
    """A (T, 1, 1) array: one env, one agent."""
    return np.asarray(xs, np.float64)[:, None, None]


def _flags(*xs: bool) -> np.ndarray:
    return np.asarray(xs, bool)[:, None]


def test_gae_hand_example_truncation_bootstraps_termination_does_not() -> None:
    gamma, lam = 0.9, 0.5
    rewards, values = _col(1, 2, 3), _col(0.5, 1.0, 1.5)
    # Step 1 ends an episode: next_values[1] is the value of its final (pre-reset) state, 4.0.
    # Step 2 is the rollout's last step: next_values[2] = V(s_T) = 2.0.
    next_values = _col(1.0, 4.0, 2.0)
    never = _flags(False, False, False)

    adv, ret = compute_gae(rewards, values, next_values, never, _flags(False, True, False), gamma, lam)
    # t=2: δ = 3 + 0.9·2.0 - 1.5 = 3.3 (bootstrap at the rollout's end)
    # t=1: truncated → δ = 2 + 0.9·4.0 - 1.0 = 4.6, and the trace stops there
    # t=0: δ = 1 + 0.9·1.0 - 0.5 = 1.4;  A = 1.4 + 0.9·0.5·4.6 = 3.47
    np.testing.assert_allclose(adv[:, 0, 0], [3.47, 4.6, 3.3], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0, 0], [3.97, 5.6, 4.8], rtol=1e-6)

    adv, ret = compute_gae(rewards, values, next_values, _flags(False, True, False), never, gamma, lam)
    # terminated at t=1 → δ = 2 - 1.0 = 1.0 (no bootstrap); t=0: 1.4 + 0.45·1.0
    np.testing.assert_allclose(adv[:, 0, 0], [1.85, 1.0, 3.3], rtol=1e-6)


def test_gae_equals_textbook_gae_when_every_agent_acts_every_step() -> None:
    rng = np.random.default_rng(0)
    t_len, n_envs, n_agents, gamma, lam = 40, 5, 3, 0.97, 0.9
    rewards = rng.normal(size=(t_len, n_envs, n_agents))
    values = rng.normal(size=(t_len, n_envs, n_agents))
    next_values = rng.normal(size=(t_len, n_envs, n_agents))
    terminated = rng.random((t_len, n_envs)) < 0.05
    truncated = (rng.random((t_len, n_envs)) < 0.05) & ~terminated
    # Textbook (CleanRL) form, written out per env and agent.
    expected = np.zeros_like(rewards)
    for e in range(n_envs):
        for i in range(n_agents):
            last = 0.0
            for t in reversed(range(t_len)):
                ended = terminated[t, e] or truncated[t, e]
                delta = (
                    rewards[t, e, i] + gamma * (not terminated[t, e]) * next_values[t, e, i] - values[t, e, i]
                )
                trace = 0.0 if (ended or t == t_len - 1) else last
                last = delta + gamma * lam * trace
                expected[t, e, i] = last
    adv, ret = compute_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, expected + values, rtol=1e-5, atol=1e-5)


def test_semi_mdp_gae_hand_example() -> None:
    """One agent deciding every 3 steps over a 6-step episode that terminates: two transitions."""
    g = 0.9
    rewards = _col(1, 2, 3, 4, 5, 6)
    values = _col(10, 10, 10, 20, 20, 20)
    next_values = _col(10, 10, 20, 20, 20, 99)  # the terminal step's next value must be ignored
    acts = _col(1, 0, 0, 1, 0, 0).astype(bool)
    terminated = _flags(False, False, False, False, False, True)
    never = np.zeros_like(terminated)
    # λ = 0: R + γ^τ V(next decision)
    _, ret = compute_gae(rewards, values, next_values, terminated, never, g, 0.0, acts)
    second = 4 + g * 5 + g**2 * 6  # terminal: no bootstrap
    first = 1 + g * 2 + g**2 * 3 + g**3 * 20
    assert ret[0, 0, 0] == pytest.approx(first)
    assert ret[3, 0, 0] == pytest.approx(second)
    # inside an interval the target is the rest of the interval plus the same bootstrap
    assert ret[1, 0, 0] == pytest.approx(2 + g * 3 + g**2 * 20)
    # λ = 0.5: A_0 = δ_0 + γ^τ λ A_3, with δ_0 = R_0 + γ^3 V_3 - V_0
    adv, _ = compute_gae(rewards, values, next_values, terminated, never, g, 0.5, acts)
    a3 = second - 20
    assert adv[3, 0, 0] == pytest.approx(a3)
    assert adv[0, 0, 0] == pytest.approx(first - 10 + g**3 * 0.5 * a3)


# --------------------------------------------------------------------------------------------------
# Semi-MDP through the trainer: a toy with two clocks and heterogeneous agents
# --------------------------------------------------------------------------------------------------


class ClockToy:
    """Two agents, episodes of 6 steps ending by truncation. Agent 0 (obs width 2) acts every step,
    agent 1 (obs width 3) every 3. Rewards are fixed: agent 0 gets 1, agent 1 gets t + 1 at the
    episode's step t. Records the actions it receives to check that agent 1's are held."""

    n_agents = 2

    def __init__(self, n_envs: int = 2, with_mask: bool = False) -> None:
        self.n_envs = n_envs
        self.with_mask = with_mask
        self.t = np.zeros(n_envs, np.int64)
        self.received: list[np.ndarray] = []

    def _obs(self) -> VecObs:
        obs = [np.zeros((self.n_envs, 2), np.float32), np.zeros((self.n_envs, 3), np.float32)]
        state = np.stack([self.t / 6.0, np.ones(self.n_envs)], axis=1).astype(np.float32)
        acts = np.stack([np.ones(self.n_envs, bool), self.t % 3 == 0], axis=1) if self.with_mask else None
        return VecObs(obs, state, acts)

    def reset(self, seed: int) -> VecObs:
        self.t[:] = 0
        return self._obs()

    def step(self, actions: np.ndarray) -> VecStep:
        self.received.append(actions.copy())
        rewards = np.stack([np.ones(self.n_envs), self.t + 1.0], axis=1).astype(np.float32)
        self.t += 1
        truncated = self.t == 6
        final_state = np.stack([self.t / 6.0, np.ones(self.n_envs)], axis=1).astype(np.float32)
        self.t[truncated] = 0
        o = self._obs()
        return VecStep(o.obs, o.state, rewards, np.zeros(self.n_envs, bool), truncated, final_state, o.acts)


class TableActor(nn.Module):
    """Logits that ignore the observation (enough for matrix games and the toys)."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_actions))

    def dist(self, obs: Tensor) -> Categorical:
        return Categorical(logits=self.logits.expand(obs.shape[0], -1))


class ConstCritic(nn.Module):
    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.tensor(values))

    def value(self, state: Tensor) -> Tensor:
        return self.v.expand(state.shape[0], -1)


@pytest.mark.parametrize("with_mask", [False, True])
def test_semi_mdp_rollout_returns_and_held_actions(with_mask: bool) -> None:
    g, c1 = 0.9, 7.0
    env = ClockToy(with_mask=with_mask)
    cfg = MAPPOConfig(gamma=g, gae_lambda=0.0, value_norm=False, act_every=None if with_mask else (1, 3))
    trainer = MAPPO([TableActor(3), TableActor(4)], ConstCritic([5.0, c1]), cfg)
    buf = trainer.collect(env, 9)  # one full episode and half of the next
    trainer.update(buf)  # fills advantages / returns (and takes one harmless optimizer pass)
    assert buf.returns is not None

    decides = buf.acts[:, 0, 1]
    np.testing.assert_array_equal(decides, [1, 0, 0, 1, 0, 0, 1, 0, 0])
    assert buf.acts[:, :, 0].all()
    received = np.stack(env.received)[:, :, 1]  # (T, n_envs): agent 1's actions as the env saw them
    for start in (0, 3, 6):
        assert (received[start : start + 3] == received[start]).all()

    r1 = buf.rewards[:, 0, 1]
    np.testing.assert_array_equal(r1, [1, 2, 3, 4, 5, 6, 1, 2, 3])
    # decision at t=0: R = 1 + 2γ + 3γ², then γ³ V(s_3)
    assert buf.returns[0, 0, 1] == pytest.approx(1 + 2 * g + 3 * g**2 + g**3 * c1, rel=1e-6)
    # decision at t=3: the episode is truncated after t=5 → bootstrap γ³ V(final state)
    assert buf.returns[3, 0, 1] == pytest.approx(4 + 5 * g + 6 * g**2 + g**3 * c1, rel=1e-6)
    # decision at t=6, cut by the rollout's end after 3 steps: bootstrap γ³ V(s_9)
    assert buf.returns[6, 0, 1] == pytest.approx(1 + 2 * g + 3 * g**2 + g**3 * c1, rel=1e-6)
    # the every-step agent: one-step returns 1 + γ·5
    np.testing.assert_allclose(buf.returns[:, :, 0], 1 + g * 5.0, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# Value normalization, losses
# --------------------------------------------------------------------------------------------------


def test_running_mean_std_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    rms = RunningMeanStd((3,))
    batches = [rng.normal(loc=[5, -2, 100], scale=[1, 3, 20], size=(n, 3)) for n in (1, 7, 100, 3, 1000)]
    for b in batches:
        rms.update(b)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, everything.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, everything.var(axis=0), rtol=1e-10)
    assert rms.count == len(everything)
    x = rng.normal(size=(10, 3)) * 50
    np.testing.assert_allclose(rms.denormalize(rms.normalize(x)), x, rtol=1e-4, atol=1e-3)
    z = rms.normalize(everything)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-4)
    # (T, E, A) input is flattened over the leading axes
    rms2 = RunningMeanStd((3,))
    rms2.update(everything.reshape(-1, 1, 3))
    np.testing.assert_allclose(rms2.var, rms.var, rtol=1e-10)


def test_running_mean_std_ema_is_debiased() -> None:
    rms = RunningMeanStd((), decay=0.9)
    rms.update(np.array([2.0, 4.0]))  # one batch: the debiased EMA is that batch's moments
    assert rms.mean == pytest.approx(3.0)
    assert rms.var == pytest.approx(1.0)
    rms.update(np.array([10.0]))
    w = 0.9 * 0.1 + 0.1
    assert rms.mean == pytest.approx((0.9 * 0.1 * 3.0 + 0.1 * 10.0) / w)
    assert rms.var == pytest.approx((0.9 * 0.1 * 10.0 + 0.1 * 100.0) / w - rms.mean**2)


def test_clipped_policy_loss_equals_hand_formula() -> None:
    eps = 0.2
    old = [0.0, 0.0, 0.0, 0.0]
    new = [math.log(1.5), math.log(1.5), math.log(0.5), math.log(1.1)]
    adv = [2.0, -1.0, 3.0, -4.0]
    # ratio 1.5, A>0: min(1.5·2, 1.2·2) = 2.4      ratio 1.5, A<0: min(-1.5, -1.2) = -1.5
    # ratio 0.5, A>0: min(0.5·3, 0.8·3) = 1.5      ratio 1.1 inside: 1.1·-4 = -4.4
    expected = -(2.4 - 1.5 + 1.5 - 4.4) / 4
    loss, kl, clipfrac = ppo_policy_loss(torch.tensor(new), torch.tensor(old), torch.tensor(adv), eps)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert clipfrac.item() == pytest.approx(0.75)
    r = np.array([1.5, 1.5, 0.5, 1.1])
    assert kl.item() == pytest.approx(float(np.mean((r - 1) - np.log(r))), rel=1e-6)


def test_value_loss_plain_and_clipped() -> None:
    pred, old, target = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 2.9]), torch.tensor([2.0, 0.0])
    assert value_loss(pred, old, target, None).item() == pytest.approx(0.5 * (1 + 9) / 2)
    # clipped predictions: 0 + clamp(1, ±0.5) = 0.5 → (0.5-2)² = 2.25 > 1;  2.9 + 0.1 = 3.0 → 9
    assert value_loss(pred, old, target, 0.5).item() == pytest.approx(0.5 * (2.25 + 9) / 2)


# --------------------------------------------------------------------------------------------------
# Learning and seeding on a two-agent coordination game
# --------------------------------------------------------------------------------------------------

PAYOFF = np.array([[1.0, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, 0.3]])  # random play: 0.211 per step


class CoordinationGame:
    """A repeated 3×3 coordination game, 5 steps per episode (terminal), both agents get the payoff."""

    n_agents = 2

    def __init__(self, n_envs: int = 16) -> None:
        self.n_envs = n_envs
        self.t = np.zeros(n_envs, np.int64)

    def _obs(self) -> VecObs:
        obs = [np.zeros((self.n_envs, 1), np.float32), np.ones((self.n_envs, 1), np.float32)]
        return VecObs(obs, (self.t[:, None] / 5.0).astype(np.float32))

    def reset(self, seed: int) -> VecObs:
        self.t[:] = 0
        return self._obs()

    def step(self, actions: np.ndarray) -> VecStep:
        r = PAYOFF[actions[:, 0], actions[:, 1]].astype(np.float32)
        self.t += 1
        done = self.t == 5
        final = (self.t[:, None] / 5.0).astype(np.float32)
        self.t[done] = 0
        o = self._obs()
        return VecStep(o.obs, o.state, np.stack([r, r], 1), done, np.zeros_like(done), final)


class SmallCritic(nn.Module):
    def __init__(self, state_dim: int, n_agents: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_dim, 32), nn.Tanh(), nn.Linear(32, n_agents))

    def value(self, state: Tensor) -> Tensor:
        return self.net(state)


def _train_game(seed: int, total_steps: int) -> tuple[list[dict[str, float]], list[Tensor]]:
    seed_everything(seed)
    actors = [TableActor(3), TableActor(3)]
    critic = SmallCritic(1, 2)
    cfg = MAPPOConfig(total_steps=total_steps, rollout_steps=10, lr_actor=0.05, lr_critic=0.01,
                      update_epochs=4, n_minibatches=2, seed=seed, progress=False)  # fmt: skip
    result = train(CoordinationGame(), actors, critic, cfg)
    params = [p.detach().clone() for m in (*actors, critic) for p in m.parameters()]
    return result.history, params


def test_learns_coordination_game_quickly() -> None:
    history, _ = _train_game(seed=0, total_steps=8000)
    first, last = history[0]["episode_return"], history[-1]["episode_return"]
    assert first < 2.0  # ≈ 5 · 0.21 at the start
    assert last > 4.0  # ≥ 0.8 per step: coordinated, mostly on the best cell
    assert history[-1]["explained_variance"] > 0.5


def test_same_seed_same_run_other_seed_other_run() -> None:
    h1, p1 = _train_game(seed=3, total_steps=1600)
    h2, p2 = _train_game(seed=3, total_steps=1600)
    _, p3 = _train_game(seed=4, total_steps=1600)
    strip = [{k: v for k, v in m.items() if k != "wall_s"} for m in h1]
    assert strip == [{k: v for k, v in m.items() if k != "wall_s"} for m in h2]
    assert all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(p1, p3, strict=True))


# --------------------------------------------------------------------------------------------------
# simple_spread (mpe2)
# --------------------------------------------------------------------------------------------------


def test_mpe_adapter_state_and_auto_reset() -> None:
    pytest.importorskip("mpe2")
    from benchmarks.mpe_harness import MPEVecEnv, greedy_assignment

    env = MPEVecEnv(n_envs=2, max_cycles=3)
    first = env.reset(seed=0)
    assert [o.shape for o in first.obs] == [(2, 18)] * 3 and first.state.shape == (2, 54)
    np.testing.assert_allclose(first.state[0], env.envs[0].state())  # mpe2's own global state
    for t in range(3):
        step = env.step(np.zeros((2, 3), np.int64))
        assert step.truncated.all() == (t == 2) and not step.terminated.any()
    # after the truncation the envs were reset: fresh episodes, final_state differs from state
    assert not np.allclose(step.final_state, step.state)
    assert env.envs[0].agents  # alive again
    assert sorted(greedy_assignment(np.array([[1.0, 0.1, 5], [0.2, 0.05, 5], [1, 1, 1]]))) == [0, 1, 2]


def test_mpe_adapter_steps_exactly_like_parallel_env() -> None:
    """The adapter drives mpe2's raw_env through its AEC API: the same observations, rewards and
    truncations, step for step and across auto-resets, as the public parallel_env."""
    pytest.importorskip("mpe2")
    from benchmarks.mpe_harness import MPEVecEnv, make_env

    env = MPEVecEnv(n_envs=3)
    env.reset(seed=5)
    refs = [make_env() for _ in range(3)]
    agents = list(refs[0].possible_agents)
    for k, ref in enumerate(refs):
        ref.reset(seed=5 + k)
    rng = np.random.default_rng(0)
    for _ in range(60):  # two auto-resets
        actions = rng.integers(5, size=(3, 3))
        step = env.step(actions)
        for k, ref in enumerate(refs):
            obs, rew, _, trunc, _ = ref.step({a: int(actions[k, i]) for i, a in enumerate(agents)})
            np.testing.assert_array_equal(step.final_state[k], np.concatenate([obs[a] for a in agents]))
            np.testing.assert_array_equal(step.rewards[k], np.array([rew[a] for a in agents], np.float32))
            assert step.truncated[k] == any(trunc.values())
            if any(trunc.values()):
                obs = ref.reset()[0]
            np.testing.assert_array_equal(step.state[k], np.concatenate([obs[a] for a in agents]))
            np.testing.assert_array_equal(step.obs[1][k], obs[agents[1]])


def test_mpe_adapter_time_state_makes_the_time_limit_terminal() -> None:
    pytest.importorskip("mpe2")
    from benchmarks.mpe_harness import MPEVecEnv

    env = MPEVecEnv(n_envs=2, max_cycles=3, time_state=True)
    first = env.reset(seed=0)
    assert first.state.shape == (2, 55) and (first.state[:, -1] == 0).all()
    for t in range(3):
        step = env.step(np.zeros((2, 3), np.int64))
        assert step.terminated.all() == (t == 2) and not step.truncated.any()
        np.testing.assert_allclose(step.final_state[:, -1], (t + 1) / 3)
        np.testing.assert_allclose(step.state[:, -1], 0.0 if t == 2 else (t + 1) / 3)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~33 min of training here (docs/mappo.md)
def test_mappo_beats_greedy_heuristic_on_simple_spread() -> None:
    """The algorithm check: the default budget on simple_spread_v3 (N=3) beats the greedy heuristic,
    all policies scored on the same 500 seeded episodes."""
    pytest.importorskip("mpe2")
    from benchmarks.mpe_harness import RandomPolicy, evaluate, greedy_landmark_policy, train_spread

    heuristic = evaluate(greedy_landmark_policy, episodes=500)
    random = evaluate(RandomPolicy(0), episodes=500)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the benchmark: small MLPs gain nothing from threads, which spin under load
    try:
        run = train_spread()
    finally:
        torch.set_num_threads(threads)
    mappo = evaluate(run.policy(deterministic=True), episodes=500)
    print(f"random {random.mean:.2f}  heuristic {heuristic.mean:.2f}  MAPPO {mappo.mean:.2f}")
    assert random.mean < heuristic.mean
    assert mappo.mean > heuristic.mean
