"""The supervised stages: targets from what the market reveals, the structure bandit, the tactical executor,
cached encodings equal to the networks' own forward passes, and the warm start from a registered team."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from marlops.agents.types import STRUCTURE_BIAS_LEVELS, TacticalAction
from marlops.env.market_env import synthetic_market_data
from marlops.training.config import default_config
from marlops.training.encodings import encode_market, structure_outputs
from marlops.training.pretrain import (
    StructurePretrainer,
    StructureSamples,
    TacticalPretrainer,
    executor_actions,
    structure_samples,
    tactical_samples,
)
from marlops.training.targets import Z_CLIP, forward_z, level_utility, slow_decision_bars


@pytest.fixture(scope="module")
def data():
    return synthetic_market_data(21, 10)


@pytest.fixture()
def models():
    from marlops.training.market import _fresh_models

    return _fresh_models(0)


def test_forward_z_is_the_scaled_forward_log_return(data) -> None:
    at = slow_decision_bars(data, 12)
    z = forward_z(data, at, 12)
    k = len(at) // 2
    t = at[k]
    expected = np.log(data.close[t + 12] / data.close[t]) / (data.sigma[t] * np.sqrt(12))
    assert z[k] == pytest.approx(float(np.clip(expected, -Z_CLIP, Z_CLIP)), rel=1e-5)
    assert np.isfinite(z).all() and np.abs(z).max() <= Z_CLIP
    assert (at + 12 < len(data)).all() and (at >= data.warm_from).all()
    with pytest.raises(ValueError, match="at"):
        forward_z(data, np.array([len(data) - 3]), 12)
    with pytest.raises(ValueError, match="horizon"):
        forward_z(data, at, 0)


def test_level_utility_prefers_the_side_of_the_move_and_flat_for_noise() -> None:
    u = level_utility(np.array([2.0, -2.0, 0.0]), cost=0.05, risk_aversion=0.2)
    levels = np.asarray(STRUCTURE_BIAS_LEVELS)
    assert levels[u[0].argmax()] == 1.0 and levels[u[1].argmax()] == -1.0 and levels[u[2].argmax()] == 0.0
    assert u[2, levels.tolist().index(0.0)] == 0.0  # flat earns nothing and costs nothing


def test_structure_pretraining_moves_the_policy_to_the_level_of_highest_expected_utility(models) -> None:
    # A learnable toy: the matrix's first column says where the market goes next (z = ±1.5 with noise).
    rng = np.random.default_rng(0)
    n = 512
    sign = rng.choice([-1.0, 1.0], n)
    x = rng.normal(0, 1, (n, 48, 8)).astype(np.float32)
    x[:, -12:, 0] = sign[:, None] * 2.0
    z = (1.5 * sign + rng.normal(0, 0.5, n)).astype(np.float32)
    samples = StructureSamples(x, np.zeros((n, 64), np.float32), level_utility(z, 0.05, 0.2))
    cfg = replace(default_config().structure, epochs=1, batch_size=64, lr=1e-3)
    trainer = StructurePretrainer(models.structure, samples, cfg, seed=0)
    first = trainer.epoch()
    for _ in range(3):
        last = trainer.epoch()
    assert last["structure_utility"] > first["structure_utility"] + 0.3
    with torch.no_grad():
        out = models.structure(
            torch.as_tensor(x[:64]), torch.zeros(64, 1, 64), torch.ones(64, 1, dtype=torch.bool)
        )
    chosen = np.asarray(STRUCTURE_BIAS_LEVELS)[out.logits.argmax(-1).numpy()]
    assert np.mean(np.sign(chosen) == sign[:64]) > 0.9
    # the size head follows the policy's conviction
    assert float(out.size.mean()) > 0.5


def test_executor_actions_follow_the_most_likely_level() -> None:
    probs = np.eye(5)[[0, 1, 2, 3, 4]]
    assert executor_actions(probs).tolist() == [
        TacticalAction.ENTER_SHORT,
        TacticalAction.ENTER_SHORT,
        TacticalAction.EXIT_POSITION,
        TacticalAction.ENTER_LONG,
        TacticalAction.ENTER_LONG,
    ]


def test_tactical_samples_carry_structures_decision_and_its_message(data, models) -> None:
    enc = models.encodings(data)
    samples = tactical_samples([(data, enc.regime.message, enc.structure_h)], models.structure)
    st = structure_outputs(models.structure, enc.structure_h, enc.regime.message)
    h = data.higher_of[samples.t]
    assert (samples.t >= data.warm_from).all() and len(samples) == len(data) - data.warm_from
    np.testing.assert_array_equal(samples.target, executor_actions(st.probs)[h])
    np.testing.assert_allclose(samples.msgs[:, 1], st.message[h])
    np.testing.assert_array_equal(samples.matrices(np.arange(3)), data.tactical[samples.t[:3]])
    trainer = TacticalPretrainer(
        models.tactical, samples, replace(default_config().tactical, epochs=1, max_samples=64, batch_size=32)
    )
    m = trainer.epoch()
    assert np.isfinite(m["tactical_loss"]) and trainer.epochs_done == 1


def test_structure_samples_need_room_for_the_horizon(data, models) -> None:
    msg = models.encodings(data).regime.message
    s = structure_samples([(data, msg)], replace(default_config().structure, horizon_bars=36))
    assert s.x.shape[1:] == (48, 8) and s.utility.shape[1] == 5 and len(s) > 100
    with pytest.raises(ValueError, match="forward horizon"):
        structure_samples([(data, msg)], replace(default_config().structure, horizon_bars=len(data)))


def test_cached_encodings_give_the_networks_own_outputs(data, models) -> None:
    enc = encode_market(models.regime, models.structure, models.tactical, data)
    t = np.array([data.warm_from, data.warm_from + 7, len(data) - 1])
    h = data.higher_of[t]
    with torch.no_grad():
        reg = models.regime(torch.as_tensor(data.regime[h]))
        st = models.structure(
            torch.as_tensor(data.structure[h]), reg.message[:, None], torch.ones(3, 1, dtype=torch.bool)
        )
        msgs = torch.stack([reg.message, st.message], 1)
        tac = models.tactical(torch.as_tensor(data.tactical[t]), msgs, torch.ones(3, 2, dtype=torch.bool))
        tac_cached = models.tactical.head(
            torch.as_tensor(enc.tactical_h[t]), msgs, torch.ones(3, 2, dtype=torch.bool)
        )
    np.testing.assert_allclose(enc.regime.probs[h], torch.softmax(reg.logits, -1).numpy(), atol=1e-5)
    says = structure_outputs(models.structure, enc.structure_h[h], enc.regime.message[h])
    np.testing.assert_allclose(says.message, st.message.numpy(), atol=1e-5)
    np.testing.assert_allclose(tac_cached.logits.numpy(), tac.logits.numpy(), atol=1e-5)


def test_no_op_actions_are_those_that_change_nothing() -> None:
    from marlops.agents.types import RiskAction
    from marlops.training.risk import RECORD_DIM, no_op_mask, proposal

    pf = np.zeros((3, RECORD_DIM - 7), np.float32)
    pf[1, 0] = 0.5  # long
    prop = proposal(
        np.array([TacticalAction.ENTER_LONG, TacticalAction.HOLD, TacticalAction.ENTER_SHORT]),
        np.zeros(3),
        np.ones(3),
    )
    mask = no_op_mask(np.concatenate([pf, prop], 1))
    assert not mask[:, RiskAction.ALLOW].any()
    assert mask[:, RiskAction.BLOCK_ENTRY].tolist() == [False, True, False]  # no entry: block changes nothing
    assert mask[:, RiskAction.MODIFY_SIZE].tolist() == [False, True, False]
    assert mask[:, RiskAction.FORCE_EXIT].tolist() == [True, False, True]  # flat: nothing to exit


def test_the_risk_margin_is_chosen_by_playing_every_candidate(data, models) -> None:
    from marlops.training.risk_calibration import NEVER, add_allow_margin, choose_allow_margin
    from marlops.training.team import TrainedTeam

    choice = choose_allow_margin(models, [data], noise=0.01, episode_bars=96, episodes_per_market=2, seed=3)
    assert set(choice.scores) == {0.0, 0.01, 0.02, 0.04, 0.08, NEVER}
    assert choice.margin in choice.scores
    never = choice.scores[NEVER]
    chosen = choice.scores[choice.margin]
    if choice.margin != NEVER:  # it earned its interventions: less drawdown at a bounded return cost
        assert chosen["max_drawdown"] <= 0.9 * never["max_drawdown"]
        assert chosen["utility"] == max(s["utility"] for s in choice.scores.values() if s is not never)
    assert never["interventions_per_step"] == 0.0
    assert choice.scores[0.0]["interventions_per_step"] > 0.0  # an untrained agent intervenes all the time
    again = choose_allow_margin(models, [data], noise=0.01, episode_bars=96, episodes_per_market=2, seed=3)
    assert again.scores == choice.scores  # deterministic
    # "never" in the network's bias: the team with its risk agent acts exactly as its no-risk ablation
    add_allow_margin(models, NEVER)
    from marlops.evaluation.runner import run_policies

    team = TrainedTeam(models)
    recs = run_policies(data, {"team": team, "ablation": team.without_risk()})
    np.testing.assert_array_equal(recs["team"].equity, recs["ablation"].equity)
    with pytest.raises(ValueError, match="margin"):
        add_allow_margin(models, float("inf"))


def test_an_intervention_margin_must_earn_its_interventions() -> None:
    from marlops.training.risk_calibration import NEVER, pick_margin

    def fig(ret: float, mdd: float) -> dict[str, float]:
        return {"return": ret, "max_drawdown": mdd, "utility": ret - 2 * mdd}

    never = fig(0.05, 0.02)
    # cuts drawdown 25 % for 10 % of the return: earns it (and beats the one that costs too much return)
    scores = {0.0: fig(0.03, 0.010), 0.1: fig(0.045, 0.015), NEVER: never}
    assert pick_margin(scores) == 0.1
    # a better utility from a 5 % drawdown cut is noise on a validation market: never intervene
    assert pick_margin({0.1: fig(0.06, 0.019), NEVER: never}) == NEVER
    assert pick_margin({0.1: fig(0.06, 0.019)}) == NEVER  # nothing to compare with
