"""KServe models per agent, the aggregation transformer and the local launcher.

Planned by the open issues; see docs/architecture.md for what lands here and in which order.
"""
