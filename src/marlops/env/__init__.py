"""Vectorized multi-agent market environment.

Planned by the open issues; see docs/architecture.md for what lands here and in which order.
"""
