"""One source of hyperparameters (issue 19): models/<agent>.yaml ``training`` and models/team.yaml are what
the trainer reads, budgets are overlays of them, and no spec field is dead."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from marlops.agents.specs import TRAINING_TYPES, load_spec, training_section
from marlops.training import config as config_module
from marlops.training import dqn, mappo, pretrain, regime, risk, stages
from marlops.training.config import (
    RegimeStageConfig,
    RiskStageConfig,
    TeamStageConfig,
    budget_config,
    budgets,
    default_config,
    parse_hyperparameters,
    parse_settings,
    settings_argv,
    with_overrides,
)
from marlops.training.dqn import DQNConfig
from marlops.training.mappo import MAPPOConfig
from marlops.training.pretrain import PretrainConfig, StructurePretrainConfig

# what the stages hand each agent's trainer, and the class whose fields the trainer reads
SECTION_TYPES = {
    "regime": RegimeStageConfig,
    "structure": StructurePretrainConfig,
    "tactical": PretrainConfig,
    "risk": RiskStageConfig,
}


def _edit(path: Path, section: str | None, key: str, value: Any) -> None:
    data = yaml.safe_load(path.read_text())
    (data[section] if section else data)[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _other(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if value is None:
        return 7
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value > 0 else 0.25
    return value


def trainer_inputs(cfg: Any) -> dict[str, Any]:
    """Exactly what the stages pass to the trainers (training/stages.py)."""
    return {
        "regime": cfg.regime,
        "structure": cfg.structure,
        "tactical": cfg.tactical,
        "team": cfg.team.mappo(seed=cfg.seed),
        "risk": cfg.risk.dqn(),
        "risk_stage": cfg.risk,
    }


def _attributes_read(*modules: Any) -> set[str]:
    """Every attribute name read (``x.name``) in the source of ``modules``."""
    names: set[str] = set()
    for m in modules:
        for node in ast.walk(ast.parse(inspect.getsource(m))):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                names.add(node.attr)
    return names


@pytest.mark.parametrize("agent", list(TRAINING_TYPES))
def test_every_spec_training_field_reaches_the_trainer(agent: str, models_copy: Path) -> None:
    """Editing any field of an agent's ``training`` section changes what its trainer is given (a field the
    config builder drops, or that lands nowhere the stages read, fails here)."""
    before = trainer_inputs(default_config())
    fields = [f for f in TRAINING_TYPES[agent].model_fields if f != "objective"]
    assert fields
    spec_data = yaml.safe_load((models_copy / f"{agent}.yaml").read_text())["training"]
    for name in fields:
        original = spec_data[name]
        _edit(models_copy / f"{agent}.yaml", "training", name, _other(original))
        after = trainer_inputs(default_config())
        changed = [k for k in before if before[k] != after[k]]
        assert changed, f"models/{agent}.yaml training.{name}: edited, but no trainer input changed"
        _edit(models_copy / f"{agent}.yaml", "training", name, original)
    assert trainer_inputs(default_config()) == before


def test_every_config_field_is_read_by_its_trainer() -> None:
    """Each field of the sections the stages hand over is read by the code that trains with it (by
    attribute name, in the modules that consume it): a hyperparameter nobody reads fails here."""
    consumers: dict[type, tuple[Any, ...]] = {
        RegimeStageConfig: (regime, stages),
        PretrainConfig: (pretrain, stages),
        StructurePretrainConfig: (pretrain, stages),
        TeamStageConfig: (config_module, stages),  # .mappo() maps every field onto MAPPOConfig
        RiskStageConfig: (config_module, stages),  # .dqn() maps the DQN fields onto DQNConfig
        MAPPOConfig: (mappo,),
        DQNConfig: (dqn, risk, stages),
    }
    unread = {
        cls.__name__: sorted(f.name for f in dataclasses.fields(cls) if f.name not in _attributes_read(*mods))
        for cls, mods in consumers.items()
    }
    # labels is an input path read by training/market.py (training_data), not by the stage
    unread["RegimeStageConfig"] = [n for n in unread["RegimeStageConfig"] if n != "labels"]
    # RiskStageConfig.dqn() hands its DQN fields to DQNConfig by name (checked right below, and by
    # test_every_spec_training_field_reaches_the_trainer)
    dqn_fields = {f.name for f in dataclasses.fields(DQNConfig)}
    unread["RiskStageConfig"] = [n for n in unread["RiskStageConfig"] if n not in dqn_fields]
    assert not any(unread.values()), unread
    # and the team stage sets every hyperparameter of MAPPOConfig (its own defaults are for other users)
    src = inspect.getsource(TeamStageConfig.mappo)
    set_here = {
        kw.arg
        for node in ast.walk(ast.parse(src.strip()))
        if isinstance(node, ast.Call)
        for kw in node.keywords
    }
    assert {f.name for f in dataclasses.fields(MAPPOConfig)} - set_here == {"act_every"}


def test_editing_a_yaml_value_changes_what_the_trainer_uses(models_copy: Path) -> None:
    _edit(models_copy / "tactical.yaml", "training", "lr", 1.25e-4)
    _edit(models_copy / "team.yaml", "team", "vf_coef", 0.5)
    _edit(models_copy / "risk.yaml", "training", "per_alpha", 0.3)
    cfg = budget_config("ci")
    assert cfg.tactical.lr == 1.25e-4
    assert cfg.team.mappo(seed=0).vf_coef == 0.5
    assert cfg.risk.dqn().per_alpha == 0.3
    assert cfg.key()["team"]["vf_coef"] == 0.5  # what summary.json and the MLflow params record


def test_a_key_in_two_places_or_unknown_or_missing_is_an_error(models_copy: Path) -> None:
    _edit(models_copy / "team.yaml", "risk", "batch_size", 64)  # risk.yaml's training has it
    with pytest.raises(ValueError, match=r"risk.batch_size: set in both"):
        default_config()
    _edit(models_copy / "team.yaml", "risk", "batch_size", None)
    data = yaml.safe_load((models_copy / "team.yaml").read_text())
    del data["risk"]["batch_size"]
    data["team"]["vf_coeff"] = 1.0
    (models_copy / "team.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="vf_coeff"):
        default_config()
    del data["team"]["vf_coeff"], data["team"]["vf_coef"]
    (models_copy / "team.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"missing.*vf_coef"):
        default_config()


def test_budgets_are_overlays_of_the_one_config() -> None:
    base = default_config().key()
    for name, overlay in budgets().items():
        cfg = budget_config(name).key()
        for dotted, value in overlay.items():
            section, _, leaf = dotted.partition(".")
            got = cfg[section][leaf] if leaf else cfg[section]
            assert got == (tuple(value) if isinstance(value, list) else value), (name, dotted)
        untouched = {k for k in base if k not in {d.partition(".")[0] for d in overlay}}
        assert {k: cfg[k] for k in untouched} == {k: base[k] for k in untouched}
    assert budget_config("ci").train_seeds == (11,)  # YAML lists become the config's tuples


def test_today_values_are_kept() -> None:
    """Where two places disagreed, the value that trained teams before issue 19 is the one kept."""
    cfg = default_config()
    team = cfg.team.mappo(seed=0)
    assert (team.vf_coef, team.max_grad_norm, team.gae_lambda, team.lr_critic) == (1.0, 0.5, 0.95, 3 * 1e-4)
    assert cfg.regime.lr == 1e-3 and cfg.regime.epochs == 4 and cfg.regime.batch_size == 256
    d = cfg.risk.dqn()
    assert (d.batch_size, d.learning_starts, d.target_update, d.train_every, d.n_step) == (
        128,
        4096,
        500,
        1,
        1,
    )
    assert (cfg.structure.epochs, cfg.tactical.epochs, cfg.tactical.max_samples) == (2, 1, 60_000)


def test_saved_agents_with_a_legacy_training_section_still_load() -> None:
    from marlops.agents.specs import LegacyPPOTraining, SpecError, parse_spec, spec_to_dict

    data = spec_to_dict(load_spec("structure"))
    data["training"] = {
        "objective": "ppo", "lr": 3e-4, "gamma": 0.99, "gae_lambda": 0.95, "clip_eps": 0.2,
        "value_clip_eps": 0.2, "entropy_coef": 0.01, "value_coef": 0.5, "max_grad_norm": 0.5,
        "ppo_epochs": 4, "minibatch_size": 256, "rollout_steps": 128, "value_normalization": True,
    }  # fmt: skip
    spec = parse_spec("structure", data)
    assert isinstance(spec.training, LegacyPPOTraining)
    assert spec_to_dict(spec) == data  # the saved agent's version id hashes exactly this
    with pytest.raises(SpecError, match="legacy"):
        training_section(spec)


# ------------------------------------------------------------------- settings given on a command line


def test_settings_round_trip_through_the_command_line() -> None:
    values = {"team.lr": 1.2345678901234e-4, "team.anneal_lr": True, "regime.epochs": 3, "risk.gamma": 0.97}
    argv = settings_argv(values)
    assert argv[::2] == ["--set"] * len(values)
    assert parse_settings(argv[1::2]) == values  # full float precision, booleans stay booleans
    assert parse_settings(["team.lr=1e-4"]) == {"team.lr": 1e-4}  # YAML 1.1 reads 1e-4 as a string
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        parse_settings(["team.lr"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"team.lrr": 1e-4}, "team.lrr: not a training setting"),
        ({"team.lr": "fast"}, "team.lr: expected float, got 'fast'"),
        ({"team.lr": float("inf")}, "team.lr: inf is not a finite number"),
        ({"team.updates": 2.5}, "team.updates: expected int, got 2.5"),
        ({"team.anneal_lr": 1}, "team.anneal_lr: expected bool, got 1"),
        ({"regime.epochs": True}, "regime.epochs: expected int, got True"),
    ],
)
def test_a_bad_setting_is_refused_by_name(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        with_overrides(budget_config("ci"), overrides)


def test_a_setting_takes_its_own_type() -> None:
    cfg = with_overrides(budget_config("ci"), {"team.lr": 1, "team.updates": 4.0})
    assert cfg.team.lr == 1.0 and isinstance(cfg.team.lr, float)
    assert cfg.team.updates == 4 and isinstance(cfg.team.updates, int)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "hyperparameters: not JSON"),
        ("[1, 2]", "expected a JSON object of settings, got list"),
        ('{"team.lr": [1]}', "team.lr: expected a number, a boolean or a string"),
        ('{"team.lr": NaN}', "team.lr: nan is not a finite number"),
    ],
)
def test_the_pipelines_hyperparameters_parameter_is_checked(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hyperparameters(text)
    assert parse_hyperparameters("") == parse_hyperparameters("{}") == {}
    assert parse_hyperparameters('{"team.lr": 0.0002}') == {"team.lr": 2e-4}


def test_marlops_train_set_reaches_the_trainer_and_bad_ones_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import marlops.training.market as market
    from marlops.cli import app

    seen: dict[str, Any] = {}

    def fake_train_team(cfg: Any, out: Path, progress: bool = True) -> Any:
        seen["cfg"] = cfg
        raise SystemExit(0)  # the configuration is what this test is about

    monkeypatch.setattr(market, "train_team", fake_train_team)
    argv = ["train", "--budget", "ci", "--out", str(tmp_path / "run"), "--set", "team.lr=2e-4"]
    r = CliRunner().invoke(
        app, [*argv, "--set", "risk.gamma=0.97", "--set", "team.updates=9", "--updates", "5"]
    )
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.team.lr, cfg.risk.gamma) == (2e-4, 0.97)
    assert cfg.team.updates == 5  # the option wins over a --set of the same setting
    r = CliRunner().invoke(app, [*argv, "--set", "team.nosuch=1"])
    assert r.exit_code == 2 and "team.nosuch: not a training setting" in r.output
    r = CliRunner().invoke(app, [*argv, "--set", "risk.gamma=high"])
    assert r.exit_code == 2 and "risk.gamma: expected float, got 'high'" in r.output
