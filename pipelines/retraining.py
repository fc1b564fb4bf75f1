"""The retraining pipeline, started by a drift alert: the same steps on a recent market window, training
warm-started from the champion's weights (``init_from``, so retraining adds to what was learned), and the
new team becomes champion only if it beats the current one on the gate's figures (a worse challenger
stays a challenger; the deploy step then re-renders the unchanged champion)."""

import json
from typing import NamedTuple

from kfp import dsl

from marlops.pipeline.platform import GPU_NODE_SELECTOR, GPU_TOLERATIONS, PLATFORM
from pipelines.steps import Cluster, team_steps


class Result(NamedTuple):
    team: str
    promoted: bool
    message: str


@dsl.pipeline(name="marlops-retraining", description="Drift-triggered retraining behind the promotion gate.")
def retraining_pipeline(
    alert_id: str = "",
    days: float = 20.0,
    seed: int = 1,
    source: str = "",
    instrument: str = "SYNTH",
    feast_dir: str = "data/feast",
    online: str = "sqlite",
    budget: str = "small",
    updates: int = 0,
    train_seed: int = 1,
    gpus: int = 0,
    nodes: int = 1,
    launch: str = "auto",
    train_timeout_s: int = 86400,
    work_dir: str = "data/pipeline",
    eval_seeds: str = "101,102",
    eval_days: float = 10.0,
    fit_seeds: str = "1,2",
    tracking_uri: str = "",
    gate: str = "{}",
    namespace: str = "marlops",
    state_dir: str = "data/serving",
    data_claim: str = PLATFORM.data_claim,
    mlflow_secret: str = PLATFORM.mlflow.secret,
    object_storage_secret: str = PLATFORM.object_storage.secret,
    gpu_node_selector: str = json.dumps(GPU_NODE_SELECTOR),
    gpu_tolerations: str = json.dumps(GPU_TOLERATIONS),
    init_from: str = "models:/marlops-{agent}@champion",
    training_data: str = "feast",
) -> Result:
    cluster = Cluster(data_claim, mlflow_secret, object_storage_secret, gpu_node_selector, gpu_tolerations)
    r = team_steps(
        days, seed, source, instrument, feast_dir, online, budget, updates, train_seed, gpus, work_dir,
        eval_seeds, eval_days, fit_seeds, tracking_uri, "gate", gate, namespace, state_dir,
        alert_id, cluster, init_from, training_data, nodes=nodes, launch=launch,
        train_timeout_s=train_timeout_s,
    )  # fmt: skip
    return Result(team=r.outputs["team"], promoted=r.outputs["promoted"], message=r.outputs["message"])
