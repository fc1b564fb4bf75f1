"""Render what would be applied: `helm lint`, `helm template` and `kubectl kustomize`, as parsed objects."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from marlops.deploy.tools import Tools

Obj = dict[str, Any]

_SOURCE = re.compile(r"^# Source: (\S+)\s*$", re.M)


class RenderError(RuntimeError):
    """helm or kubectl refused the input; the message carries the tool's own error text."""


@dataclass
class Rendered:
    """The output of one render: its text, the objects in it, and where each came from."""

    name: str  # e.g. "chart (values.yaml)" or "overlay dev"
    text: str
    objects: list[Obj] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # per object: helm's "# Source:" template, or ""

    def by_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o.get("kind") == kind]

    def get(self, kind: str, name: str) -> Obj:
        for o in self.objects:
            if o.get("kind") == kind and o.get("metadata", {}).get("name") == name:
                return o
        have = sorted(f"{o.get('kind')}/{o.get('metadata', {}).get('name')}" for o in self.objects)
        raise KeyError(f"{self.name}: no {kind}/{name}; have {have}")


def _call(cmd: Sequence[str], cwd: Path | None = None) -> str:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=300, cwd=cwd)
    if p.returncode != 0:
        raise RenderError(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stderr.strip() or p.stdout}")
    return p.stdout


def parse_documents(text: str, name: str = "render") -> Rendered:
    """Split a multi-document YAML stream into objects (empty documents dropped), keeping each document's
    helm ``# Source:`` line."""
    out = Rendered(name=name, text=text)
    for chunk in re.split(r"^---[ \t]*$", text, flags=re.M):
        doc = yaml.safe_load(chunk)
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise RenderError(f"{name}: a document is not a Kubernetes object: {chunk.strip()[:200]!r}")
        m = _SOURCE.search(chunk)
        out.objects.append(doc)
        out.sources.append(m.group(1) if m else "")
    return out


def helm_lint(tools: Tools, chart: Path, values: Sequence[Path] = (), strict: bool = True) -> str:
    cmd = [str(tools.helm), "lint", str(chart), *(a for v in values for a in ("-f", str(v)))]
    return _call([*cmd, "--strict"] if strict else cmd)


def helm_template(
    tools: Tools,
    chart: Path,
    values: Sequence[Path] = (),
    set_values: dict[str, str] | None = None,
    release: str = "marlops",
    namespace: str = "marlops",
    kube_version: str = "1.35.0",
    api_versions: Sequence[str] = (),
    show_only: Sequence[str] = (),
) -> Rendered:
    """``helm template`` (with the chart's tests, ``--include-crds`` off: the chart ships no CRDs).
    ``api_versions`` declares optional APIs (e.g. ``monitoring.coreos.com/v1``) the way a cluster would."""
    cmd = [
        str(tools.helm),
        "template",
        release,
        str(chart),
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
    ]
    for v in values:
        cmd += ["-f", str(v)]
    for k, v in (set_values or {}).items():
        cmd += ["--set-string" if isinstance(v, str) else "--set", f"{k}={v}"]
    for a in api_versions:
        cmd += ["--api-versions", a]
    for s in show_only:
        cmd += ["--show-only", s]
    label = f"chart ({', '.join(v.name for v in values) or 'default values'})"
    return parse_documents(_call(cmd), label)


def kustomize_build(tools: Tools, path: Path) -> Rendered:
    """``kubectl kustomize PATH`` (the kustomize built into kubectl)."""
    return parse_documents(_call([str(tools.kubectl), "kustomize", str(path)]), f"kustomize {path}")


def kustomizations(root: Path) -> list[Path]:
    """Every folder under ``root`` holding a kustomization file, sorted."""
    names = ("kustomization.yaml", "kustomization.yml", "Kustomization")
    return sorted({p.parent for n in names for p in root.rglob(n)})
