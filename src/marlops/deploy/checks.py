"""What `marlops deploy check` and tests/test_deploy.py render and check, in one place.

Every chart values set of :data:`CHART_RENDERS` is linted and rendered, every kustomization under
``manifests/`` is built, and every object of every render is validated (schemas) and held to the pod posture.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from marlops.deploy.generate import TARGETS, ChartFile, render_target, stale_chart_files, stale_files
from marlops.deploy.posture import Violation, check_objects, count_pods
from marlops.deploy.render import Rendered, helm_lint, helm_template, kustomizations, kustomize_build
from marlops.deploy.schemas import CrdSchemas, Report, load_crds, validate_objects
from marlops.deploy.tools import Tools

CHART = Path("helm/marlops")
MANIFESTS = Path("manifests")
CRDS_ENV = "MARLOPS_CRDS_DIR"


@dataclass(frozen=True)
class ChartRender:
    name: str
    values: tuple[str, ...] = ()  # relative to the chart
    api_versions: tuple[str, ...] = ()  # optional APIs the cluster is said to have


CHART_RENDERS = (
    ChartRender("default"),
    ChartRender("gpu", ("values-gpu.yaml",)),
    ChartRender("gpu-pytorchjob", ("values-gpu.yaml", "ci/pytorchjob-values.yaml")),
    ChartRender("graph-monitoring", ("ci/graph-monitoring-values.yaml",), ("monitoring.coreos.com/v1",)),
    ChartRender("tuning", ("ci/tuning-values.yaml",)),
    ChartRender("tuning-gpu", ("ci/tuning-values.yaml", "ci/tuning-gpu-values.yaml")),
)


def crds_dir(root: Path) -> Path:
    """``$MARLOPS_CRDS_DIR``, else ``../shared/crds`` beside the repository."""
    env = os.environ.get(CRDS_ENV)
    return Path(env) if env else root.resolve().parent / "shared" / "crds"


def try_load_crds(root: Path) -> tuple[CrdSchemas | None, str]:
    d = crds_dir(root)
    try:
        return load_crds(d.resolve()), f"CRDs from {d}"
    except (FileNotFoundError, OSError) as e:
        return None, f"no CRDs ({e}; set ${CRDS_ENV}): custom kinds not validated"


def render_chart(tools: Tools, root: Path, r: ChartRender) -> Rendered:
    chart = root / CHART
    out = helm_template(tools, chart, values=[chart / v for v in r.values], api_versions=r.api_versions)
    out.name = f"chart {r.name}"
    return out


def lint_chart(tools: Tools, root: Path, r: ChartRender) -> str:
    chart = root / CHART
    return helm_lint(tools, chart, values=[chart / v for v in r.values])


def render_kustomizations(tools: Tools, root: Path) -> list[Rendered]:
    out = []
    for d in kustomizations(root / MANIFESTS):
        r = kustomize_build(tools, d)
        r.name = str(d.relative_to(root))
        out.append(r)
    return out


@dataclass
class RenderResult:
    name: str
    objects: int
    pods: int
    schema: Report
    posture: list[Violation]

    @property
    def ok(self) -> bool:
        """No schema error, no posture violation, and every object validated against a schema."""
        return self.schema.ok and not self.posture


@dataclass
class CheckReport:
    crds: str
    results: list[RenderResult] = field(default_factory=list)
    lint: dict[str, str] = field(default_factory=dict)  # render -> helm lint error ("" when clean)
    stale: dict[str, list[str]] = field(default_factory=dict)  # generated folder -> stale files
    stale_chart_files: list[str] = field(default_factory=list)  # generated chart files out of date

    @property
    def ok(self) -> bool:
        return (
            all(r.ok for r in self.results)
            and not any(self.lint.values())
            and not any(self.stale.values())
            and not self.stale_chart_files
        )


def check_rendered(r: Rendered, crds: CrdSchemas | None) -> RenderResult:
    return RenderResult(
        r.name,
        len(r.objects),
        count_pods(r.objects),
        validate_objects(r.objects, crds),
        check_objects(r.objects),
    )


def run_checks(tools: Tools, root: Path, chart_files: Sequence[ChartFile] = ()) -> CheckReport:
    """Everything `marlops deploy check` does, from the repository root ``root`` (``chart_files``: the
    chart's generated files, checked up to date)."""
    from marlops.deploy.render import RenderError

    crds, crds_note = try_load_crds(root)
    report = CheckReport(crds_note, stale_chart_files=stale_chart_files(chart_files, root))
    for r in CHART_RENDERS:
        try:
            lint_chart(tools, root, r)
            report.lint[r.name] = ""
        except RenderError as e:
            report.lint[r.name] = str(e)
            continue
        report.results.append(check_rendered(render_chart(tools, root, r), crds))
    for rendered in render_kustomizations(tools, root):
        report.results.append(check_rendered(rendered, crds))
    for t in TARGETS:
        report.stale[t.path] = stale_files(render_target(tools, root / CHART, t), root / t.path)
    return report
