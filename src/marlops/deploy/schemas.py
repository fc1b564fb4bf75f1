"""Schema validation of rendered objects, offline: what the API server's strict field validation would say.

- Core kinds (Deployment, Service, CronJob, RBAC, NetworkPolicy, ...): the Kubernetes OpenAPI schemas that
  ``kubernetes-validate`` ships, strict variant (unknown fields are errors), for a pinned Kubernetes version.
- Custom kinds (InferenceService, InferenceGraph, TrainJob, TrainingRuntime, PyTorchJob, ServiceMonitor,
  PrometheusRule): the ``openAPIV3Schema`` of their CustomResourceDefinitions (../shared/crds), made strict
  the way the API server prunes: an object schema with ``properties`` and neither ``additionalProperties``
  nor ``x-kubernetes-preserve-unknown-fields`` admits no other field.
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
_LABEL_NAMES = {"InferenceService": 53, "InferenceGraph": 63, "TrainJob": 63}


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


def validate_objects(
    objects: Iterable[Obj], crds: CrdSchemas | None, kubernetes_version: str = KUBERNETES_VERSION
) -> Report:
    """Validate each object against its schema; every error of every object is reported (not the first).
    Objects of a kind with no schema (or custom kinds while ``crds`` is None) land in ``unchecked``."""
    report = Report()
    mm = ".".join(kubernetes_version.split(".")[:2])
    for obj in objects:
        r = ref(obj)
        api, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        report.problems += _metadata_problems(obj)
        validator = _core_validator(kubernetes_version, kind, api)
        source = f"kubernetes {mm} (kubernetes-validate, strict)"
        if validator is None:
            hit = crds.validator(api, kind) if crds is not None else None
            if hit is None:
                report.unchecked[r] = f"no schema for {api} {kind}" + (
                    "" if crds is not None else " (CRD folder absent)"
                )
                continue
            validator, crd_file = hit
            source = f"CRD {crd_file}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
            report.problems.append(Problem(r, _path(e.absolute_path), e.message[:300]))
        report.checked[r] = source
    return report
