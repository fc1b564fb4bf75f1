"""Feast glue: training sets and online fetch.

Planned by the open issues; see docs/architecture.md for what lands here and in which order.
"""
