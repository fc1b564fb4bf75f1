"""The same study on the cluster: a Katib ``Experiment`` (kubeflow.org/v1beta1) rendered from
models/search_space.yaml, and its validation against Katib's v1beta1 OpenAPI schema.

- algorithm ``tpe`` (the local sampler), early stopping ``medianstop`` (the local median pruner), objective
  ``validation_utility`` maximized (the local objective, metric strategy ``latest``: the whole team's
  figure is printed last);
- the trial runs the same image and command as a local trial: ``marlops tune --trial --budget B --set
  name=${trialParameters.…} …`` (a batch Job; for the gpu budget a PyTorchJob master on a GPU node), and
  prints ``validation_utility=<v>`` after every team update and at the end: the StdOut metrics collector's
  ``name=value`` lines;
- Katib has no conditional parameters: every parameter is sampled, and the trial drops the inactive ones
  (:meth:`SearchSpace.active`), so the effective space is the local one;
- the Helm chart renders the same Experiment (``tuning.enabled``, templates/tuning.yaml) with its own trial
  pod: what the search space decides (:func:`search_space_parts`, shared with :func:`render_experiment`) is
  the chart file ``helm/marlops/files/katib-search-space.yaml`` (:func:`chart_file`), which
  ``marlops deploy generate`` writes and ``marlops deploy check`` keeps up to date.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from marlops.deploy.generate import ChartFile
from marlops.tuning.space import SPACE_FILE, Param, SearchSpace, load_space

API_VERSION = "kubeflow.org/v1beta1"
DEFAULT_IMAGE = "ghcr.io/marlops/marlops:0.1.0"
CONTAINER = "marlops"
_TYPES = {"float": "double", "int": "int", "categorical": "categorical"}


def katib_name(name: str) -> str:
    """``team.anneal_lr`` → ``team-anneal-lr`` (a Katib parameter name)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _reference(name: str) -> str:
    """``team.anneal_lr`` → ``teamAnnealLr`` (the trial template's placeholder)."""
    head, *rest = re.split(r"[^a-zA-Z0-9]+", name)
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _num(v: float | None, kind: str) -> str:
    """Positional notation (``0.00003``, not ``3e-05``: a YAML 1.2 reader such as kubectl's takes the
    unquoted exponent form for a number, and Katib's feasibleSpace bounds are strings)."""
    assert v is not None
    if kind == "int":
        return str(int(v))
    text = format(Decimal(repr(float(v))), "f")
    return text if "." in text else f"{text}.0"


def _parameter(p: Param) -> dict[str, Any]:
    if p.kind == "categorical":
        space: dict[str, Any] = {"list": [_scalar(c) for c in p.choices]}
    else:
        space = {"min": _num(p.low, p.kind), "max": _num(p.high, p.kind)}
        if p.step is not None:
            space["step"] = _num(p.step, p.kind)
        space["distribution"] = "logUniform" if p.log else "uniform"
    return {"name": katib_name(p.name), "parameterType": _TYPES[p.kind], "feasibleSpace": space}


def _scalar(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def set_args(space: SearchSpace) -> list[str]:
    """``--set name=${trialParameters.…}`` for each parameter (after ``marlops tune --trial --budget B``)."""
    out: list[str] = []
    for p in space.params:
        out += ["--set", f"{p.name}=${{trialParameters.{_reference(p.name)}}}"]
    return out


def trial_command(space: SearchSpace, budget: str) -> list[str]:
    return ["marlops", "tune", "--trial", "--budget", budget, *set_args(space)]


def trial_kinds() -> dict[str, dict[str, Any]]:
    """The trial template's fields that depend on the trial's kind: the primary container (the one Katib's
    metrics collector wraps) and, for a PyTorchJob (whose conditions Katib does not know), the master pod
    and the success/failure conditions."""
    return {
        "Job": {"primaryContainerName": CONTAINER},
        "PyTorchJob": {
            "primaryContainerName": "pytorch",  # the container the Training Operator configures
            "primaryPodLabels": {"training.kubeflow.org/job-role": "master"},
            "successCondition": 'status.conditions.#(type=="Succeeded")#|#(status=="True")#',
            "failureCondition": 'status.conditions.#(type=="Failed")#|#(status=="True")#',
        },
    }


def search_space_parts(space: SearchSpace) -> dict[str, Any]:
    """What the search space decides in an Experiment, in Katib's terms: the objective, the algorithm's name,
    early stopping, the metrics collector, the parameters, the trial parameters, the trial command's
    ``--set`` arguments and the kind-dependent trial template fields. :func:`render_experiment` builds on
    it, and so does the Helm chart (``helm/marlops/files/katib-search-space.yaml``, :func:`chart_file`)."""
    pruner = dict(space.pruner)
    return {
        "objective": {
            "type": space.goal,
            "objectiveMetricName": space.metric,
            "metricStrategies": [{"name": space.metric, "value": "latest"}],
        },
        "algorithm": {"algorithmName": space.sampler.get("name", "tpe")},
        "earlyStopping": {
            "algorithmName": "medianstop",
            "algorithmSettings": [
                {"name": "min_trials_required", "value": str(pruner.get("n_startup_trials", 2))},
                {"name": "start_step", "value": str(max(1, int(pruner.get("n_warmup_steps", 1))))},
            ],
        },
        "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
        "parameters": [_parameter(p) for p in space.params],
        "trialParameters": [
            {"name": _reference(p.name), "reference": katib_name(p.name), "description": p.name}
            for p in space.params
        ],
        "setArgs": set_args(space),
        "trialKinds": trial_kinds(),
    }


def _container(space: SearchSpace, budget: str, image: str, gpu: bool) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}
    if gpu:
        resources["limits"]["nvidia.com/gpu"] = 1
    return {
        "name": trial_kinds()["PyTorchJob" if gpu else "Job"]["primaryContainerName"],
        "image": image,
        "command": trial_command(space, budget),
        "env": [{"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.mlops:5000"}],
        "resources": resources,
    }


def _trial_spec(space: SearchSpace, budget: str, image: str, gpu: bool) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "spec": {
            "restartPolicy": "Never",
            "containers": [_container(space, budget, image, gpu)],
        }
    }
    if not gpu:
        return {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": pod}}
    pod["spec"]["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    pod["spec"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "spec": {
            "pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "Never", "template": pod}}
        },
    }


def render_experiment(
    space: SearchSpace,
    budget: str = "small",
    n_trials: int = 12,
    jobs: int = 2,
    seed: int = 0,
    name: str = "marlops-tune",
    namespace: str = "mlops",
    image: str = DEFAULT_IMAGE,
    gpu: bool | None = None,
) -> dict[str, Any]:
    """The Experiment; ``gpu`` (default: the gpu budget) makes the trial a PyTorchJob on a GPU node."""
    gpu = budget == "gpu" if gpu is None else gpu
    parts = search_space_parts(space)
    template: dict[str, Any] = {
        **parts["trialKinds"]["PyTorchJob" if gpu else "Job"],
        "trialParameters": parts["trialParameters"],
        "trialSpec": _trial_spec(space, budget, image, gpu),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "Experiment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "marlops"},
        },
        "spec": {
            "objective": parts["objective"],
            "algorithm": {
                **parts["algorithm"],
                "algorithmSettings": [{"name": "random_state", "value": str(seed)}],
            },
            "earlyStopping": parts["earlyStopping"],
            "parallelTrialCount": jobs,
            "maxTrialCount": n_trials,
            "maxFailedTrialCount": max(1, n_trials // 4),
            "metricsCollectorSpec": parts["metricsCollectorSpec"],
            "parameters": parts["parameters"],
            "trialTemplate": template,
        },
    }


# ------------------------------------------------------------------------------------ the chart's file

CHART_FILE = "helm/marlops/files/katib-search-space.yaml"  # relative to the repository root
_CHART_HEADER = (
    "# Generated from models/search_space.yaml by `marlops deploy generate` (marlops.tuning.katib\n"
    "# .search_space_parts, as `marlops tune --render-katib`): the chart's Katib Experiment takes these\n"
    "# parts from here (templates/tuning.yaml, .Files.Get). Edit the search space and rerun it:\n"
    "# tests/test_deploy.py fails while this file and models/search_space.yaml disagree.\n"
)


def chart_file(root: Path) -> str:
    """The text of :data:`CHART_FILE` for the repository at ``root`` (its models/search_space.yaml)."""
    space = load_space(root / "models" / SPACE_FILE)
    return _CHART_HEADER + yaml.safe_dump(search_space_parts(space), sort_keys=False, width=120)


def chart_files() -> tuple[ChartFile, ...]:
    """The chart files this module generates, for ``marlops deploy generate`` / ``check`` (wired in
    marlops.cli: deploy imports nothing of tuning)."""
    return (ChartFile(CHART_FILE, chart_file),)


def space_of(experiment: dict[str, Any]) -> dict[str, Any]:
    """The search space an Experiment samples, in :meth:`SearchSpace.as_dict`'s form (dotted names come
    back from the trial parameters' descriptions)."""
    spec = experiment["spec"]
    names = {t["reference"]: t["description"] for t in spec["trialTemplate"]["trialParameters"]}
    kinds = {v: k for k, v in _TYPES.items()}
    out: dict[str, Any] = {}
    for p in spec["parameters"]:
        kind, fs = kinds[p["parameterType"]], p["feasibleSpace"]
        if kind == "categorical":
            out[names[p["name"]]] = {"kind": kind, "choices": [yaml.safe_load(c) for c in fs["list"]]}
        else:
            out[names[p["name"]]] = {
                "kind": kind,
                "low": float(fs["min"]),
                "high": float(fs["max"]),
                "log": fs.get("distribution") == "logUniform",
                "step": float(fs["step"]) if "step" in fs else None,
            }
    return out


def best_values(experiment: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """The best trial of a finished (or running) Experiment as dotted settings (``{"team.lr": 1.06e-4}``),
    from its ``status.currentOptimalTrial.parameterAssignments``: Katib's names mapped back through the
    trial parameters' descriptions, values typed as the space declares them, inactive ones dropped (what
    ``marlops train --set`` and the training pipeline's ``hyperparameters`` take). ValueError says what is
    missing."""
    name = (experiment.get("metadata") or {}).get("name", "?")
    optimal = ((experiment.get("status") or {}).get("currentOptimalTrial")) or {}
    assignments = optimal.get("parameterAssignments") or []
    if not assignments:
        raise ValueError(f"Experiment {name}: no status.currentOptimalTrial.parameterAssignments yet")
    template = (experiment.get("spec") or {}).get("trialTemplate") or {}
    dotted = {t["reference"]: t["description"] for t in template.get("trialParameters") or []}
    params = {p.name: p for p in space.params}
    values: dict[str, Any] = {}
    for a in assignments:
        key = dotted.get(a.get("name", ""))
        if key is None or key not in params:
            raise ValueError(f"Experiment {name}: parameter {a.get('name')!r} is not in {space.source}")
        p, raw = params[key], str(a.get("value", ""))
        parse = {"categorical": yaml.safe_load, "int": int, "float": float}[p.kind]
        try:
            values[key] = parse(raw)
        except ValueError:
            raise ValueError(f"Experiment {name}: {key}: {raw!r} is not a {p.kind}") from None
    missing = sorted(set(params) - set(values))
    if missing:
        raise ValueError(f"Experiment {name}: the optimal trial has no value for {missing}")
    return space.active(values)


# ------------------------------------------------------------------------------------------- validation


def crds_dir() -> Path:
    """Where marlops.deploy finds the CRD schemas: ``$MARLOPS_CRDS_DIR``, else ``../shared/crds``."""
    from marlops.deploy.checks import crds_dir as deploy_crds_dir

    return deploy_crds_dir(Path(__file__).resolve().parents[3])


def validate_experiment(experiment: dict[str, Any], crds: str | Path | None = None) -> list[str]:
    """Problems of ``experiment`` as ``marlops deploy check`` sees every Experiment
    (:func:`marlops.deploy.schemas.validate_objects`): strictly against Katib's v1beta1 OpenAPI schema, its
    trial spec (placeholders filled) against Kubernetes' Job schema or the PyTorchJob CRD, and Katib's own
    rules (objective type, trial parameter references); empty: valid. FileNotFoundError: no Katib schema."""
    from marlops.deploy.schemas import load_crds, ref, validate_objects

    root = Path(crds) if crds is not None else crds_dir()
    report = validate_objects([experiment], load_crds(root.resolve()))
    if ref(experiment) in report.unchecked:
        raise FileNotFoundError(f"{root}: {report.unchecked[ref(experiment)]}")
    problems = [f"{p.path or '<root>'}: {p.message}" for p in report.problems]
    return problems + [f"not validated: {k}: {why}" for k, why in report.unchecked.items()]
