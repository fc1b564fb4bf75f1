"""Drift (Evidently), signed webhooks, the retrain trigger and metrics.

Planned by the open issues; see docs/architecture.md for what lands here and in which order.
"""
