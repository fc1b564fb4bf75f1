"""The team's agents, declared once: every layer (agents, registry, pipeline, serving) imports this.

A module of plain data at the package root, so the leaf packages (``registry``) may import it without
importing ``marlops.agents`` (import-linter keeps them apart).
"""

from __future__ import annotations

# The order is the decision order at a higher-bar close: regime, then structure, tactical, risk.
AGENTS: tuple[str, ...] = ("regime", "structure", "tactical", "risk")
