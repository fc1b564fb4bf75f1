"""The steps both pipelines share: features → train → evaluate → register (+ gate) → deploy, and what each
task gets from the cluster (kfp-kubernetes; kfp.local ignores it): the data claim, credentials as files,
GPU placement. Names and paths come from :mod:`marlops.pipeline.platform` (the chart's)."""

from dataclasses import dataclass
from typing import Any

from components.build_features import build_features
from components.deploy import deploy
from components.evaluate import evaluate
from components.register import register
from components.train import train
from kfp import dsl, kubernetes

from marlops.pipeline.platform import PLATFORM, SecretFiles


@dataclass(frozen=True)
class Cluster:
    """The pipeline parameters naming cluster objects (release-dependent: set them on the run)."""

    data_claim: Any  # PVC mounted at PLATFORM.data_mount on every step
    mlflow_secret: Any
    object_storage_secret: Any
    gpu_node_selector: Any  # applied to the train pod only when gpus > 0
    gpu_tolerations: Any


def mount_data(task: dsl.PipelineTask, cluster: Cluster) -> dsl.PipelineTask:
    # the parameters' paths (feast_dir, work_dir, state_dir) point under the mount
    return kubernetes.mount_pvc(task, pvc_name=cluster.data_claim, mount_path=PLATFORM.data_mount)


def credentials(task: dsl.PipelineTask, *secrets: tuple[SecretFiles, Any]) -> dsl.PipelineTask:
    """Secrets as read-only files plus ``KEY_FILE`` env vars (the chart's layout); optional like the
    chart's, so a cluster without credentials (an open MLflow) runs as well."""
    for files, name in secrets:
        kubernetes.use_secret_as_volume(task, secret_name=name, mount_path=files.mount_path, optional=True)
        for var, path in files.env().items():
            task.set_env_variable(var, path)
    return task


def team_steps(
    days: float,
    seed: int,
    source: str,
    instrument: str,
    feast_dir: str,
    online: str,
    budget: str,
    updates: int,
    train_seed: int,
    gpus: int,
    work_dir: str,
    eval_seeds: str,
    eval_days: float,
    fit_seeds: str,
    tracking_uri: str,
    promote: str,
    gate: str,
    namespace: str,
    state_dir: str,
    trigger: str,
    cluster: Cluster,
    init_from: str = "",
    training_data: str = "feast",
    nodes: int = 1,
    launch: str = "auto",
    train_timeout_s: int = 86400,
    hyperparameters: Any = "",
) -> dsl.PipelineTask:
    mlflow = (PLATFORM.mlflow, cluster.mlflow_secret)
    object_storage = (PLATFORM.object_storage, cluster.object_storage_secret)
    features = build_features(
        days=days, seed=seed, source=source, instrument=instrument, feast_dir=feast_dir, online=online
    ).set_display_name("build features (Feast)")
    features.set_caching_options(False)  # writes the shared Feast store
    mount_data(features, cluster)
    trained = (
        train(
            dataset=features.outputs["dataset"],
            budget=budget,
            updates=updates,
            seed=train_seed,
            work_dir=work_dir,
            init_from=init_from,
            tracking_uri=tracking_uri,
            training_data=training_data,
            gpus=gpus,
            nodes=nodes,
            launch=launch,
            timeout_s=train_timeout_s,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,  # names the TrainJob: a retried task finds it
            node_selector=cluster.gpu_node_selector,  # the TrainJob's pods', when it asks for GPUs
            tolerations=cluster.gpu_tolerations,
            data_claim=cluster.data_claim,
            hyperparameters=hyperparameters,
        )
        .set_display_name("train (staged: pretraining → MAPPO → DQN)")
        .set_cpu_request("2")
        .set_memory_request("8G")
        .set_memory_limit("32G")
    )  # no GPU and no GPU node for the task itself: with gpus > 0 in a cluster the TrainJob's pods hold them
    mount_data(trained, cluster)
    if not (isinstance(init_from, str) and not init_from):  # warm start: reads the registry
        credentials(trained, mlflow, object_storage)
    evaluated = evaluate(
        model=trained.outputs["model"], seeds=eval_seeds, days=eval_days, fit_seeds=fit_seeds
    ).set_display_name("evaluate (held-out markets)")
    mount_data(evaluated, cluster)  # no registry: artifacts in, report out
    registered = register(
        model=trained.outputs["model"],
        evaluation=evaluated.outputs["evaluation"],
        lineage=features.outputs["Output"],
        trigger=trigger,
        tracking_uri=tracking_uri,
        promote=promote,
        gate=gate,
    ).set_display_name("register + promotion gate (MLflow)")
    registered.set_caching_options(False)
    credentials(mount_data(registered, cluster), mlflow, object_storage)  # logs artifacts, registers
    deployed = deploy(
        promoted=registered.outputs["promoted"],
        tracking_uri=tracking_uri,
        namespace=namespace,
        state_dir=state_dir,
    ).set_display_name("deploy (InferenceServices)")
    deployed.set_caching_options(False)
    credentials(mount_data(deployed, cluster), mlflow)  # reads model versions; downloads nothing
    return registered
