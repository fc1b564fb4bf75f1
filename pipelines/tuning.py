"""The tuning pipeline: an Optuna study of the team's hyperparameters (``marlops tune``: shared schedule and
every agent's values in one trial, pruned on the validation figure, never the held-out seeds), then the
training pipeline with the best values (its ``hyperparameters``). The study is resumable: a rerun with the
same ``study_name`` keeps its finished trials."""

import json
from typing import NamedTuple

from components.tune import tune
from kfp import dsl

from marlops.pipeline.platform import GPU_NODE_SELECTOR, GPU_TOLERATIONS, PLATFORM
from pipelines.steps import Cluster, credentials, mount_data
from pipelines.training import training_pipeline


class Result(NamedTuple):
    hyperparameters: str
    team: str
    promoted: bool
    message: str


@dsl.pipeline(
    name="marlops-tuning", description="Hyperparameter study (Optuna), then training with the best values."
)
def tuning_pipeline(
    study_name: str = "marlops",
    n_trials: int = 12,
    tune_budget: str = "small",
    jobs: int = 2,
    tune_seed: int = 0,
    storage: str = "",
    days: float = 90.0,
    seed: int = 0,
    source: str = "",
    instrument: str = "SYNTH",
    feast_dir: str = "data/feast",
    online: str = "sqlite",
    budget: str = "small",
    gpus: int = 0,
    nodes: int = 1,
    work_dir: str = "data/pipeline",
    eval_seeds: str = "101,102",
    eval_days: float = 10.0,
    fit_seeds: str = "1,2",
    tracking_uri: str = "",
    promote: str = "gate",
    gate: str = "{}",
    namespace: str = "marlops",
    state_dir: str = "data/serving",
    data_claim: str = PLATFORM.data_claim,
    mlflow_secret: str = PLATFORM.mlflow.secret,
    object_storage_secret: str = PLATFORM.object_storage.secret,
    gpu_node_selector: str = json.dumps(GPU_NODE_SELECTOR),
    gpu_tolerations: str = json.dumps(GPU_TOLERATIONS),
) -> Result:
    cluster = Cluster(data_claim, mlflow_secret, object_storage_secret, gpu_node_selector, gpu_tolerations)
    tuned = tune(
        budget=tune_budget, n_trials=n_trials, jobs=jobs, seed=tune_seed, study_name=study_name,
        storage=storage, work_dir=work_dir, tracking_uri=tracking_uri,
    )  # fmt: skip
    tuned.set_display_name("tune (Optuna study on validation markets)")
    tuned.set_cpu_request("2").set_memory_request("8G").set_memory_limit("32G")
    tuned.set_caching_options(False)  # resumes the study in work_dir; a rerun may add trials
    credentials(mount_data(tuned, cluster), (PLATFORM.mlflow, cluster.mlflow_secret))
    trained = training_pipeline(
        days=days, seed=seed, source=source, instrument=instrument, feast_dir=feast_dir, online=online,
        budget=budget, gpus=gpus, nodes=nodes, work_dir=work_dir, eval_seeds=eval_seeds, eval_days=eval_days,
        fit_seeds=fit_seeds, tracking_uri=tracking_uri, promote=promote, gate=gate, namespace=namespace,
        state_dir=state_dir,
        data_claim=data_claim, mlflow_secret=mlflow_secret, object_storage_secret=object_storage_secret,
        gpu_node_selector=gpu_node_selector, gpu_tolerations=gpu_tolerations,
        hyperparameters=tuned.outputs["hyperparameters"],
    ).set_display_name("training pipeline (best values)")  # fmt: skip
    return Result(
        hyperparameters=tuned.outputs["hyperparameters"],
        team=trained.outputs["team"],
        promoted=trained.outputs["promoted"],
        message=trained.outputs["message"],
    )
