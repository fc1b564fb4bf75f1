"""Where a warm-started run gets its first weights: a registered team or a previous run's folder.

``init_from`` is either a model URI with an alias or version — ``models:/marlops-{agent}@champion`` (the
``{agent}`` placeholder, or any one agent's name: the whole team behind the alias is taken, resolved to
version numbers first so the four agents are one team) — or a folder (a ``marlops train`` output, its
``agents/`` folder, or what :func:`marlops.registry.download_team` wrote). Only the weights and specs are
taken (``weights.pt`` + ``spec.yaml`` of each agent, checked against their version ids): optimizer state,
replay buffers and value statistics start fresh, since the new run trains on other data.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from marlops.training.team import TeamModels

_ALIAS = re.compile(r"^models:/[^@/]+@(?P<alias>[A-Za-z0-9_-]+)$")


def load_initial_team(init_from: str) -> TeamModels:
    """The four networks to start from (see the module docstring); a clear error if they cannot be had."""
    from marlops.training.market import load_models

    if init_from.startswith("models:/"):
        m = _ALIAS.match(init_from)
        if m is None:
            raise ValueError(
                f"init_from: {init_from!r} is not a registry alias URI; expected e.g. "
                "'models:/marlops-{agent}@champion' (or a run folder)"
            )
        from marlops.registry import download_team

        with tempfile.TemporaryDirectory(prefix="marlops-init-") as tmp:
            return load_models(download_team(alias=m.group("alias"), dst=Path(tmp) / "team"))
    path = Path(init_from.removeprefix("file://")).expanduser()
    if not path.is_dir():
        raise ValueError(f"init_from: {init_from!r} is neither a models:/ alias URI nor a folder")
    try:
        return load_models(path)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"init_from: {path} holds no trained team ({e})") from None
