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
  (:meth:`SearchSpace.active`), so the effective space is the local one.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from marlops.tuning.space import Param, SearchSpace

API_VERSION = "kubeflow.org/v1beta1"
OPENAPI_FILE = "katib-v1beta1-openapi.json"
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


def trial_command(space: SearchSpace, budget: str) -> list[str]:
    cmd = ["marlops", "tune", "--trial", "--budget", budget]
    for p in space.params:
        cmd += ["--set", f"{p.name}=${{trialParameters.{_reference(p.name)}}}"]
    return cmd


def _container(space: SearchSpace, budget: str, image: str, gpu: bool) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}
    if gpu:
        resources["limits"]["nvidia.com/gpu"] = 1
    return {
        "name": CONTAINER if not gpu else "pytorch",
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
    pruner = dict(space.pruner)
    template: dict[str, Any] = {
        "primaryContainerName": "pytorch" if gpu else CONTAINER,
        "trialParameters": [
            {"name": _reference(p.name), "reference": katib_name(p.name), "description": p.name}
            for p in space.params
        ],
        "trialSpec": _trial_spec(space, budget, image, gpu),
    }
    if gpu:  # Katib knows a Job's conditions; a PyTorchJob's are given
        template["primaryPodLabels"] = {"training.kubeflow.org/job-role": "master"}
        template["successCondition"] = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
        template["failureCondition"] = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
    return {
        "apiVersion": API_VERSION,
        "kind": "Experiment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "marlops"},
        },
        "spec": {
            "objective": {
                "type": space.goal,
                "objectiveMetricName": space.metric,
                "metricStrategies": [{"name": space.metric, "value": "latest"}],
            },
            "algorithm": {
                "algorithmName": space.sampler.get("name", "tpe"),
                "algorithmSettings": [{"name": "random_state", "value": str(seed)}],
            },
            "earlyStopping": {
                "algorithmName": "medianstop",
                "algorithmSettings": [
                    {"name": "min_trials_required", "value": str(pruner.get("n_startup_trials", 2))},
                    {"name": "start_step", "value": str(max(1, int(pruner.get("n_warmup_steps", 1))))},
                ],
            },
            "parallelTrialCount": jobs,
            "maxTrialCount": n_trials,
            "maxFailedTrialCount": max(1, n_trials // 4),
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
            "parameters": [_parameter(p) for p in space.params],
            "trialTemplate": template,
        },
    }


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


# ------------------------------------------------------------------------------------------- validation


def crds_dir() -> Path:
    """Where marlops.deploy finds the CRD schemas: ``$MARLOPS_CRDS_DIR``, else ``../shared/crds``."""
    from marlops.deploy.checks import crds_dir as deploy_crds_dir

    return deploy_crds_dir(Path(__file__).resolve().parents[3])


@functools.lru_cache(maxsize=2)
def _validator(path: str) -> Any:
    import jsonschema

    from marlops.deploy.schemas import strict_schema

    doc = json.loads(Path(path).read_text())
    schema = copy.deepcopy(doc)
    schema["components"] = strict_schema(schema["components"])
    schema = {"components": schema["components"], "$ref": "#/components/schemas/v1beta1.Experiment"}
    return jsonschema.Draft7Validator(schema)


def validate_experiment(experiment: dict[str, Any], crds: str | Path | None = None) -> list[str]:
    """Problems of ``experiment`` against the Katib v1beta1 OpenAPI schema (strict), and of its trial
    spec against Kubernetes' (a Job) or the PyTorchJob CRD; empty: valid."""
    root = Path(crds) if crds is not None else crds_dir()
    v = _validator(str(root / OPENAPI_FILE))
    problems = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in v.iter_errors(experiment)
    ]
    spec = experiment.get("spec", {})
    if spec.get("objective", {}).get("type") not in ("maximize", "minimize"):
        problems.append("spec.objective.type: must be maximize or minimize")
    refs = {t["reference"] for t in spec.get("trialTemplate", {}).get("trialParameters", [])}
    names = {p["name"] for p in spec.get("parameters", [])}
    if refs != names:
        problems.append(f"spec.trialTemplate.trialParameters: references {sorted(refs ^ names)} unmatched")
    trial = spec.get("trialTemplate", {}).get("trialSpec")
    if trial is not None:
        from marlops.deploy.schemas import load_crds, validate_objects

        report = validate_objects([_placeholders_filled(trial)], load_crds(root.resolve()))
        problems += [f"spec.trialTemplate.trialSpec: {p}" for p in report.problems]
        problems += [
            f"spec.trialTemplate.trialSpec: not validated: {k}: {w}" for k, w in report.unchecked.items()
        ]
    return problems


def _placeholders_filled(trial: dict[str, Any]) -> dict[str, Any]:
    """The trial spec as Katib submits it: named, placeholders substituted (strings stay strings)."""
    obj = json.loads(re.sub(r"\$\{trialParameters\.(\w+)\}", r"\1", json.dumps(trial)))
    obj.setdefault("metadata", {})["name"] = "marlops-tune-trial"
    return obj
