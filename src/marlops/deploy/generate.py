"""The kustomize folders, generated from the chart: one source of truth for helm and kubectl users.

Each :data:`TARGETS` folder is ``helm template`` of the chart (release and namespace ``marlops``) with
some values files, filtered to some objects, one file per chart template, without the helm-only parts (test
hooks, the ``helm.sh/chart`` label, ``managed-by: Helm``, the keep policy), plus a ``kustomization.yaml``:

- ``manifests/base``: the default values (CPU serving, drift, retrain trigger, RBAC, policies), no training;
- ``manifests/training/trainjob``: values-gpu.yaml's training objects (TrainingRuntime, TrainJob, …);
- ``manifests/training/pytorchjob``: the same run as a Training Operator PyTorchJob;
- ``manifests/tuning``: the Katib Experiment (``tuning.enabled``), its ServiceAccount and NetworkPolicy.

The overlays (``manifests/overlays/*``) are written by hand on top. A test regenerates every target and
compares with the committed files, so a chart edit not carried over fails CI (`marlops deploy generate`).

The chart itself may hold generated files (:class:`ChartFile`, e.g. ``files/katib-search-space.yaml`` from
models/search_space.yaml): deploy imports nothing else of the package, so their producers are handed in by
marlops.cli (``deploy_app(chart_files)``); `marlops deploy generate` writes them before rendering the
targets and `marlops deploy check` reports them when stale, like the folders.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from marlops.deploy.render import Rendered, helm_template
from marlops.deploy.tools import Tools

RELEASE = "marlops"
NAMESPACE = "marlops"
HEADER = (
    "# Generated from helm/marlops ({template}){values} by `marlops deploy generate`.\n"
    "# Edit the chart and rerun it: tests/test_deploy.py fails while this file and the chart disagree.\n"
)
_HELM_LABELS = ("helm.sh/chart",)
_HELM_ANNOTATIONS = ("helm.sh/resource-policy",)


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the chart's order, multi-line strings as literal blocks."""


def _str(dumper: yaml.SafeDumper, s: str) -> Any:
    style = "|" if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


_Dumper.add_representer(str, _str)


def _clean(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)

    def strip(meta: dict[str, Any]) -> None:
        labels = meta.get("labels") or {}
        for k in _HELM_LABELS:
            labels.pop(k, None)
        if labels.get("app.kubernetes.io/managed-by") == "Helm":
            labels["app.kubernetes.io/managed-by"] = "kustomize"
        ann = meta.get("annotations") or {}
        for k in _HELM_ANNOTATIONS:
            ann.pop(k, None)
        if "annotations" in meta and not ann:
            del meta["annotations"]

    strip(obj.setdefault("metadata", {}))
    return obj


def is_hook(obj: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (obj.get("metadata", {}).get("annotations") or {})


def component(obj: dict[str, Any]) -> str:
    return (obj.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/component", "")


LAYERS = ("training", "tuning")  # components that get folders of their own, outside the base


@dataclass(frozen=True)
class Target:
    """One generated folder: which values, which objects."""

    path: str  # relative to the repository root
    values: tuple[str, ...] = ()  # relative to the chart
    set_values: tuple[tuple[str, str], ...] = ()
    layer: str | None = None  # one of LAYERS: only that component's objects; None: everything but LAYERS'
    # The serving layer comes from manifests/serving (included as ../serving) instead of the chart's own
    # rendering of it; the generated kustomization patches in what the chart adds to those objects.
    serving_from: str | None = None

    def keep(self, obj: dict[str, Any], source: str) -> bool:
        c = component(obj)
        wanted = c == self.layer if self.layer else c not in LAYERS
        if is_hook(obj) or not wanted:
            return False
        return not (self.serving_from and Path(source).name == SERVING_TEMPLATE)


SERVING_TEMPLATE = "inferenceservices.yaml"  # the chart template that renders what manifests/serving holds

TARGETS = (
    Target("manifests/base", serving_from="../serving"),
    Target("manifests/training/trainjob", values=("values-gpu.yaml",), layer="training"),
    Target(
        "manifests/training/pytorchjob",
        values=("values-gpu.yaml",),
        set_values=(("training.kind", "PyTorchJob"),),
        layer="training",
    ),
    Target("manifests/tuning", values=("ci/tuning-values.yaml",), layer="tuning"),
)


@dataclass(frozen=True)
class ChartFile:
    """A file of the chart generated from another source of the repository."""

    path: str  # relative to the repository root
    render: Callable[[Path], str]  # the repository root -> the file's text


def write_chart_files(files: Sequence[ChartFile], root: Path) -> list[Path]:
    written = []
    for f in files:
        p, text = root / f.path, f.render(root)
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.is_file() or p.read_text() != text:
            p.write_text(text)
        written.append(p)
    return written


def stale_chart_files(files: Sequence[ChartFile], root: Path) -> list[str]:
    """Paths of ``files`` whose committed text differs from what their producer makes (or missing)."""
    return [
        f.path
        for f in files
        if not (root / f.path).is_file() or (root / f.path).read_text() != f.render(root)
    ]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")  # JSON pointer (RFC 6901)


def serving_patches(rendered: Rendered) -> list[dict[str, Any]]:
    """JSON patches that give manifests/serving's InferenceServices what the chart's have on top: the pod
    labels the NetworkPolicies and the metrics Service select on, and the object-storage endpoint env.
    tests/test_deploy.py checks that the patched objects equal the chart's."""
    patches = []
    for obj, source in zip(rendered.objects, rendered.sources, strict=True):
        if obj.get("kind") != "InferenceService" or Path(source).name != SERVING_TEMPLATE:
            continue
        ops: list[dict[str, Any]] = []
        for part in ("predictor", "transformer"):
            spec = obj["spec"].get(part)
            if spec is None:
                continue
            labels = spec.get("labels") or {}
            for k in ("app.kubernetes.io/instance", "app.kubernetes.io/part-of", "marlops.io/metrics"):
                if k in labels:
                    ops.append({"op": "add", "path": f"/spec/{part}/labels/{_escape(k)}", "value": labels[k]})
            env = spec["containers"][0].get("env") or []
            for i, e in enumerate(env):
                if e["name"] == "MLFLOW_S3_ENDPOINT_URL":
                    ops.append({"op": "add", "path": f"/spec/{part}/containers/0/env/{i}", "value": e})
        patches.append(
            {
                "target": {
                    "group": "serving.kserve.io",
                    "kind": "InferenceService",
                    "name": obj["metadata"]["name"],
                },
                "patch": yaml.dump(ops, Dumper=_Dumper, sort_keys=False, width=120),
            }
        )
    return patches


def target_files(rendered: Rendered, target: Target, exclude_kinds: Sequence[str] = ()) -> dict[str, str]:
    """File name -> YAML text for each chart template with objects that ``target`` keeps
    (``exclude_kinds`` left out too), plus ``kustomization.yaml`` listing them."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for obj, source in zip(rendered.objects, rendered.sources, strict=True):
        if not target.keep(obj, source) or obj.get("kind") in exclude_kinds:
            continue
        name = Path(source).name if source else "objects.yaml"
        groups.setdefault(name, []).append(_clean(obj))
    files: dict[str, str] = {}
    sets = [f"{k}={v}" for k, v in target.set_values]
    vals = f" with {', '.join([*target.values, *sets])}" if target.values or sets else ""
    for name, objs in sorted(groups.items()):
        body = "---\n".join(yaml.dump(o, Dumper=_Dumper, sort_keys=False, width=120) for o in objs)
        files[name] = HEADER.format(values=vals, template=f"templates/{name}") + body
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": [*([target.serving_from] if target.serving_from else []), *sorted(groups)],
    }
    if target.serving_from:
        kustomization["patches"] = serving_patches(rendered)
    files["kustomization.yaml"] = HEADER.format(values=vals, template="the list of templates") + yaml.dump(
        kustomization, Dumper=_Dumper, sort_keys=False, width=120
    )
    return files


def render_target(
    tools: Tools, chart: Path, target: Target, exclude_kinds: Sequence[str] = ()
) -> dict[str, str]:
    rendered = helm_template(
        tools,
        chart,
        values=[chart / v for v in target.values],
        set_values=dict(target.set_values),
        release=RELEASE,
        namespace=NAMESPACE,
    )
    return target_files(rendered, target, exclude_kinds)


def write_base(files: dict[str, str], out: Path) -> list[Path]:
    """Write ``files`` into ``out``, removing generated files that are no longer produced."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.yaml"):
        if stale.name not in files and stale.read_text().startswith("# Generated from helm/marlops"):
            stale.unlink()
    written = []
    for name, text in files.items():
        p = out / name
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
        written.append(p)
    return written


def stale_files(files: dict[str, str], out: Path) -> list[str]:
    """Names whose committed text differs from ``files`` (or is missing, or generated but no longer made)."""
    bad = [n for n, t in files.items() if not (out / n).is_file() or (out / n).read_text() != t]
    bad += [
        p.name
        for p in out.glob("*.yaml")
        if p.name not in files and p.read_text().startswith("# Generated from helm/marlops")
    ]
    return sorted(bad)
