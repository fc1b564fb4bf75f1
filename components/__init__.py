"""Kubeflow Pipelines components, one per file, each a thin call into :mod:`marlops.pipeline.steps`."""
