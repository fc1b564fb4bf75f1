"""The package functions the thin commands call: ``import_dataset`` (``data import``), ``run_training``
(``train``) and ``evaluate_team`` (``evaluate``), without the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from marlops.cli import app
from marlops.market.feed import FeedConfig
from marlops.market.importer import ImportSettingError, import_dataset, instrument_meta


def test_import_settings_name_their_option(tmp_path: Path) -> None:
    src = tmp_path / "t.csv"
    src.write_text("ts,price,size\n2025-01-01T00:00:00Z,1.0,1\n")
    with pytest.raises(ImportSettingError, match="must be 'ticks' or 'bars'") as e:
        import_dataset(src, tmp_path / "d", FeedConfig(), kind="quotes")
    assert e.value.option == "--kind"
    with pytest.raises(ImportSettingError) as e:
        import_dataset(src, tmp_path / "d", FeedConfig(), instrument={"volume_multiplier": 0.0})
    assert e.value.option == "--volume-multiplier" and "finite and > 0" in str(e.value)
    assert instrument_meta(tick_size=0.5, spread_bps=0.0) == {"tick_size": 0.5, "spread_bps": 0.0}
    assert not (tmp_path / "d").exists()
    res = CliRunner().invoke(
        app, ["data", "import", str(src), "--kind", "quotes", "--out", str(tmp_path / "d")]
    )
    assert res.exit_code == 2 and "--kind" in res.output and "must be 'ticks' or 'bars'" in res.output


def test_run_training_checks_first_then_clears_on_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import marlops.training.market as market
    from marlops.training.command import TrainArgs, run_training

    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "metrics.jsonl").write_text("{}\n")
    for var in ("PET_NNODES", "PET_NPROC_PER_NODE", "TORCHELASTIC_RUN_ID", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    bad = TrainArgs(out=str(out), budget="ci", dataset=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="is not a dataset folder"):
        run_training(bad, fresh=True)
    assert (out / "checkpoints").exists(), "a refused run clears nothing"

    seen = {}

    def fake_train_team(cfg, run_dir):  # type: ignore[no-untyped-def]
        seen.update(cfg=cfg, checkpoints=(run_dir / "checkpoints").exists())
        return market.TrainSummary(run_dir, None, 0.5, 1, 10, 0.1)

    monkeypatch.setattr(market, "train_team", fake_train_team)
    done = run_training(TrainArgs(out=str(out), budget="ci", updates=2, seed=3), fresh=True)
    assert done.launched is None and done.summary is not None and done.summary.updates == 1
    assert seen["cfg"].seed == 3 and not seen["checkpoints"] and not (out / "metrics.jsonl").exists()
    assert done.config is seen["cfg"]


def test_evaluate_team_names_the_option_at_fault(tmp_path: Path) -> None:
    from marlops.evaluation.held_out import EvaluationInputError, evaluate_team

    with pytest.raises(EvaluationInputError, match=r"^model .*no trained agents there"):
        evaluate_team(tmp_path / "none", tmp_path / "eval", [101], [1], 8.0)
