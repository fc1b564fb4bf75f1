"""Run a pipeline: embedded with ``kfp.local`` (SubprocessRunner in this Python, no venv per task) or
submitted to a Kubeflow Pipelines host with ``kfp.Client``, under the pipeline-runner ServiceAccount
(:func:`marlops.pipeline.platform.service_account`). Every run is recorded in
``<pipeline_root>/runs.jsonl`` (local) so the main job and the retrain trigger can list them."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from marlops.pipeline import definitions, platform

DEFAULT_ROOT = Path("data") / "kfp"
# parameters that are paths: made absolute before a local run (the tasks run as subprocesses)
_PATH_PARAMS = ("feast_dir", "work_dir", "state_dir", "source")
# parameters naming cluster objects: an empty name makes a pod the API server refuses
_NAME_PARAMS = ("data_claim", "mlflow_secret", "object_storage_secret")


class PipelineFailed(RuntimeError):
    def __init__(self, message: str, run: PipelineRun) -> None:
        super().__init__(message)
        self.run = run


@dataclass
class PipelineRun:
    pipeline: str
    mode: str  # "local" | "cluster"
    run_id: str
    state: str  # SUCCEEDED | FAILED | SUBMITTED
    parameters: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    folder: str | None = None  # local: the run's task outputs
    log: str | None = None  # local: the tasks' output
    url: str | None = None  # cluster: the run in the Kubeflow UI
    started: str = ""
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(key: str, kind: str, value: Any) -> Any:
    """A parameter as the pipeline declares it (the CLI passes strings; JSON gives ints for floats)."""
    try:
        if kind == "Float":
            v = float(value)
            if v != v or v in (float("inf"), float("-inf")):
                raise ValueError("not finite")
            return v
        if kind == "Integer":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("not an integer")
            return int(value)
        if kind == "Boolean":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError("not a boolean")
                return value.lower() in ("true", "1")
            return bool(value)
        return str(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{key}: expected {kind.lower()}, got {value!r} ({e})") from None


def parameters(name: str) -> dict[str, tuple[str, Any]]:
    """The pipeline's parameters: name → (type, default)."""
    inputs = definitions.load(name).component_spec.inputs or {}
    return {k: (v.type, v.default) for k, v in inputs.items()}


def _check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    declared = parameters(name)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        accepted = sorted(declared)
        raise ValueError(f"parameters: {unknown} not accepted by the {name} pipeline (accepted: {accepted})")
    out = {k: _coerce(k, declared[k][0], v) for k, v in params.items()}
    for k in _NAME_PARAMS:
        if k in out and not out[k].strip():
            raise ValueError(
                f"{k}: empty; name the Kubernetes object (a Secret may be absent: it is optional)"
            )
    if out.get("hyperparameters"):  # names and types, against the budget's configuration
        from marlops.training.config import budget_config, parse_hyperparameters, with_overrides

        tuned = parse_hyperparameters(out["hyperparameters"])
        budget = budget_config(out.get("budget", declared.get("budget", ("", "small"))[1]))
        try:
            with_overrides(budget, tuned)
        except ValueError as e:
            raise ValueError(f"hyperparameters: {e}") from None
    if "gpu_node_selector" in out or "gpu_tolerations" in out:  # before the run, not at its train task
        platform.gpu_placement(
            0,
            out.get("gpu_node_selector", declared["gpu_node_selector"][1]),
            out.get("gpu_tolerations", "[]"),
        )
    return out


def run_local(
    name: str, params: Mapping[str, Any] | None = None, pipeline_root: str | Path = DEFAULT_ROOT
) -> PipelineRun:
    """Run ``name`` with kfp.local, blocking; task output goes to a log file beside the run folder."""
    from kfp import local

    params = _check_params(name, params or {})
    for k in _PATH_PARAMS:
        if params.get(k):
            params[k] = str(Path(params[k]).resolve())
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    fn = definitions.load(name)
    before = {p.name for p in root.iterdir()}
    log_path = root / f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}.log"
    run = PipelineRun(name, "local", "", "FAILED", params, log=str(log_path), started=_now())
    t0 = time.perf_counter()
    local.init(local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    kfp_log = logging.getLogger()
    handler = logging.FileHandler(log_path)
    kfp_log.addHandler(handler)
    err: BaseException | None = None
    try:
        with (
            open(log_path, "a") as out,
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(out),
            warnings.catch_warnings(),
        ):
            # the image is ours, not a "python" one; locally every task runs in this Python
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            task = fn(**params)
        run.outputs = dict(task.outputs) if task is not None and task.outputs else {}
        run.state = "SUCCEEDED"
    except Exception as e:  # kfp raises RuntimeError naming the failed task
        err = e
    finally:
        kfp_log.removeHandler(handler)
        handler.close()
        run.wall_s = round(time.perf_counter() - t0, 1)
        new = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in before)
        run.folder = str(new[-1]) if new else None
        run.run_id = new[-1].name if new else log_path.stem
        _record(root, run)
    if err is not None:
        raise PipelineFailed(f"{name} pipeline failed: {err} (task output: {log_path})", run) from err
    return run


def submit_cluster(
    name: str,
    host: str,
    params: Mapping[str, Any] | None = None,
    experiment: str = "marlops",
    namespace: str | None = None,
    token: str | None = None,
    service_account: str | None = None,
) -> PipelineRun:
    """Create a run of the checked-in IR YAML on a Kubeflow Pipelines host (does not wait). The run's pods
    use ``service_account`` (default: :func:`platform.service_account`, the chart's pipeline runner, whose
    Role lets the steps create TrainJobs and patch InferenceServices)."""
    import kfp

    params = _check_params(name, params or {})
    client = kfp.Client(host=host, namespace=namespace, existing_token=token)
    res = client.create_run_from_pipeline_package(
        str(definitions.yaml_path(name)),
        arguments=params,
        run_name=f"marlops-{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}",
        experiment_name=experiment,
        namespace=namespace,
        service_account=platform.service_account(service_account),
    )
    return PipelineRun(
        name,
        "cluster",
        res.run_id,
        "SUBMITTED",
        params,
        url=f"{host.rstrip('/')}/#/runs/details/{res.run_id}",
        started=_now(),
    )


def submit_pipeline(
    name: str,
    host: str | None = None,
    pipeline_root: str | Path = DEFAULT_ROOT,
    service_account: str | None = None,
    **params: Any,
) -> PipelineRun:
    """Local (blocking) when ``host`` is None, else a run on the Kubeflow host under ``service_account``
    (default: the pipeline runner's)."""
    if host:
        return submit_cluster(name, host, params, service_account=service_account)
    return run_local(name, params, pipeline_root)


def submit_retraining(host: str | None = None, **params: Any) -> PipelineRun:
    """What the drift webhook receiver calls (wired in by the CLI); in a cluster the run executes under
    ``$MARLOPS_PIPELINE_SERVICE_ACCOUNT``, which the chart sets on the retrain trigger."""
    return submit_pipeline("retraining", host, **params)


def list_runs(pipeline_root: str | Path = DEFAULT_ROOT) -> list[dict[str, Any]]:
    p = Path(pipeline_root) / "runs.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _record(root: Path, run: PipelineRun) -> None:
    with (root / "runs.jsonl").open("a") as f:
        f.write(json.dumps(run.as_dict(), default=str) + "\n")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
