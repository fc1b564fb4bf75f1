from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from marlops.pipeline.images import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    budget: str,
    updates: int,
    seed: int,
    work_dir: str,
    init_from: str,
    tracking_uri: str,
    model: Output[Model],
    metrics: Output[Metrics],
    gpus: int = 0,
    nodes: int = 1,
    launch: str = "auto",
    timeout_s: int = 86400,
    run_id: str = "",
    training_data: str = "feast",
    node_selector: str = "{}",
    tolerations: str = "[]",
    data_claim: str = "",
    hyperparameters: str = "",
):
    """The team trained in stages on the dataset (resumes from ``work_dir`` when the same run exists; warm
    starts from ``init_from``, e.g. the champion). With GPUs or several nodes in a cluster (``launch``:
    auto | local | trainjob | pytorchjob) a TrainJob trains and this task watches it. ``training_data``:
    "feast" reads the feature rows from the build step's Feast store, "dataset" computes them from the bars
    (the same values). ``node_selector`` / ``tolerations`` (JSON) place the job's pods when it asks for GPUs;
    ``data_claim`` is the volume they share with this task. ``hyperparameters``: a JSON object of dotted
    settings over the budget (the tuning pipeline's best values; empty: the budget's own)."""
    from marlops.pipeline import steps
    from marlops.pipeline.launch import ClusterOptions, job_kind, train_on_cluster
    from marlops.pipeline.platform import gpu_placement

    kind = job_kind(launch, gpus, nodes)
    if kind is not None:
        selector, tols = gpu_placement(gpus, node_selector, tolerations)
        opts = ClusterOptions(
            kind=kind, gpus=gpus, nodes=nodes, timeout_s=timeout_s, run_id=run_id,
            node_selector=selector, tolerations=tols, data_claim=data_claim,
        )  # fmt: skip
        t = train_on_cluster(
            dataset.path, model.path, budget, updates, seed, work_dir, init_from, tracking_uri, opts,
            training_data=training_data, hyperparameters=hyperparameters,
        )  # fmt: skip
    else:
        t = steps.train(
            dataset.path, model.path, budget, updates, seed, work_dir or None, False, init_from, tracking_uri,
            training_data=training_data, hyperparameters=hyperparameters,
        )  # fmt: skip
    model.metadata.update({"framework": "onnx", "updates": t.updates, "env_steps": t.env_steps})
    metrics.log_metric("regime_val_balanced_accuracy", t.regime_val_balanced_accuracy)
    metrics.log_metric("env_steps", t.env_steps)
    metrics.log_metric("wall_s", t.wall_s)
