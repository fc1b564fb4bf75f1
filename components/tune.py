from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Metrics, Output

from marlops.pipeline.images import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune(
    budget: str,
    n_trials: int,
    jobs: int,
    seed: int,
    study_name: str,
    storage: str,
    work_dir: str,
    tracking_uri: str,
    best: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
) -> NamedTuple("Tuned", [("hyperparameters", str)]):
    """An Optuna study of the team's hyperparameters (``marlops tune``) on the budget's validation markets;
    hands on the best values (a JSON object of dotted settings) for the training step. best.yaml and the
    study's HTML report (optimization history, importances) show in the Kubeflow UI; each trial is a nested
    MLflow run."""
    import shutil
    from collections import namedtuple

    from marlops.pipeline import steps

    t = steps.tune(budget, n_trials, jobs, seed, study_name, storage, work_dir, tracking_uri)
    shutil.copy(t.folder / "best.yaml", best.path)
    shutil.copy(t.folder / "report.html", report.path)
    best.metadata.update({"trial": t.best_trial, "study": study_name, "budget": budget})
    metrics.log_metric("best.validation_utility", t.best_value)
    if t.default_value is not None:
        metrics.log_metric("default.validation_utility", t.default_value)
    metrics.log_metric("trials", t.trials)
    return namedtuple("Tuned", ["hyperparameters"])(t.hyperparameters)
