"""Where the train step trains: in the task's own process, or in a TrainJob/PyTorchJob it launches.

:func:`job_kind` decides (GPUs or several nodes, and a cluster behind the task); :func:`train_on_cluster`
plans the run exactly as :func:`marlops.pipeline.steps.train` does with a ``work_dir`` (same dataset copy,
same configuration, same run folder), runs ``marlops train`` with those options in the job, and hands the
finished run folder on like the local path does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marlops.pipeline import kube, trainjob
from marlops.pipeline.images import IMAGE
from marlops.pipeline.steps import copy_run_files, resolve_run
from marlops.training.command import TrainArgs

if TYPE_CHECKING:
    from marlops.training.market import TrainSummary

LAUNCH_MODES = ("auto", "local", "trainjob", "pytorchjob")
DEFAULT_TIMEOUT_S = 24 * 3600


def job_kind(launch: str, gpus: int, nodes: int, cluster: Callable[[], bool] = kube.in_cluster) -> str | None:
    """``TrainJob``/``PyTorchJob`` when the step should launch one, None to train in-process.
    ``auto``: a TrainJob with GPUs or several nodes in a cluster; ``local``: never; ``trainjob`` /
    ``pytorchjob``: always (an error without a cluster)."""
    mode = (launch or "auto").strip().lower()
    if mode not in LAUNCH_MODES:
        raise ValueError(f"launch: expected one of {LAUNCH_MODES}, got {launch!r}")
    if gpus < 0 or nodes < 1:
        raise ValueError(f"gpus/nodes: need gpus ≥ 0 and nodes ≥ 1, got gpus={gpus}, nodes={nodes}")
    if mode == "local":
        return None
    if mode == "auto":
        return "TrainJob" if (gpus > 0 or nodes > 1) and cluster() else None
    if not cluster():
        raise ValueError(f"launch: {launch!r} needs a Kubernetes cluster (no in-cluster configuration here)")
    return "TrainJob" if mode == "trainjob" else "PyTorchJob"


@dataclass(frozen=True)
class Plan:
    """What the job trains and where: the run folder under ``work_dir`` and its command line."""

    run_dir: Path
    key: str
    config: dict[str, Any]
    args: TrainArgs


def plan(
    dataset_dir: str | Path,
    budget: str,
    updates: int,
    seed: int,
    work_dir: str | Path,
    init_from: str = "",
    tracking_uri: str = "",
    regime_targets: str = "auto",
    holdout_fraction: float = -1.0,
    training_data: str = "feast",
    hyperparameters: str = "",
) -> Plan:
    """:func:`steps.train`'s run with a ``work_dir``, without training: the job's pods mount the same data
    volume at the same path, so the dataset copy and the run folder must lie under an absolute work_dir."""
    if not work_dir or not Path(work_dir).is_absolute():
        raise ValueError(
            f"work_dir: the job's pods share it with this task, so it must be an absolute path on the data "
            f"volume (e.g. {trainjob.DATA_MOUNT}/pipeline), got {str(work_dir)!r}"
        )
    from marlops.training.config import parse_hyperparameters

    cfg, run_dir = resolve_run(
        dataset_dir, budget, updates, seed, Path(work_dir), init_from, tracking_uri,
        regime_targets, "", holdout_fraction, training_data, hyperparameters=hyperparameters,
    )  # fmt: skip
    key = run_dir.name
    args = TrainArgs(  # the options that make `marlops train` build this very cfg (a test parses them)
        out=str(run_dir),
        budget=budget,
        updates=updates or None,
        dataset=cfg.dataset,
        from_feast=cfg.feast_dir,
        instrument=cfg.instrument if cfg.feast_dir else None,
        regime_targets=regime_targets,
        holdout_fraction=cfg.holdout_fraction,
        seed=seed,
        init_from=cfg.init_from,
        settings=parse_hyperparameters(hyperparameters) or None,
    )
    return Plan(run_dir, key, json.loads(json.dumps(cfg.key(), default=str)), args)


@dataclass(frozen=True)
class ClusterOptions:
    kind: str = "TrainJob"
    gpus: int = 0  # per node
    nodes: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S
    run_id: str = ""  # the KFP run (dsl.PIPELINE_JOB_ID_PLACEHOLDER): part of the job's name
    namespace: str = ""  # empty: the task pod's own (the job shares its data volume and owner)
    image: str = IMAGE
    runtime: str = trainjob.RUNTIME
    poll_s: float = 10.0
    follow_logs: bool = True
    node_selector: dict[str, str] = field(default_factory=dict)  # the job's pods (pipeline parameters)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    data_claim: str = ""  # empty: the runtime's own data volume


def train_on_cluster(
    dataset_dir: str | Path,
    out: str | Path,
    budget: str,
    updates: int,
    seed: int,
    work_dir: str | Path,
    init_from: str,
    tracking_uri: str,
    options: ClusterOptions,
    api_client: Any = None,
    env: dict[str, str] | None = None,
    training_data: str = "feast",
    hyperparameters: str = "",
) -> TrainSummary:
    """Train in a job, then copy the run's files into ``out`` (the Model artifact), as the local path does.
    A retried task finds its job by name and waits for it instead of starting another."""
    from kubernetes import client

    p = plan(
        dataset_dir, budget, updates, seed, work_dir, init_from, tracking_uri, training_data=training_data,
        hyperparameters=hyperparameters,
    )  # fmt: skip
    if p.args.from_feast:
        _warm_feast_cache(p)
    api_client = api_client if api_client is not None else client.ApiClient()
    namespace = options.namespace or kube.own_namespace(env)
    owner = kube.task_owner(api_client, namespace, env)
    print(f"trainjob: owner {owner.kind + ' ' + owner.name if owner else 'none (not a KFP task pod)'}")
    spec = trainjob.JobSpec(
        name=trainjob.job_name(options.run_id, p.key),
        namespace=namespace,
        image=options.image,
        args=p.args.argv(),
        nodes=options.nodes,
        gpus=options.gpus,
        kind=options.kind,
        runtime=options.runtime,
        labels={trainjob.RUN_LABEL: _label(options.run_id), trainjob.KEY_LABEL: p.key},
        owner=owner,
        node_selector=options.node_selector,
        tolerations=options.tolerations,
        data_claim=options.data_claim,
    )
    obj = kube.create_or_attach(api_client, trainjob.build(spec))
    kube.wait(api_client, obj, options.timeout_s, options.poll_s, follow_logs=options.follow_logs)
    return _hand_over(p, Path(out))


def _label(value: str) -> str:
    text = "".join(c for c in value if c.isalnum() or c in "-_.")[:63].strip("-_.")
    return text or "none"


def _hand_over(p: Plan, out: Path) -> TrainSummary:
    summary_file = p.run_dir / "summary.json"
    if not summary_file.exists():
        raise RuntimeError(
            f"the job finished but {summary_file} does not exist: is work_dir on the volume the job mounts "
            f"({trainjob.DATA_MOUNT})?"
        )
    s = json.loads(summary_file.read_text())
    if s.get("config") != p.config:
        raise RuntimeError(f"{summary_file}: trained another configuration than this step planned")
    copy_run_files(p.run_dir, out)
    from marlops.training.market import TrainSummary

    return TrainSummary.from_record(s, out, p.run_dir)


def _warm_feast_cache(p: Plan) -> None:
    """Read the training rows from Feast here, once, into the store's cache: this task mounts the data
    volume read-write; the job's pods mount the store read-only and every rank then only reads the cache
    file (the same rows, :mod:`marlops.features.training`)."""
    from marlops.features.training import load_dataset

    _, src = load_dataset(p.args.dataset or "", p.args.from_feast, p.args.instrument)
    print(f"trainjob: training rows from Feast ({src.cache}, {src.seconds:.1f} s) → {src.cache_file}")
