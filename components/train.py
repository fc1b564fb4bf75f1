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
    training_data: str = "feast",
):
    """The team trained in stages on the dataset (resumes from ``work_dir`` when the same run exists; warm
    starts from ``init_from``, e.g. the champion). ``training_data``: "feast" reads the feature rows from the
    build step's Feast store, "dataset" computes them from the bars (the same values)."""
    from marlops.pipeline import steps

    t = steps.train(
        dataset.path, model.path, budget, updates, seed, work_dir or None, False, init_from, tracking_uri,
        training_data=training_data,
    )  # fmt: skip
    model.metadata.update({"framework": "onnx", "updates": t.updates, "env_steps": t.env_steps})
    metrics.log_metric("regime_val_balanced_accuracy", t.regime_val_balanced_accuracy)
    metrics.log_metric("env_steps", t.env_steps)
    metrics.log_metric("wall_s", t.wall_s)
