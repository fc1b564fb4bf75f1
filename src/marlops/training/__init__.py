"""MAPPO, DQN with prioritized replay, distributed launch, evaluation and baselines.

Planned by the open issues; see docs/architecture.md for what lands here and in which order.
"""
