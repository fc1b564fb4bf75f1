"""Kubeflow Pipelines: what the steps do (:mod:`.steps`, :mod:`.deploy`), where the definitions live and
how they compile (:mod:`.definitions`), and how a run is started (:mod:`.submit`: kfp.local or a
Kubeflow host). docs/pipelines.md describes both paths."""
