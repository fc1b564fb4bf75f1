"""The training and retraining pipelines (KFP v2) and their compiled IR YAML (``*.yaml`` beside them)."""
