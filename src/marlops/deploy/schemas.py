"""Schema validation of rendered objects, offline: what the API server's strict field validation would say.

- Core kinds (Deployment, Service, CronJob, RBAC, NetworkPolicy, ...): the Kubernetes OpenAPI schemas that
  ``kubernetes-validate`` ships, strict variant (unknown fields are errors), for a pinned Kubernetes version.
- Custom kinds (InferenceService, InferenceGraph, TrainJob, TrainingRuntime, PyTorchJob, ServiceMonitor,
  PrometheusRule): the ``openAPIV3Schema`` of their CustomResourceDefinitions (../shared/crds), made strict
  the way the API server prunes: an object schema with ``properties`` and neither ``additionalProperties``
  nor ``x-kubernetes-preserve-unknown-fields`` admits no other field.
- Katib's Experiment: its CRD carries no schema (it preserves unknown fields), so it is validated against
  Katib's v1beta1 OpenAPI document (``katib-v1beta1-openapi.json`` beside the CRDs), made strict the same way;
  its trial template (``spec.trialTemplate.trialSpec``, a Job or a PyTorchJob, ``${trialParameters.x}``
  placeholders filled) against its own kind's schema, and Katib's own rules (objective type, trial parameter
  references) on top. Problems of the trial spec are reported under the Experiment.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

KUBERNETES_VERSION = "1.35.0"  # the helm/kubectl layer's Kubernetes version (tools.PACKAGE)

Obj = dict[str, Any]

# Names that must be DNS-1035 labels (they become hostnames and Service names): KServe's webhook checks
# InferenceService and InferenceGraph names, whose Services get suffixes ("-predictor": 10 characters, so at
# most 53 keeps the Service name a 63-character label); the TrainJob CRD has the same rule as CEL.
# Every other object name is a DNS-1123 subdomain.
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# libyaml when present: the CRD files are ~5 MB of YAML (13 s with the pure-Python parser, ~1 s with it)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# An Experiment's name is a DNS-1035 label too (Katib names the suggestion Service <name>-<algorithm>), of at
# most 54: a trial is <name>-<8 characters>, and a trial Job's name becomes its pods' job-name label (63).
_LABEL_NAMES = {"InferenceService": 53, "InferenceGraph": 63, "TrainJob": 63, "Experiment": 54}


@dataclass(frozen=True)
class Problem:
    obj: str  # Kind/name
    path: str  # dotted path inside the object
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.path or '<root>'}: {self.message}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, str] = field(default_factory=dict)  # Kind/name -> "kubernetes 1.35" | "CRD ..."
    unchecked: dict[str, str] = field(default_factory=dict)  # Kind/name -> why no schema was applied

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unchecked


def ref(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def _path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts)


# ---------------------------------------------------------------- core kinds (kubernetes-validate's files)


def _schema_dir(version: str) -> Any:
    mm = ".".join(version.split(".")[:2])
    root = importlib_resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    names = sorted(
        (p.name for p in root.iterdir() if p.name.endswith("-local-strict")),
        key=lambda n: tuple(int(x) for x in n[1:].split("-")[0].split(".")[:2]),
    )
    usable = [
        n
        for n in names
        if tuple(int(x) for x in n[1:].split("-")[0].split(".")[:2]) <= tuple(int(x) for x in mm.split("."))
    ]
    if not usable:
        raise ValueError(f"kubernetes-validate has no schemas for Kubernetes {version}")
    return root.joinpath(usable[-1])


@functools.lru_cache(maxsize=4)
def _core_registry(version: str) -> tuple[Any, Registry]:
    d = _schema_dir(version)
    defs = json.loads(d.joinpath("_definitions.json").read_text())
    return d, Resource.from_contents(defs) @ Registry()


@functools.lru_cache(maxsize=256)
def _core_validator(version: str, kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    d, registry = _core_registry(version)
    # kubernetes-validate's file naming: rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    f = d.joinpath(f"{kind.lower()}-{api}.json")
    if not f.is_file():
        return None
    schema = json.loads(f.read_text())
    return jsonschema.Draft202012Validator(schema, registry=Resource.from_contents(schema) @ registry)


# ---------------------------------------------------------------- custom kinds (CRD openAPIV3Schema)


def strict_schema(schema: Any) -> Any:
    """A copy of a structural schema where objects with declared properties reject unknown fields."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


KATIB_OPENAPI = "katib-v1beta1-openapi.json"
KATIB_EXPERIMENT = ("kubeflow.org/v1beta1", "Experiment")


def _katib_experiment_schema(root: Path) -> Obj | None:
    """The strict schema of a Katib Experiment from Katib's OpenAPI document in ``root``; None: absent."""
    f = Path(root) / KATIB_OPENAPI
    if not f.is_file():
        return None
    doc = json.loads(f.read_text())
    return {
        "components": strict_schema(doc["components"]),
        "$ref": "#/components/schemas/v1beta1.Experiment",
    }


@dataclass(frozen=True)
class CrdSchemas:
    root: Path
    by_gvk: dict[tuple[str, str], tuple[Obj, str]]  # (apiVersion, kind) -> (strict schema, CRD file)

    def validator(self, api_version: str, kind: str) -> tuple[jsonschema.protocols.Validator, str] | None:
        hit = self.by_gvk.get((api_version, kind))
        if hit is None:
            return None
        return _crd_validator(id(self), api_version, kind, hit[0]), hit[1]


_VALIDATORS: dict[tuple[int, str, str], Any] = {}


def _crd_validator(key: int, api_version: str, kind: str, schema: Obj) -> Any:
    k = (key, api_version, kind)
    if k not in _VALIDATORS:
        # Draft 7 is the closest JSON Schema to OpenAPI v3's subset; x-kubernetes-* keywords are ignored.
        _VALIDATORS[k] = jsonschema.Draft7Validator(schema)
    return _VALIDATORS[k]


@functools.lru_cache(maxsize=4)
def load_crds(root: Path) -> CrdSchemas:
    """Every served version of every CRD in ``root`` (``*.yaml``). Raises FileNotFoundError when the folder
    holds none."""
    files = sorted(Path(root).glob("*.yaml"))
    by_gvk: dict[tuple[str, str], tuple[Obj, str]] = {}
    for f in files:
        for doc in yaml.load_all(f.read_text(), Loader=_LOADER):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                if not v.get("served", True):
                    continue
                schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
                by_gvk[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = (
                    strict_schema(schema),
                    f.name,
                )
    if not by_gvk:
        raise FileNotFoundError(f"no CustomResourceDefinition in {root}")
    # Katib's Experiment CRD preserves unknown fields (it checks nothing): its OpenAPI document instead,
    # and without it the Experiment stays unchecked rather than passing a schema that admits anything.
    katib = _katib_experiment_schema(Path(root))
    if katib is not None:
        by_gvk[KATIB_EXPERIMENT] = (katib, KATIB_OPENAPI)
    else:
        by_gvk.pop(KATIB_EXPERIMENT, None)
    return CrdSchemas(Path(root), by_gvk)


# ---------------------------------------------------------------- validation


def _metadata_problems(obj: Obj) -> list[Problem]:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    kind = obj.get("kind", "")
    if not isinstance(name, str) or not name:
        return [Problem(ref(obj), "metadata.name", "required")]
    limit = _LABEL_NAMES.get(kind)
    if limit is not None:
        if not _DNS1035.match(name) or len(name) > limit:
            return [
                Problem(ref(obj), "metadata.name", f"{name!r} is not a DNS-1035 label of at most {limit}")
            ]
    elif not _DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        return [Problem(ref(obj), "metadata.name", f"{name!r} is not a DNS-1123 subdomain")]
    return []


_TRIAL_PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]*)\}")
# Katib's trial metadata references (``reference: ${trialSpec.Name}``): the trial's own name, namespace, …
_TRIAL_METADATA = re.compile(
    r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|Labels\[[^]]+\]|Annotations\[[^]]+\])\}$"
)
TRIAL_SPEC = "spec.trialTemplate.trialSpec"


def trial_spec_filled(experiment: Obj) -> Obj | None:
    """An Experiment's trial spec as Katib submits it: named like a trial (``<experiment>-<8 characters>``),
    every ``${trialParameters.x}`` replaced by ``x`` (strings stay strings). None: no inline trial spec."""
    trial = ((experiment.get("spec") or {}).get("trialTemplate") or {}).get("trialSpec")
    if not isinstance(trial, dict):
        return None
    obj = json.loads(_TRIAL_PLACEHOLDER.sub(r"\1", json.dumps(trial)))
    name = (experiment.get("metadata") or {}).get("name") or "experiment"
    obj.setdefault("metadata", {})["name"] = f"{name}-abcd1234"
    return obj


def _katib_problems(obj: Obj) -> list[Problem]:
    """What Katib's validating webhook refuses that its schema admits: an objective type other than
    maximize/minimize; a trial parameter whose reference is neither a search-space parameter nor trial
    metadata (``${trialSpec.Name}`` …), a parameter no trial parameter references; a trial parameter the trial
    spec never uses, a ``${trialParameters.x}`` placeholder of an undeclared one."""
    r, spec = ref(obj), obj.get("spec") or {}
    out: list[Problem] = []
    if (spec.get("objective") or {}).get("type") not in ("maximize", "minimize"):
        out.append(Problem(r, "spec.objective.type", "must be maximize or minimize"))
    template = spec.get("trialTemplate") or {}
    declared = [t for t in template.get("trialParameters") or [] if isinstance(t, dict)]
    refs = {t.get("reference") for t in declared if not _TRIAL_METADATA.match(str(t.get("reference", "")))}
    names = {p.get("name") for p in spec.get("parameters") or []}
    if refs != names:
        out.append(
            Problem(
                r,
                "spec.trialTemplate.trialParameters",
                f"references {sorted(map(str, refs ^ names))} unmatched",
            )
        )
    if "trialSpec" in template:
        used = set(_TRIAL_PLACEHOLDER.findall(json.dumps(template["trialSpec"])))
        params = {t.get("name") for t in declared}
        if unused := sorted(map(str, params - used)):
            out.append(Problem(r, "spec.trialTemplate.trialParameters", f"{unused} unused in the trial spec"))
        if undeclared := sorted(used - params):
            out.append(Problem(r, TRIAL_SPEC, f"placeholders of undeclared trial parameters: {undeclared}"))
    return out


class NoSchema(LookupError):
    """No schema applies to an object (its kind is unknown, or the CRDs are absent)."""


def _validate_one(obj: Obj, crds: CrdSchemas | None, kubernetes_version: str) -> tuple[list[Problem], str]:
    """Problems of ``obj`` against its schema and the schema's source; NoSchema when none applies."""
    r, api, kind = ref(obj), str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    validator = _core_validator(kubernetes_version, kind, api)
    source = f"kubernetes {'.'.join(kubernetes_version.split('.')[:2])} (kubernetes-validate, strict)"
    if validator is None:
        hit = crds.validator(api, kind) if crds is not None else None
        if hit is None:
            raise NoSchema(
                f"no schema for {api} {kind}" + ("" if crds is not None else " (CRD folder absent)")
            )
        validator, crd_file = hit
        source = f"OpenAPI {crd_file}" if crd_file.endswith(".json") else f"CRD {crd_file}"
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [Problem(r, _path(e.absolute_path), e.message[:300]) for e in errors], source


def _validate_trial_spec(
    experiment: Obj, crds: CrdSchemas | None, kubernetes_version: str
) -> tuple[list[Problem], str]:
    """An Experiment's trial spec validated as its own object, its problems named by the Experiment."""
    trial = trial_spec_filled(experiment)
    if trial is None:
        return [], ""
    found = _metadata_problems(trial)
    problems, source = _validate_one(trial, crds, kubernetes_version)
    r = ref(experiment)
    return [
        Problem(r, f"{TRIAL_SPEC}.{p.path}" if p.path else TRIAL_SPEC, p.message) for p in found + problems
    ], f"; trial {trial.get('kind')}: {source}"


def validate_objects(
    objects: Iterable[Obj], crds: CrdSchemas | None, kubernetes_version: str = KUBERNETES_VERSION
) -> Report:
    """Validate each object against its schema; every error of every object is reported (not the first).
    Objects of a kind with no schema (or custom kinds while ``crds`` is None) land in ``unchecked``; so does
    an Experiment's trial spec without one (key ``Experiment/<name> spec.trialTemplate.trialSpec``)."""
    report = Report()
    for obj in objects:
        r = ref(obj)
        report.problems += _metadata_problems(obj)
        try:
            problems, source = _validate_one(obj, crds, kubernetes_version)
        except NoSchema as e:
            report.unchecked[r] = str(e)
            continue
        report.problems += problems
        if (str(obj.get("apiVersion")), str(obj.get("kind"))) == KATIB_EXPERIMENT:
            report.problems += _katib_problems(obj)
            try:
                problems, trial_source = _validate_trial_spec(obj, crds, kubernetes_version)
                report.problems += problems
                source += trial_source
            except NoSchema as e:
                report.unchecked[f"{r} {TRIAL_SPEC}"] = str(e)
        report.checked[r] = source
    return report
