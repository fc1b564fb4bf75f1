"""marlops: hierarchical multi-agent RL trading decisions and the MLOps platform around them."""

__version__ = "0.1.0"
