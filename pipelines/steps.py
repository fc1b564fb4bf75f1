"""The steps both pipelines share: features → train → evaluate → register (+ gate) → deploy."""

from components.build_features import build_features
from components.deploy import deploy
from components.evaluate import evaluate
from components.register import register
from components.train import train
from kfp import dsl


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
    init_from: str = "",
    training_data: str = "feast",
    nodes: int = 1,
    launch: str = "auto",
    train_timeout_s: int = 86400,
) -> dsl.PipelineTask:
    features = build_features(
        days=days, seed=seed, source=source, instrument=instrument, feast_dir=feast_dir, online=online
    ).set_display_name("build features (Feast)")
    features.set_caching_options(False)  # writes the shared Feast store
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
        )
        .set_display_name("train (staged: pretraining → MAPPO → DQN)")
        .set_cpu_request("2")
        .set_memory_request("8G")
        .set_memory_limit("32G")
    )  # no GPU on the task itself: with gpus > 0 in a cluster the TrainJob's pods hold them
    evaluated = evaluate(
        model=trained.outputs["model"], seeds=eval_seeds, days=eval_days, fit_seeds=fit_seeds
    ).set_display_name("evaluate (held-out markets)")
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
    deployed = deploy(
        promoted=registered.outputs["promoted"],
        tracking_uri=tracking_uri,
        namespace=namespace,
        state_dir=state_dir,
    ).set_display_name("deploy (InferenceServices)")
    deployed.set_caching_options(False)
    return registered
