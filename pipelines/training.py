"""The training pipeline: a market → Feast features → MAPPO team → evaluation → MLflow registry →
promotion → serving manifests. The first team (no champion yet) is promoted by the gate's first rule.
``hyperparameters``: a JSON object of dotted settings over the budget (``{"team.lr": 1e-4}``), e.g. the
tuning pipeline's best values; empty: the budget's own (models/)."""

import json
from typing import NamedTuple

from kfp import dsl

from marlops.pipeline.platform import GPU_NODE_SELECTOR, GPU_TOLERATIONS, PLATFORM
from pipelines.steps import Cluster, team_steps


class Result(NamedTuple):
    team: str
    promoted: bool
    message: str


@dsl.pipeline(name="marlops-training", description="Features, MAPPO training, evaluation, registry, deploy.")
def training_pipeline(
    days: float = 90.0,
    seed: int = 0,
    source: str = "",
    instrument: str = "SYNTH",
    feast_dir: str = "data/feast",
    online: str = "sqlite",
    budget: str = "small",
    updates: int = 0,
    train_seed: int = 0,
    gpus: int = 0,
    nodes: int = 1,
    launch: str = "auto",
    train_timeout_s: int = 86400,
    work_dir: str = "data/pipeline",
    eval_seeds: str = "101,102",
    eval_days: float = 10.0,
    fit_seeds: str = "1,2",
    tracking_uri: str = "",
    promote: str = "gate",
    gate: str = "{}",
    namespace: str = "marlops",
    state_dir: str = "data/serving",
    training_data: str = "feast",
    data_claim: str = PLATFORM.data_claim,
    mlflow_secret: str = PLATFORM.mlflow.secret,
    object_storage_secret: str = PLATFORM.object_storage.secret,
    gpu_node_selector: str = json.dumps(GPU_NODE_SELECTOR),
    gpu_tolerations: str = json.dumps(GPU_TOLERATIONS),
    hyperparameters: str = "",
) -> Result:
    cluster = Cluster(data_claim, mlflow_secret, object_storage_secret, gpu_node_selector, gpu_tolerations)
    r = team_steps(
        days, seed, source, instrument, feast_dir, online, budget, updates, train_seed, gpus, work_dir,
        eval_seeds, eval_days, fit_seeds, tracking_uri, promote, gate, namespace, state_dir,
        "training", cluster, training_data=training_data, nodes=nodes, launch=launch,
        train_timeout_s=train_timeout_s, hyperparameters=hyperparameters,
    )  # fmt: skip
    return Result(team=r.outputs["team"], promoted=r.outputs["promoted"], message=r.outputs["message"])
