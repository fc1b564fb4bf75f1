"""Double-DQN learner: config from the risk spec, targets vs the hand formula, weighted Huber loss, target
network updates (hard and Polyak), a 5-state chain solved to Q*, and one real RiskNet update step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from marlops.agents.networks import build_network
from marlops.agents.specs import load_spec
from marlops.market.matrices import REGIME, STRUCTURE, TACTICAL
from marlops.training.dqn import (
    RISK_OBS_DIM,
    DQNConfig,
    DQNLearner,
    flatten_risk_obs,
    risk_q_fn,
    risk_replay_fields,
    split_risk_obs,
)
from marlops.training.replay import PrioritizedReplay


def params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------------------------------ config


def test_config_from_the_risk_spec() -> None:
    training = load_spec("risk").training
    cfg = DQNConfig.from_spec(load_spec("risk"))
    for name in ("lr", "gamma", "n_step", "batch_size", "target_update", "huber_delta", "max_grad_norm"):
        assert getattr(cfg, name) == getattr(training, name)
    assert (cfg.per_alpha, cfg.per_beta_start, cfg.per_beta_end) == (
        training.per_alpha,
        training.per_beta_start,
        training.per_beta_end,
    )
    assert cfg.target_tau is None  # not in the spec: hard updates
    assert DQNConfig.from_spec(training, lr=1e-3).lr == 1e-3
    assert cfg.beta(0) == training.per_beta_start
    assert cfg.beta(training.per_beta_steps // 2) == pytest.approx(
        (training.per_beta_start + training.per_beta_end) / 2
    )
    assert cfg.beta(10 * training.per_beta_steps) == training.per_beta_end
    assert cfg.epsilon(0) == training.epsilon_start
    assert cfg.epsilon(10**9) == training.epsilon_end
    with pytest.raises(TypeError, match="nope"):
        DQNConfig.from_spec(training, nope=1)
    with pytest.raises(ValueError, match="dqn"):
        DQNConfig.from_spec(load_spec("regime"))
    with pytest.raises(ValueError, match="target_tau"):
        DQNConfig.from_spec(training, target_tau=1.5)


# ------------------------------------------------------------------------------------- targets and loss


# the values these tests were written against (DQNConfig's defaults before models/risk.yaml became its one
# source): the risk spec's other fields are the same
_FORMER_DEFAULTS: dict[str, Any] = {
    "batch_size": 256,
    "learning_starts": 5_000,
    "train_every": 4,
    "target_update": 2_000,
    "epsilon_decay_steps": 50_000,
}


def linear_learner(double: bool, **overrides: object) -> DQNLearner:
    """Q(s) = W s on one-hot states: column i of W is Q(state i)."""
    net = nn.Linear(2, 2, bias=False)
    cfg = DQNConfig.from_spec(
        load_spec("risk"),
        **{**_FORMER_DEFAULTS, **dict(double_dqn=double, gamma=0.5, n_step=2, lr=0.1), **overrides},
    )  # type: ignore[arg-type]
    learner = DQNLearner(net, cfg)
    with torch.no_grad():
        learner.online.weight.copy_(
            torch.tensor([[1.0, 4.0], [3.0, 0.0]])
        )  # Q_online(s'0)=[1,3], (s'1)=[4,0]
        learner.target.weight.copy_(
            torch.tensor([[5.0, 7.0], [2.0, -1.0]])
        )  # Q_target(s'0)=[5,2], (s'1)=[7,-1]
    return learner


EYE = np.eye(2, dtype=np.float32)
BATCH = {
    "obs": EYE,
    "action": np.array([1, 0]),
    "reward": np.array([0.5, 2.0], np.float32),
    "next_obs": EYE,
    "done": np.array([0.0, 0.0], np.float32),
    "discount": np.array([0.9, 0.81], np.float32),
}


def test_double_dqn_target_matches_the_hand_formula() -> None:
    # Online argmax: s'0 → action 1, s'1 → action 0; the target net values them: 2 and 7.
    y = linear_learner(double=True).td_targets(BATCH)
    torch.testing.assert_close(y, torch.tensor([0.5 + 0.9 * 2.0, 2.0 + 0.81 * 7.0]))
    # Vanilla DQN takes the target net's own max: 5 and 7.
    y = linear_learner(double=False).td_targets(BATCH)
    torch.testing.assert_close(y, torch.tensor([0.5 + 0.9 * 5.0, 2.0 + 0.81 * 7.0]))
    # A terminal transition does not bootstrap; without a discount field it is γ^n_step = 0.25.
    batch = {**BATCH, "done": np.array([0.0, 1.0], np.float32)}
    del batch["discount"]
    y = linear_learner(double=True).td_targets(batch)
    torch.testing.assert_close(y, torch.tensor([0.5 + 0.25 * 2.0, 2.0]))


def test_update_is_the_importance_weighted_huber_loss() -> None:
    learner = linear_learner(double=True, huber_delta=1.0)
    y = torch.tensor([0.5 + 0.9 * 2.0, 2.0 + 0.81 * 7.0])
    q_sa = torch.tensor([3.0, 4.0])  # Q_online(s0)[1], Q_online(s1)[0]; |δ| = 0.7 (quadratic), 3.67 (linear)
    w = np.array([0.25, 1.0], np.float32)
    expected = (torch.from_numpy(w) * F.huber_loss(q_sa, y, reduction="none", delta=1.0)).mean()
    result = learner.update(BATCH, w)
    assert result.metrics["loss"] == pytest.approx(float(expected))
    np.testing.assert_allclose(result.td_errors, (y - q_sa).numpy(), rtol=1e-6)
    assert result.metrics["td_abs_mean"] == pytest.approx(float((y - q_sa).abs().mean()))
    assert result.metrics["q_mean"] == pytest.approx(3.5)
    assert result.metrics["beta"] == learner.config.per_beta_start
    assert learner.steps == 1
    # Zero importance weights: no gradient, so Adam leaves the weights exactly where they were.
    learner = linear_learner(double=True)
    before = params(learner.online)
    learner.update(BATCH, np.zeros(2, np.float32))
    assert same(before, params(learner.online))


def test_polyak_target_update() -> None:
    learner = linear_learner(double=True, target_tau=0.25)
    old_target = learner.target.weight.detach().clone()
    learner.update(BATCH)
    torch.testing.assert_close(
        learner.target.weight, 0.75 * old_target + 0.25 * learner.online.weight.detach()
    )


def test_checkpoint_round_trip() -> None:
    a = linear_learner(double=True)
    a.update(BATCH)
    b = linear_learner(double=True)
    b.load_state_dict(a.state_dict())
    assert (
        b.steps == 1 and same(params(a.online), params(b.online)) and same(params(a.target), params(b.target))
    )
    ra, rb = a.update(BATCH), b.update(BATCH)  # Adam's moments came along too
    np.testing.assert_array_equal(ra.td_errors, rb.td_errors)
    assert same(params(a.online), params(b.online))


# ------------------------------------------------------------------------------------------ a small MDP


N_STATES = 5  # 0..3 playable, 4 terminal; action 1 moves right, action 0 moves left (0 stays at 0)
GAMMA = 0.9


def chain_q_star() -> np.ndarray:
    right = np.array([GAMMA ** (3 - s) for s in range(4)])  # reaching state 4 pays 1 and ends
    left = np.array([GAMMA * right[max(s - 1, 0)] for s in range(4)])
    return np.stack([left, right], axis=1)


@pytest.fixture
def one_thread() -> Iterator[None]:
    # Tiny nets gain nothing from intra-op threads, and on a busy 2-core box OpenMP's spin-waiting
    # workers made this test ~8x slower (65 s instead of 8 s).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.usefixtures("one_thread")
def test_learner_solves_a_chain_mdp() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Linear(N_STATES, 32), nn.ReLU(), nn.Linear(32, 2))
    cfg = DQNConfig.from_spec(
        load_spec("risk"),
        **_FORMER_DEFAULTS
        | dict(
            lr=3e-3,
            gamma=GAMMA,
            batch_size=64,
            buffer_size=5_000,
            target_update=25,
            per_beta_steps=600,
            epsilon_decay_steps=300,
            epsilon_end=0.1,
        ),
    )
    learner = DQNLearner(net, cfg)
    replay = cfg.make_replay(
        {
            "obs": ((N_STATES,), np.float32),
            "action": ((), np.int64),
            "reward": ((), np.float32),
            "next_obs": ((N_STATES,), np.float32),
            "done": ((), np.float32),
            "discount": ((), np.float32),
        },
        rng=rng,
    )
    eye = np.eye(N_STATES, dtype=np.float32)
    n_envs, max_len = 16, 12
    state = np.zeros(n_envs, dtype=np.int64)
    age = np.zeros(n_envs, dtype=np.int64)
    for t in range(600):
        action = learner.act((eye[state],), cfg.epsilon(t), rng)
        nxt = np.where(action == 1, state + 1, np.maximum(state - 1, 0))
        done = nxt == N_STATES - 1
        replay.add_batch(
            {
                "obs": eye[state],
                "action": action,
                "reward": done.astype(np.float32),
                "next_obs": eye[nxt],
                "done": done.astype(np.float32),
                "discount": np.full(n_envs, GAMMA, np.float32),
            }
        )
        age += 1
        # Time-limit truncation resets without a terminal flag, so those transitions still bootstrap.
        reset = done | (age >= max_len)
        state = np.where(reset, 0, nxt)
        age[reset] = 0
        metrics = learner.train_step(replay)
    assert metrics["beta"] == pytest.approx(cfg.beta(599))
    q = learner.q_values((eye[:4],)).numpy()
    np.testing.assert_allclose(q, chain_q_star(), atol=0.02)
    assert np.all(q.argmax(axis=1) == 1)
    assert replay.priorities().max() <= replay.max_priority


# -------------------------------------------------------------------------------------- the real RiskNet


def test_risk_obs_split_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    parts = [
        torch.randn(3, *s, generator=g) for s in (TACTICAL.shape, STRUCTURE.shape, REGIME.shape, (8,), (7,))
    ]
    flat = flatten_risk_obs(*(p.numpy() for p in parts))
    assert flat.shape == (3, RISK_OBS_DIM) == (3, 1875)
    for a, b in zip(split_risk_obs(torch.from_numpy(flat)), parts, strict=True):
        torch.testing.assert_close(a, b)
    net = build_network(load_spec("risk"), seed=0)
    torch.testing.assert_close(risk_q_fn(net, (torch.from_numpy(flat),)), net(*parts))


def test_one_update_on_a_real_risk_net() -> None:
    spec = load_spec("risk")
    net = build_network(spec, seed=0)
    cfg = DQNConfig.from_spec(spec, batch_size=16, buffer_size=64, target_update=3)
    learner = DQNLearner(net, cfg, q_fn=risk_q_fn)
    initial = params(learner.online)
    rng = np.random.default_rng(0)
    replay = cfg.make_replay(risk_replay_fields(), rng=rng)
    n = 48
    replay.add_batch(
        {
            "obs": rng.standard_normal((n, RISK_OBS_DIM), dtype=np.float32),
            "action": rng.integers(0, 4, n),
            "reward": rng.standard_normal(n, dtype=np.float32),
            "next_obs": rng.standard_normal((n, RISK_OBS_DIM), dtype=np.float32),
            "done": (rng.random(n) < 0.1).astype(np.float32),
            "discount": np.full(n, cfg.gamma**cfg.n_step, np.float32),
        }
    )
    metrics = learner.train_step(replay)
    assert set(metrics) >= {"loss", "td_abs_mean", "q_mean", "beta"}
    assert all(np.isfinite(v) for v in metrics.values())
    assert not same(initial, params(learner.online))  # the online net moved ...
    assert same(initial, params(learner.target))  # ... the target did not
    assert not np.allclose(replay.priorities(), 1.0)  # sampled transitions got their TD priorities
    learner.train_step(replay)
    assert same(initial, params(learner.target))
    learner.train_step(replay)  # step 3 = target_update: hard copy
    assert same(params(learner.online), params(learner.target))
    actions = learner.act((replay.data["obs"][:5],), epsilon=0.0, rng=rng)
    assert actions.shape == (5,) and actions.dtype == np.int64 and np.all((actions >= 0) & (actions < 4))


def test_learner_takes_risk_inputs_as_separate_fields() -> None:
    # The other storage layout: one replay field per RiskNet input, default q_fn = net(*obs).
    keys = ("tactical", "structure", "regime", "portfolio", "proposal")
    shapes = (TACTICAL.shape, STRUCTURE.shape, REGIME.shape, (8,), (7,))
    fields = {k: (s, np.float32) for k, s in zip(keys, shapes, strict=True)}
    fields |= {"next_" + k: v for k, v in fields.items()}
    fields |= {"action": ((), np.int64), "reward": ((), np.float32), "done": ((), np.float32)}
    replay = PrioritizedReplay(32, fields, rng=0)
    rng = np.random.default_rng(1)
    replay.add_batch(
        {
            k: (rng.standard_normal((8, *s)).astype(np.float32) if s else np.zeros(8, dt))
            for k, (s, dt) in fields.items()
        }
    )
    spec = load_spec("risk")
    learner = DQNLearner(build_network(spec, seed=0), DQNConfig.from_spec(spec, batch_size=8), obs_keys=keys)
    metrics = learner.train_step(replay)
    assert np.isfinite(metrics["loss"])
