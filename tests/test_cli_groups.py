"""``python -m marlops.cli`` sees every command group and command (torchrun's workers and the local serving
launcher start the CLI that way), and ``marlops --help`` stays light to import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from marlops.cli import app

SRC = Path(__file__).resolve().parents[1] / "src"
KNOWN = set("data decide run train evaluate registry pipeline serve deploy drift webhook agents tune".split())


def _registered() -> dict[str, str]:
    """Every top-level group and command on ``app``, with the first line of its help."""
    group = typer.main.get_command(app)
    return {name: (cmd.help or "").strip().splitlines()[0] for name, cmd in group.commands.items()}  # type: ignore[attr-defined]


def _module_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    env["COLUMNS"] = "200"  # the help's first line on one line
    return subprocess.run(
        [sys.executable, "-m", "marlops.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_every_known_group_is_registered() -> None:
    assert KNOWN <= set(_registered())


@pytest.mark.parametrize("name", sorted(_registered()))
def test_python_m_marlops_cli_sees_the_group(name: str) -> None:
    r = _module_cli(name, "--help")
    assert r.returncode == 0, r.stderr
    assert f"Usage: python -m marlops.cli {name}" in r.stdout
    first = " ".join(_registered()[name].split()[:6])  # rich wraps the rest
    assert first in " ".join(r.stdout.split())


def test_python_m_marlops_cli_sees_the_pipeline_group() -> None:
    """The bug this layout fixed: ``__main__`` ran before the pipeline group was registered."""
    r = _module_cli("pipeline", "compile", "--help")
    assert r.returncode == 0, r.stderr
    assert "Compile the pipelines to KFP IR YAML" in r.stdout


def test_help_imports_no_heavy_library() -> None:
    """The command modules import their libraries inside the commands: ``--help`` loads none of them."""
    code = (
        "import sys, runpy; sys.argv = ['marlops', '--help']\n"
        "try:\n    runpy.run_module('marlops.cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'sklearn', 'kfp', 'mlflow') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "HEAVY []" in r.stderr, r.stderr
