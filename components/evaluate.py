from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from marlops.pipeline.images import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    seeds: str,
    days: float,
    fit_seeds: str,
    evaluation: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
):
    """Held-out markets: the team against the baselines; the HTML report shows in the Kubeflow UI."""
    import shutil

    from marlops.pipeline import steps

    means = steps.evaluate(model.path, evaluation.path, seeds, days, fit_seeds, progress=False)
    shutil.copy(f"{evaluation.path}/report.html", report.path)
    for policy, figures in means.items():
        for k in ("sharpe", "total_return", "max_drawdown"):
            if figures.get(k) is not None:
                metrics.log_metric(f"{policy}.{k}", float(figures[k]))
