"""Fixtures shared by the test files: the embedded platform the pipeline runs use (tests/test_pipeline.py,
tests/test_monitoring_e2e.py), the tiny pipeline parameters they run with, and a private copy of models/
(tests/test_hyperparameters.py, tests/test_tuning.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marlops.agents.specs import MODELS_DIR_ENV, models_dir

# the smallest pipeline run that still trains, evaluates and registers (the "ci" budget)
TINY_PIPELINE: dict[str, Any] = dict(
    days=10, seed=3, budget="ci", eval_seeds="101", eval_days=8, fit_seeds="1"
)


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Embedded stores in a temporary folder (the tasks are subprocesses: they inherit the environment)."""
    monkeypatch.setenv("MARLOPS_MLFLOW_DIR", str(tmp_path / "mlflow"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MARLOPS_CACHE", os.environ.get("MARLOPS_CACHE", str(tmp_path / "cache")))
    return tmp_path


@pytest.fixture
def pipeline_params(platform: Path) -> Callable[..., dict[str, Any]]:
    """The tiny pipeline's parameters with the platform's folders; keywords add or override."""

    def params(**kw: object) -> dict[str, Any]:
        return {
            **TINY_PIPELINE,
            "feast_dir": str(platform / "feast"),
            "work_dir": str(platform / "work"),
            "state_dir": str(platform / "serving"),
            **kw,
        }

    return params


@pytest.fixture
def models_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of models/ that the code under test reads ($MARLOPS_MODELS_DIR): edit it freely."""
    d = tmp_path / "models"
    shutil.copytree(models_dir(), d)
    monkeypatch.setenv(MODELS_DIR_ENV, str(d))
    return d
