"""The `marlops` command line: one entry point for every job, locally and in containers.

Every command has --help. Long work shows a progress bar; results end in a summary table and the
paths of what was written.

This module only assembles: each command group lives in the package that owns it
(``marlops.<package>.commands``) and calls that package's functions; what the commands share (the
consoles, the tick progress bar) is :mod:`marlops.console`. The command modules are light to import —
torch, sklearn, kfp, MLflow and the rest load inside the commands that use them.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from marlops.agents.commands import agents_app
from marlops.console import print_error
from marlops.deploy.commands import deploy_app
from marlops.evaluation.commands import evaluate_cmd
from marlops.market.commands import data_app
from marlops.monitoring.commands import drift_cmd, webhook_app
from marlops.pipeline.commands import pipeline_app, retraining_trigger, run_cmd
from marlops.registry.commands import registry_app
from marlops.serving.commands import decide_cmd, serve_app
from marlops.training.commands import train_cmd
from marlops.tuning.commands import tune_cmd
from marlops.tuning.katib import chart_files as katib_chart_files

app = typer.Typer(
    help="marlops: hierarchical multi-agent RL trading decisions and the MLOps platform around them.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every rejected tick.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s"
    )
    from marlops.secret_files import SecretSettingError, export_file_settings

    try:  # MLflow and boto3 read their credentials from the environment only (docs/deployment.md)
        export_file_settings()
    except SecretSettingError as e:
        print_error(e, "error:")
        raise typer.Exit(2) from None


# the order of registration is the order of `marlops --help`
app.command("drift")(drift_cmd)  # Evidently drift job, signed alerts (docs/monitoring.md)
app.command("decide")(decide_cmd)  # tick replay through the engine or a decision server
app.command("run")(run_cmd)  # the main job on embedded defaults (docs/pipelines.md)
app.command("train")(train_cmd)  # staged training, torchrun workers (docs/training.md)
app.command("evaluate")(evaluate_cmd)  # held-out seeds or walk-forward (docs/evaluation.md)
app.command("tune")(tune_cmd)  # Optuna studies, Katib Experiments (docs/tuning.md)
app.add_typer(data_app, name="data")  # synth / import / inspect (docs/market-data.md)
app.add_typer(registry_app, name="registry")  # MLflow register / list / promote / rollback (docs/registry.md)
app.add_typer(serve_app, name="serve")  # KServe agents, decision transformer, launcher (docs/serving.md)
# helm/kustomize render + checks (docs/deployment.md); deploy may not import tuning: the chart's Katib search
# space file (generated from models/search_space.yaml) is wired here
app.add_typer(deploy_app(katib_chart_files()), name="deploy")
# the retrain trigger (docs/monitoring.md): monitoring may not import the pipeline, so it is wired here
app.add_typer(webhook_app(retraining_trigger), name="webhook")
app.add_typer(pipeline_app, name="pipeline")  # Kubeflow pipelines: compile / params / run / submit / list
app.add_typer(agents_app, name="agents")  # INT8 graphs and their parity gate (docs/agents.md)

if __name__ == "__main__":  # `python -m marlops.cli` (torchrun's workers, the local serving launcher)
    app()
