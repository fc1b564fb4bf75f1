"""Hyperparameter studies over the one source of hyperparameters (models/*.yaml): the search space
(:mod:`.space`, pure), Optuna studies (:mod:`.study`), Katib Experiments (:mod:`.katib`) and ``marlops tune``
(:mod:`.commands`). docs/tuning.md."""
