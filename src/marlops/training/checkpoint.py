"""Atomic training checkpoints: a killed run loses at most the work since its last checkpoint.

``ckpt-<step>.pt`` files in one folder, written to a temporary name and renamed (atomic on POSIX), so a
kill during the write leaves the previous checkpoint intact; ``latest`` is simply the highest step that
loads. The newest ``keep`` are kept.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


def save_checkpoint(folder: str | Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"ckpt-{step:08d}.pt"
    tmp = d / f".{path.name}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in sorted(p for p in d.iterdir() if _NAME.match(p.name))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def checkpoints(folder: str | Path) -> list[Path]:
    d = Path(folder)
    return sorted(p for p in d.iterdir() if _NAME.match(p.name)) if d.is_dir() else []


def load_latest(folder: str | Path) -> tuple[int, dict[str, Any]] | None:
    """(step, state) of the newest checkpoint that loads, or None."""
    for path in reversed(checkpoints(folder)):
        try:
            # our own files: optimizer states and numpy RNG states need the full unpickler
            state = torch.load(path, map_location="cpu", weights_only=False)
        except (
            OSError,
            RuntimeError,
            EOFError,
            pickle.UnpicklingError,
        ):  # a truncated file from a crash: try the one before
            continue
        m = _NAME.match(path.name)
        assert m is not None
        return int(m.group(1)), state
    return None
