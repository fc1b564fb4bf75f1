"""Hyperparameter studies in MLflow (``marlops tune``, docs/tuning.md): one parent run per study, one nested
run per trial with its parameters (dotted config names), its intermediate validation figures (at their team
update) and its final figures. MLflow is imported here only (the import-linter contract)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marlops.registry.config import TrackingConfig, activate, ensure_experiment, resolve_tracking
from marlops.registry.tracking import _json, _log_metrics

STUDY_TAG = "marlops.study"
TRIAL_TAG = "marlops.trial"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag
_MAX_PARAM = 6000


class StudyRuns:
    """The MLflow side of one study: the parent run is found again by its tag (a resumed study continues
    it), a trial's run likewise (a trial rerun after a crash logs into its own run)."""

    def __init__(
        self,
        study: str,
        experiment: str = "marlops-tuning",
        config: TrackingConfig | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config or resolve_tracking()
        self.client = activate(self.config)
        self.experiment_id = ensure_experiment(self.client, experiment, self.config)
        self.study = study
        found = self._find({STUDY_TAG: study}, parent=True)
        if found is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=f"study {study}",
                tags={STUDY_TAG: study, "mlflow.source.name": "marlops tune", "mlflow.source.type": "JOB"},
            )
            found = run.info.run_id
            if params:
                self.log_params(found, params)
        self.parent_id = found

    def _find(self, tags: Mapping[str, str], parent: bool = False) -> str | None:
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], where, max_results=50)
        for r in runs:
            if parent == (TRIAL_TAG not in r.data.tags):
                return str(r.info.run_id)
        return None

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(run_id).data.params
        items = [Param(k, _json(v)[:_MAX_PARAM]) for k, v in params.items() if k not in existing]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def trial_run(self, number: int, params: Mapping[str, Any]) -> str:
        """The nested run of trial ``number`` (created with its params, or found again)."""
        tags = {STUDY_TAG: self.study, TRIAL_TAG: str(number)}
        found = self._find(tags)
        if found is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=f"{self.study} trial {number}",
                tags={**tags, PARENT_TAG: self.parent_id},
            )
            found = run.info.run_id
        self.log_params(found, params)
        return found

    def log_figures(self, run_id: str, figures: Mapping[str, float], step: int = 0) -> None:
        _log_metrics(self.client, run_id, [(k, float(v), step) for k, v in figures.items()])

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """``status``: FINISHED, FAILED or KILLED (MLflow's names; a pruned trial is KILLED)."""
        self.client.set_terminated(run_id, status)

    def log_artifact(self, run_id: str, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), folder)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)
