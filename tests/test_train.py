"""The market training loop: the team's environment view, the trained policy, checkpoints, resume after a
killed worker, and the two-process data-parallel run through the real `marlops train` + torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from marlops.agents.specs import load_spec
from marlops.agents.types import RiskAction, TacticalAction
from marlops.env.market_env import EnvConfig, VecMarketEnv, synthetic_market_data
from marlops.training.checkpoint import checkpoints, load_latest, save_checkpoint
from marlops.training.distributed import Dist, torchrun_args
from marlops.training.dqn import DQNConfig
from marlops.training.market import budget_config, load_team, train_team
from marlops.training.regime import balanced_accuracy, regime_samples
from marlops.training.risk import RiskController
from marlops.training.team import (
    STATE_DIM,
    StructureActor,
    TeamModels,
    TeamVecEnv,
    TrainedTeam,
    structure_obs_dim,
    tactical_obs_dim,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data():
    return synthetic_market_data(11, 10)


@pytest.fixture(scope="module")
def models() -> TeamModels:
    from marlops.training.market import _fresh_models

    return _fresh_models(0)


def _risk(models: TeamModels, data) -> RiskController:
    cfg = DQNConfig.from_spec(
        load_spec("risk"),
        learning_starts=8,
        batch_size=8,
        buffer_size=256,
        epsilon_decay_steps=100,
        target_update=5,
    )
    return RiskController(models.risk, cfg, [data], seed=0)


def test_team_env_shapes_and_clocks(data, models) -> None:
    env = VecMarketEnv(data, 3, EnvConfig(episode_bars=48), seed=0)
    team = TeamVecEnv(env, models)
    first = team.reset(seed=1)
    dims = [structure_obs_dim(models.structure), tactical_obs_dim(models.tactical)]
    assert [o.shape for o in first.obs] == [(3, dims[0]), (3, dims[1])]
    # the observations are the cached encodings of the bars the envs stand on (plus messages and flags)
    enc = models.encodings(data)
    np.testing.assert_array_equal(first.obs[1][:, : enc.tactical_h.shape[1]], enc.tactical_h[env.t])
    assert first.state.shape == (3, STATE_DIM)
    assert first.acts is not None and first.acts.all()  # everyone decides at an episode's first step
    assert np.all(first.obs[1][:, -2:] == 1.0)  # the slow agents' messages are present from the start
    structure_decided = 0
    for k in range(60):
        actions = np.stack([np.full(3, 4), np.full(3, int(TacticalAction.ENTER_LONG))], 1)
        st = team.step(actions)
        assert np.isfinite(st.state).all() and np.isfinite(st.rewards).all()
        assert st.acts is not None and st.acts[:, 1].all()
        structure_decided += int(st.acts[:, 0].sum())
        if k == 47:
            assert st.terminated.all()  # 48-bar episodes end together here (same length, same start step)
    # structure decides on its own 30-minute clock: about one step in six, plus each episode's start
    assert 3 * 60 / 6 - 6 <= structure_decided <= 3 * 60 / 6 + 9
    assert (env.position > 0).any()  # the team's entries went through: the risk agent allows in this stage


def test_risk_replay_stores_where_and_rebuilds_the_observation(data, models) -> None:
    """The compact replay (market, bar, 15 values) gives the Q-values of the full 1,875-wide observation."""
    from marlops.training.dqn import flatten_risk_obs, risk_q_fn
    from marlops.training.risk import proposal

    risk = _risk(models, data)
    env = VecMarketEnv(data, 4, EnvConfig(episode_bars=48), seed=0)
    obs = env.reset()
    for _ in range(20):
        prop = proposal(np.full(4, int(TacticalAction.ENTER_LONG)), np.ones(4), np.ones(4))
        where = np.stack([np.zeros(4, np.int64), obs["bar_index"]], 1)
        records = np.concatenate([obs["portfolio"], prop], 1)
        a = risk.act(where, records)
        acts = {"structure": np.full(4, 4), "size": np.ones(4), "tactical": np.zeros(4, np.int64), "risk": a}
        flat = flatten_risk_obs(obs["tactical"], obs["structure"], obs["regime"], obs["portfolio"], prop)
        obs, reward, done, _ = env.step(acts)
        risk.observe(where, records, a, reward, done)
    assert len(risk.replay) == 4 * 19  # stored one step late
    with torch.no_grad():
        compact = risk.learner.q_values([where, records])
        full = risk_q_fn(models.risk, (torch.as_tensor(flat),))
    np.testing.assert_allclose(compact.numpy(), full.numpy(), rtol=1e-5, atol=1e-6)
    stored = risk.replay.sample(8, 1.0)[0]
    assert set(np.unique(stored["action"])) <= {int(x) for x in RiskAction}
    assert risk.train(2)["risk_loss"] >= 0


def test_structure_aux_loss_trains_size_toward_conviction(models) -> None:
    actor = StructureActor(models.structure)
    obs = torch.randn(16, structure_obs_dim(models.structure))
    obs[:, -1] = 1.0
    loss = actor.aux_loss(obs)
    loss.backward()
    assert loss.item() >= 0
    assert models.structure.size_head.weight.grad is not None
    assert models.structure.size_head.weight.grad.abs().sum() > 0
    models.structure.zero_grad()


def test_trained_team_acts_like_serving(data, models) -> None:
    team = TrainedTeam(models)
    env = VecMarketEnv(data, 2, EnvConfig(episode_bars=64), seed=3)
    obs = env.reset()
    team.reset(2)
    for _ in range(20):
        a = team.act(obs)
        assert set(a) >= {"structure", "bias", "size", "tactical", "risk", "regime_pred"}
        assert np.all((a["bias"] >= -1) & (a["bias"] <= 1)) and np.all((a["size"] >= 0) & (a["size"] <= 1))
        assert np.all(np.isin(a["tactical"], [int(t) for t in TacticalAction]))
        obs, *_ = env.step(a)
    # batch-prepared outputs over the whole market give exactly the step-by-step actions
    step_by_step, prepared = TrainedTeam(models), TrainedTeam(models)
    prepared.prepare(data)
    env_a = VecMarketEnv(data, 1, EnvConfig(episode_bars=80), seed=5)
    env_b = VecMarketEnv(data, 1, EnvConfig(episode_bars=80), seed=5)
    oa, ob = env_a.reset(), env_b.reset()
    for _ in range(80):
        a, b = step_by_step.act(oa), prepared.act(ob)
        for key in ("tactical", "risk", "regime_pred", "structure"):
            assert np.array_equal(a[key], b[key]), key
        np.testing.assert_allclose(a["bias"], b["bias"], atol=1e-5)
        np.testing.assert_allclose(a["size"], b["size"], atol=1e-5)
        oa, *_ = env_a.step(a)
        ob, *_ = env_b.step(b)
    ablation = team.without_risk()
    assert ablation.name == "team_no_risk"
    assert np.all(ablation.act(obs)["risk"] == int(RiskAction.ALLOW))


def test_regime_samples_and_balanced_accuracy(data) -> None:
    s = regime_samples(data)
    assert s.x.shape[1:] == (96, 11) and len(s) == len(s.label) == len(s.log_vol)
    assert np.isfinite(s.log_vol).all() and set(np.unique(s.label)) <= {0, 1, 2, 3}
    y = np.array([0, 0, 1, 1, 2, 3])
    assert balanced_accuracy(y, y) == 1.0
    assert balanced_accuracy(y, np.zeros(6, int)) == pytest.approx(0.25)


def test_checkpoints_are_atomic_and_a_truncated_one_is_skipped(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"step": step}, keep=2)
    assert [p.name for p in checkpoints(tmp_path)] == ["ckpt-00000002.pt", "ckpt-00000003.pt"]
    (tmp_path / "ckpt-00000004.pt").write_bytes(b"\x80\x02truncated")  # a crash mid-write of a copy
    step, state = load_latest(tmp_path)  # type: ignore[misc]
    assert (step, state["step"]) == (3, 3)
    assert load_latest(tmp_path / "missing") is None


def test_torchrun_args(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("TORCHELASTIC_RUN_ID", "LOCAL_RANK", "PET_NPROC_PER_NODE", "PET_NNODES"):
        monkeypatch.delenv(k, raising=False)
    assert torchrun_args(1, "marlops.cli", ["train"]) is None
    local = torchrun_args(2, "marlops.cli", ["train"])
    assert local is not None and "--standalone" in local and "--nproc-per-node=2" in local
    assert local[-3:] == ["-m", "marlops.cli", "train"]
    monkeypatch.setenv("PET_NPROC_PER_NODE", "4")  # inside a PyTorchJob: torchrun takes PET_* itself
    pet = torchrun_args(1, "marlops.cli", ["train"])
    assert pet is not None and "--standalone" not in pet
    monkeypatch.setenv("LOCAL_RANK", "0")  # already a worker
    assert torchrun_args(2, "marlops.cli", ["train"]) is None


def test_single_process_dist_is_a_no_op() -> None:
    d = Dist()
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    d.all_reduce_grads([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0)) and d.mean(1.5) == 1.5


def test_budget_config_errors() -> None:
    with pytest.raises(ValueError, match="budget"):
        budget_config("huge")
    assert budget_config("ci", updates=7).team.updates == 7
    assert budget_config("ci", **{"regime.epochs": 3}).regime.epochs == 3
    with pytest.raises(ValueError, match="not a training setting"):
        budget_config("ci", **{"team.nonsense": 1})


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("ci_run")
    return out, train_team(budget_config("ci", updates=2), out, progress=False)


def test_train_ci_budget_writes_agents_and_a_rerun_resumes(ci_run) -> None:
    tmp_path, s = ci_run
    cfg = budget_config("ci", updates=2)
    assert s.updates == 2 and s.resumed_from is None and 0.0 <= s.regime_val_balanced_accuracy <= 1.0
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    team_lines = [x for x in lines if x.get("stage") == "team"]
    assert [x["update"] for x in team_lines] == [1.0, 2.0]
    assert all(np.isfinite(x["value_loss"]) for x in team_lines)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["workers_in_sync"] is True and summary["world_size"] == 1
    policy = load_team(tmp_path)
    assert policy.name == "team"
    # the same folder again: nothing to do, it resumes from the last checkpoint and trains no more
    again = train_team(cfg, tmp_path, progress=False)
    assert again.resumed_from is not None and again.updates == 2
    with pytest.raises(ValueError, match="different configuration"):
        train_team(budget_config("ci", updates=3, seed=5), tmp_path, progress=False)


def _team_updates(metrics: Path) -> list[int]:
    if not metrics.exists():
        return []
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    return [int(r["update"]) for r in rows if r.get("stage") == "team"]


def test_two_workers_killed_mid_run_resume_from_the_last_checkpoint(tmp_path: Path) -> None:
    """`marlops train --nproc 2` (torchrun, gloo): kill one worker mid-run, rerun, lose ≤ K updates."""
    out, k, total = tmp_path / "run", 2, 8
    cmd = [sys.executable, "-m", "marlops.cli", "train", "--budget", "ci", "--nproc", "2", "--out", str(out),
           "--updates", str(total), "--checkpoint-every", str(k)]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while len(_team_updates(out / "metrics.jsonl")) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.2)
        worker = int((out / ".workers" / "rank-1.pid").read_text())
        os.kill(worker, signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0  # torchrun reports the failed worker
    done_before = max(_team_updates(out / "metrics.jsonl"))
    assert done_before < total
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    resumed = [r for r in rows if r.get("event") == "resumed"]
    assert len(resumed) == 1
    after = [r for r in rows[rows.index(resumed[0]) :] if r.get("stage") == "team"]
    first_after = int(after[0]["update"])
    assert done_before - (first_after - 1) <= k  # lost at most K updates
    assert int(after[-1]["update"]) == total
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["workers_in_sync"] is True
    assert summary["updates"] == total


def test_evaluate_cli_writes_the_report_with_every_policy(ci_run, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from marlops.cli import app

    model, _ = ci_run
    out = tmp_path / "eval"
    args = [
        "evaluate",
        "--model",
        str(model),
        "--out",
        str(out),
        "--seeds",
        "31",
        "--days",
        "9",
        "--fit-seeds",
        "32",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    text = json.dumps(report)
    for policy in ("team", "team_no_risk", "buy_and_hold", "random", "momentum", "hmm_momentum", "oracle"):
        assert f'"{policy}"' in text, policy
    assert "team_beats_baselines" in text and (out / "report.html").stat().st_size > 10_000
    assert "goal team_beats_baselines" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "1,x"], "--seeds"),
        (["--seeds", "5", "--fit-seeds", "5"], "must differ"),
        (["--model", "/nonexistent/run"], "no trained agents"),
    ],
)
def test_evaluate_cli_bad_input(ci_run, tmp_path: Path, args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from marlops.cli import app

    model, _ = ci_run
    base = ["evaluate", "--model", str(model), "--out", str(tmp_path), "--days", "9"]
    res = CliRunner().invoke(app, [*base, *args])
    assert res.exit_code == 2
    assert message in res.output
