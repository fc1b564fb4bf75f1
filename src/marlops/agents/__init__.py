"""The four agent networks, the communication hub and the decision engine (no I/O).

Planned by the open issues; see docs/architecture.md for what lands here and in which order.
"""
