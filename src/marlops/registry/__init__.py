"""MLflow glue: logging, registration, aliases and promotion gates.

Planned by the open issues; see docs/architecture.md for what lands here and in which order.
"""
