"""Where the pipeline definitions live and how they are loaded and compiled.

The KFP definitions are platform artifacts at the repository's top level (``components/``, one component
per file, and ``pipelines/``); this module puts that folder on ``sys.path`` to import them (the image
ships them beside the package), compiles them to IR YAML, and checks a checked-in YAML is current.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT_ENV = "MARLOPS_PIPELINES_ROOT"


@dataclass(frozen=True)
class PipelineDef:
    name: str  # the CLI's name
    module: str
    function: str

    @property
    def yaml_name(self) -> str:
        return f"{self.name}.yaml"


PIPELINES = {
    "training": PipelineDef("training", "pipelines.training", "training_pipeline"),
    "retraining": PipelineDef("retraining", "pipelines.retraining", "retraining_pipeline"),
    "tuning": PipelineDef("tuning", "pipelines.tuning", "tuning_pipeline"),
}


def pipelines_root() -> Path:
    """The folder holding ``components/`` and ``pipelines/``: ``$MARLOPS_PIPELINES_ROOT`` or the
    repository beside ``src/``."""
    env = os.environ.get(ROOT_ENV)
    root = Path(env) if env else Path(__file__).resolve().parents[3]
    if not (root / "pipelines").is_dir() or not (root / "components").is_dir():
        raise FileNotFoundError(
            f"pipelines: no components/ and pipelines/ under {root} "
            f"(set ${ROOT_ENV} to the folder holding them)"
        )
    return root


def get(name: str) -> PipelineDef:
    if name not in PIPELINES:
        raise ValueError(f"pipeline: unknown {name!r}; expected one of {sorted(PIPELINES)}")
    return PIPELINES[name]


def load(name: str) -> Any:
    """The ``@dsl.pipeline`` function named ``name``."""
    d = get(name)
    root = str(pipelines_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    return getattr(importlib.import_module(d.module), d.function)


def yaml_path(name: str) -> Path:
    return pipelines_root() / "pipelines" / get(name).yaml_name


def compile_pipeline(name: str, out: str | Path | None = None) -> Path:
    """Compile to IR YAML (default: the checked-in file beside the definition)."""
    from kfp import compiler

    target = Path(out) if out is not None else yaml_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(load(name), str(target))
    return target


def read_compiled(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A compiled pipeline: its IR spec and its platform spec (``platforms.kubernetes…``: the claim,
    Secrets and scheduling of the tasks), which the compiler writes as a second YAML document."""
    import yaml

    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    if not docs or len(docs) > 2 or (len(docs) == 2 and "platforms" not in docs[1]):
        raise ValueError(
            f"{path}: expected a pipeline spec and at most a platform spec, got {len(docs)} documents"
        )
    return docs[0], docs[1] if len(docs) == 2 else {}


def stale(name: str) -> bool:
    """Whether the checked-in YAML differs from a fresh compile (what the sync test asserts is False)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_pipeline(name, Path(tmp) / "p.yaml")
        current = yaml_path(name)
        if not current.exists():
            return True
        return read_compiled(fresh) != read_compiled(current)
